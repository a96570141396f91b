//go:build !linux

package render

import (
	"os"
	"os/exec"
	"time"
)

// limitSelf bounds what it can where the operating system has no limits
// gitk8s knows how to set: the parent's timeout and output limit still
// hold, memory and CPU are bounded only on Linux.
func limitSelf(Limits) error { return nil }

func isolateProcess(*exec.Cmd) {}

func killProcessGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = cmd.Process.Kill()
	}
}

func cpuTime(state *os.ProcessState) time.Duration {
	return state.UserTime() + state.SystemTime()
}

func killedBySignal(*os.ProcessState) bool { return false }
