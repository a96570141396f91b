package render

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// limitSelf bounds the renderer child before it reads the repository: its
// address space to what it holds now plus the memory limit, its CPU time,
// its goroutine stacks, and no file may be written.
func limitSelf(l Limits) error {
	l = l.withDefaults()
	inUse, err := addressSpaceInUse()
	if err != nil {
		return err
	}
	as := uint64(inUse) + uint64(l.Memory)
	if err := syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: as, Max: as}); err != nil {
		return fmt.Errorf("address space: %w", err)
	}
	cpu := uint64((l.CPU + time.Second - 1) / time.Second)
	if err := syscall.Setrlimit(syscall.RLIMIT_CPU, &syscall.Rlimit{Cur: cpu, Max: cpu}); err != nil {
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
	debug.SetMemoryLimit(l.Memory * 9 / 10)
	debug.SetMaxStack(int(min(l.Memory/8, 64<<20)))
	return nil
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
