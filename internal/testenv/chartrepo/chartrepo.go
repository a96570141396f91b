// Package chartrepo starts, for tests, the two kinds of place Helm charts
// are fetched from, on loopback: a chart repository (a folder with an
// index.yaml served over HTTP) and an OCI registry (the distribution
// registry, in memory). Both can require a user name and password and
// count the requests they serve; charts are packaged, indexed and pushed
// with the Helm CLI the Makefile builds, as a chart's maintainers would.
package chartrepo

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/distribution/distribution/v3/configuration"
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd" // the registry's basic auth
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory" // the registry's storage
	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/bcrypt"

	"github.com/gitk8s/gitk8s/internal/testenv"
)

// Helm is the Helm CLI the Makefile builds (make helm).
func Helm(t testing.TB) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, ".cache", "bin", "helm")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("helm missing at %s; build it with `make helm`", bin)
	}
	return bin
}

// RunHelm runs the Helm CLI with its configuration and caches in home, so
// that nothing of the user's is read or written, and returns its output.
func RunHelm(t testing.TB, home string, args ...string) string {
	t.Helper()
	cmd := exec.Command(Helm(t), args...)
	cmd.Env = append(os.Environ(),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
		"HELM_REGISTRY_CONFIG="+filepath.Join(home, "registry.json"),
		"DOCKER_CONFIG="+filepath.Join(home, "docker"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Server is a chart repository: Dir's files served at URL.
type Server struct {
	// URL is the repository's URL (http://127.0.0.1:PORT).
	URL string
	// Dir holds index.yaml and the chart archives.
	Dir string

	srv                *httptest.Server
	username, password string
	requests           atomic.Int64
	mu                 sync.Mutex
	paths              []string
}

// NewServer serves a new, empty chart repository until the test ends.
func NewServer(t testing.TB) *Server {
	s := &Server{Dir: t.TempDir()}
	files := http.FileServer(http.Dir(s.Dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		s.mu.Lock()
		s.paths = append(s.paths, r.URL.Path)
		user, pass := s.username, s.password
		s.mu.Unlock()
		if user != "" {
			if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="charts"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s.URL, s.srv = srv.URL, srv
	return s
}

// Close stops serving: its URL refuses connections from then on.
func (s *Server) Close() { s.srv.Close() }

// RequireAuth makes the repository answer only requests with these
// credentials.
func (s *Server) RequireAuth(username, password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.username, s.password = username, password
}

// Requests is the number of requests served so far.
func (s *Server) Requests() int64 { return s.requests.Load() }

// Paths are the paths requested so far, in order.
func (s *Server) Paths() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.paths...)
}

// Publish packages the chart folder into the repository and indexes it
// anew, as helm package and helm repo index do.
func (s *Server) Publish(t testing.TB, chartDir string) {
	t.Helper()
	home := t.TempDir()
	RunHelm(t, home, "package", chartDir, "--destination", s.Dir)
	RunHelm(t, home, "repo", "index", s.Dir, "--url", s.URL)
}

// Registry is an OCI registry (the distribution registry, in memory).
type Registry struct {
	// Host is host:port of the registry, on loopback.
	Host string
	// Username and Password are what it requires, when it requires any.
	Username, Password string

	mu       sync.Mutex
	requests []string
	corrupt  bool
}

// CorruptBlobs makes the registry, from now on, alter one byte of every
// blob it serves (as a disk or a proxy on the way could), or stop that.
func (r *Registry) CorruptBlobs(on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.corrupt = on
}

// flippingWriter changes the first byte of the body it writes.
type flippingWriter struct {
	http.ResponseWriter
	done bool
}

func (w *flippingWriter) Write(p []byte) (int, error) {
	if !w.done && len(p) > 0 {
		w.done = true
		q := append([]byte(nil), p...)
		q[0] ^= 0xff
		return w.ResponseWriter.Write(q)
	}
	return w.ResponseWriter.Write(p)
}

// NewRegistry starts a registry until the test ends; with a username it
// requires these credentials (htpasswd auth).
func NewRegistry(t testing.TB, username, password string) *Registry {
	t.Helper()
	cfg := &configuration.Configuration{}
	cfg.Log.Level = "error"
	cfg.Log.AccessLog.Disabled = true
	cfg.Storage = configuration.Storage{"inmemory": configuration.Parameters{}}
	cfg.Storage["maintenance"] = configuration.Parameters{"uploadpurging": map[any]any{"enabled": false}}
	cfg.Storage["delete"] = configuration.Parameters{"enabled": true}
	if username != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(t.TempDir(), "htpasswd")
		if err := os.WriteFile(file, []byte(username+":"+string(hash)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg.Auth = configuration.Auth{"htpasswd": configuration.Parameters{"realm": "charts", "path": file}}
	}
	logrus.SetOutput(io.Discard)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	app := handlers.NewApp(ctx, cfg)
	r := &Registry{Username: username, Password: password}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.requests = append(r.requests, req.Method+" "+req.URL.Path)
		corrupt := r.corrupt
		r.mu.Unlock()
		if corrupt && req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/") {
			w = &flippingWriter{ResponseWriter: w}
		}
		app.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.Host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

// Requests are the requests served so far, as "METHOD PATH".
func (r *Registry) Requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.requests...)
}

// Push packages the chart folder and pushes it under oci://HOST/repo, as
// helm push does, and returns the chart's reference.
func (r *Registry) Push(t testing.TB, chartDir, repo string) string {
	t.Helper()
	home := t.TempDir()
	out := filepath.Join(home, "packaged")
	RunHelm(t, home, "package", chartDir, "--destination", out)
	archives, err := filepath.Glob(filepath.Join(out, "*.tgz"))
	if err != nil || len(archives) != 1 {
		t.Fatalf("helm package wrote %v (%v)", archives, err)
	}
	args := []string{"push", archives[0], "oci://" + r.Host + "/" + repo, "--plain-http"}
	if r.Username != "" {
		args = append(args, "--username", r.Username, "--password", r.Password)
	}
	return RunHelm(t, home, args...)
}

// Delete deletes the manifest tag names in repo (and so every tag of it).
func (r *Registry) Delete(t testing.TB, repo, tag string) {
	t.Helper()
	do := func(method, ref string) *http.Response {
		req, err := http.NewRequest(method, "http://"+r.Host+"/v2/"+repo+"/manifests/"+ref, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
		if r.Username != "" {
			req.SetBasicAuth(r.Username, r.Password)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	head := do(http.MethodHead, tag)
	digest := head.Header.Get("Docker-Content-Digest")
	if head.StatusCode != http.StatusOK || digest == "" {
		t.Fatalf("HEAD %s:%s: %s", repo, tag, head.Status)
	}
	if resp := do(http.MethodDelete, digest); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE %s@%s: %s", repo, digest, resp.Status)
	}
}

// URL is the oci:// URL of repo in the registry.
func (r *Registry) URL(repo string) string { return fmt.Sprintf("oci://%s/%s", r.Host, repo) }
