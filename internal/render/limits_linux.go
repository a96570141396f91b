package render

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// limitSelf bounds the renderer child before it reads the repository:
// its memory, its CPU time, its goroutine stacks, and no file may be
// written.
//
// Memory is bounded twice. A watchdog ends the renderer once the memory it
// holds (what the Go runtime has mapped and not given back) passes the
// limit, and the address space is limited to what the process holds at
// start plus twice the limit, so that a single huge allocation fails at
// once instead of being paged in. Twice, because a heap that churns keeps
// address space reserved that it no longer uses.
func limitSelf(l Limits) error {
	l = l.withDefaults()
	// Should the machine or the container run short of memory all the
	// same, the kernel ends the renderer first, not gitk8s. (Any process
	// may raise its own score.)
	_ = os.WriteFile("/proc/self/oom_score_adj", []byte("1000"), 0)
	inUse, err := addressSpaceInUse()
	if err != nil {
		return err
	}
	as := uint64(inUse) + 2*uint64(l.Memory)
	if err := syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: as, Max: as}); err != nil {
		return fmt.Errorf("address space: %w", err)
	}
	go watchMemory(l.Memory)
	// At the CPU limit the kernel sends SIGXCPU, on which the renderer
	// ends with exitCPULimit; a second later, SIGKILL.
	cpu := uint64((l.CPU + time.Second - 1) / time.Second)
	xcpu := make(chan os.Signal, 1)
	signal.Notify(xcpu, syscall.SIGXCPU)
	go func() {
		<-xcpu
		fmt.Fprintln(os.Stderr, "renderer: CPU time limit reached")
		os.Exit(exitCPULimit)
	}()
	if err := syscall.Setrlimit(syscall.RLIMIT_CPU, &syscall.Rlimit{Cur: cpu, Max: cpu + 1}); err != nil {
		return fmt.Errorf("CPU time: %w", err)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: 0, Max: 0}); err != nil {
		return fmt.Errorf("file size: %w", err)
	}
	// (Go ignores SIGXFSZ: a write the renderer might still try fails with
	// EFBIG.)
	// The garbage collector works harder as the limit nears, and a
	// runaway recursion stops at an eighth of it (at most 64 MiB of stack,
	// some hundred thousand jsonnet calls) rather than at 1 GB.
	debug.SetMemoryLimit(l.Memory * 3 / 4)
	debug.SetMaxStack(int(min(l.Memory/8, 64<<20)))
	return nil
}

// watchMemory ends the renderer with exitMemoryLimit once the memory the
// runtime holds passes limit.
func watchMemory(limit int64) {
	samples := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	for range time.Tick(20 * time.Millisecond) {
		metrics.Read(samples)
		held := int64(samples[0].Value.Uint64() - samples[1].Value.Uint64())
		if held > limit {
			fmt.Fprintln(os.Stderr, "renderer: memory limit reached")
			os.Exit(exitMemoryLimit)
		}
	}
}

// addressSpaceInUse is the process's virtual memory size (VmSize).
func addressSpaceInUse() (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmSize:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, err
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmSize in /proc/self/status")
}

// isolateProcess puts the child in a process group of its own (so that a
// kill reaches whatever it started) that dies with its parent.
func isolateProcess(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func killProcessGroup(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Process.Kill()
}

func cpuTime(state *os.ProcessState) time.Duration {
	return state.UserTime() + state.SystemTime()
}

func killedBySignal(state *os.ProcessState) bool {
	ws, ok := state.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && (ws.Signal() == syscall.SIGKILL || ws.Signal() == syscall.SIGXCPU)
}
