package testenv

import (
	"net"
	"net/http/httptest"
	"path/filepath"
	"testing"
)

// StartOwn starts a control plane of this process's own, whatever
// KubeconfigEnv says: tests that kill and restart its processes (etcd, an
// API server) must not share one with other packages.
func StartOwn(clusters int) (*Env, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	return startOwn(root, filepath.Join(root, ".cache", "bin"), clusters)
}

// Down stops serving the repository: connections to its address are
// refused until Up. Requests in flight are finished first. Commits and
// pushes from Work still reach the repository.
func (s *GitServer) Down() {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	srv.Close()
}

// Up serves the repository again, on the address it had.
func (s *GitServer) Up(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	addr := s.srv.Listener.Addr().String()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("git server: listen again on %s: %v", addr, err)
	}
	srv := httptest.NewUnstartedServer(s.handler)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	s.srv = srv
}
