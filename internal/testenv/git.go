package testenv

import (
	"bytes"
	"encoding/hex"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Git runs git in dir with a fixed author and returns its output, trimmed;
// a failure fails the test.
func Git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.test"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// HashObject stores data as an object of kind (blob, tree, commit) in the
// repository at dir and returns its id. Trees are stored literally, so that
// Git's own checks do not stop a hostile tree from being made.
func HashObject(t testing.TB, dir, kind string, data []byte) string {
	t.Helper()
	args := []string{"hash-object", "-w", "--stdin", "-t", kind}
	if kind == "tree" {
		args = append(args, "--literally")
	}
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git hash-object: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// TreeEntry is an entry of a tree MkTree stores. Data is a file's content,
// a link's target or a submodule's commit id; a folder (mode 40000) has
// Kids instead.
type TreeEntry struct {
	Mode, Name, Data string
	Kids             []TreeEntry
}

// MkTree stores entries as a raw tree object, "<mode> <name>\0<binary id>"
// per entry, exactly as given: in this order, duplicates and all, with any
// name. It returns the tree's id.
func MkTree(t testing.TB, dir string, entries []TreeEntry) string {
	t.Helper()
	var raw bytes.Buffer
	for _, e := range entries {
		var id string
		switch e.Mode {
		case "40000":
			id = MkTree(t, dir, e.Kids)
		case "160000":
			id = e.Data
		default:
			id = HashObject(t, dir, "blob", []byte(e.Data))
		}
		bin, err := hex.DecodeString(id)
		if err != nil {
			t.Fatalf("tree entry %q: id %q: %v", e.Name, id, err)
		}
		raw.WriteString(e.Mode + " " + e.Name + "\x00")
		raw.Write(bin)
	}
	return HashObject(t, dir, "tree", raw.Bytes())
}

// CommitTree commits the tree of entries on branch of the repository at
// dir and returns the commit.
func CommitTree(t testing.TB, dir, branch string, entries []TreeEntry) string {
	t.Helper()
	commit := Git(t, dir, "commit-tree", MkTree(t, dir, entries), "-m", branch)
	Git(t, dir, "update-ref", "refs/heads/"+branch, commit)
	return commit
}

// GitServer serves a bare repository over HTTP on loopback with Debian's
// git http-backend, and records the requests. With a password set it is
// private: HTTP basic auth.
type GitServer struct {
	// URL is the repository's clone URL.
	URL string
	// Work is a clone to commit in; Commit pushes from it.
	Work string

	mu                 sync.Mutex
	requests           []string
	username, password string
	// srv serves handler; Down closes it and Up serves again on its address.
	srv     *httptest.Server
	handler http.Handler
}

// NewGitServer starts a server with an empty repository whose branch is
// main; it stops when the test ends.
func NewGitServer(t testing.TB) *GitServer {
	t.Helper()
	root, work := t.TempDir(), t.TempDir()
	Git(t, root, "init", "-q", "--bare", "-b", "main", "repo.git")
	Git(t, work, "init", "-q", "-b", "main")
	Git(t, work, "remote", "add", "origin", filepath.Join(root, "repo.git"))
	s := &GitServer{Work: work}
	backend := &cgi.Handler{Path: "/usr/lib/git-core/git-http-backend", Root: "/", Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}}
	s.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests = append(s.requests, r.Method+" "+r.URL.Path)
		wantUser, wantPass := s.username, s.password
		s.mu.Unlock()
		if wantPass != "" {
			user, pass, ok := r.BasicAuth()
			if !ok || user != wantUser || pass != wantPass {
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		backend.ServeHTTP(w, r)
	})
	s.srv = httptest.NewServer(s.handler)
	t.Cleanup(func() {
		s.mu.Lock()
		srv := s.srv
		s.mu.Unlock()
		srv.Close()
	})
	s.URL = s.srv.URL + "/repo.git"
	return s
}

// RequireAuth makes the repository private, or changes its password.
func (s *GitServer) RequireAuth(username, password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.username, s.password = username, password
}

// Commit writes files (name → content; an empty content removes the
// file), commits them and pushes; it returns the new commit.
func (s *GitServer) Commit(t testing.TB, files map[string]string) string {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(s.Work, name)
		if content == "" {
			if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	Git(t, s.Work, "add", "-A")
	Git(t, s.Work, "commit", "-q", "--allow-empty", "-m", "change")
	Git(t, s.Work, "push", "-q", "-f", "origin", "main")
	return Git(t, s.Work, "rev-parse", "HEAD")
}

// Take returns the requests since the last call, as "METHOD /path".
func (s *GitServer) Take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.requests
	s.requests = nil
	return r
}

// WriteFiles writes files (name → content, names may hold folders) into a
// new temporary directory and returns it.
func WriteFiles(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Within waits until ok holds, checking every 20 ms, or fails the test
// after d.
func Within(t testing.TB, what string, d time.Duration, ok func() bool) {
	t.Helper()
	Poll(t, what, d, 20*time.Millisecond, ok)
}

// Poll waits until ok holds, checking every period, or fails the test
// after d.
func Poll(t testing.TB, what string, d, period time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within %s", what, d)
		}
		time.Sleep(period)
	}
}
