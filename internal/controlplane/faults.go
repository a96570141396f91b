package controlplane

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"
)

// KillAPIServer ends a cluster's API server with SIGKILL, as a crash or
// an evicted node would: requests in flight are cut off unanswered.
// StartAPIServer starts it again.
func (cp *ControlPlane) KillAPIServer(name string) error {
	c := cp.Cluster(name)
	if c == nil || len(c.Processes) == 0 {
		return fmt.Errorf("no cluster %s", name)
	}
	return c.Processes[0].kill()
}

// KillEtcd ends the shared etcd with SIGKILL: every cluster's API server
// loses its storage until StartEtcd. Its data stays on disk.
func (cp *ControlPlane) KillEtcd() error {
	return cp.Etcd.kill()
}

// StartEtcd starts a killed or stopped etcd again, on the addresses the
// API servers know and with its data, and waits until it is healthy. Only
// a ControlPlane returned by Start can restart it.
func (cp *ControlPlane) StartEtcd(ctx context.Context) error {
	if cp.etcdArgs == nil {
		return errors.New("etcd was not started by this process")
	}
	if cp.Etcd.alive() {
		return errors.New("etcd is running")
	}
	return cp.spawnEtcd(ctx)
}

// kill sends SIGKILL and waits until the process is gone.
func (p Process) kill() error {
	if !p.alive() {
		return nil
	}
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %s (pid %d): %w", p.Name, p.PID, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for p.alive() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s (pid %d) still runs 10 s after SIGKILL", p.Name, p.PID)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}
