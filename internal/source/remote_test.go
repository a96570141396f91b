package source

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
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

	"github.com/gitk8s/gitk8s/internal/testenv"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// upstream is a bare repository served by real Git servers on loopback,
// with a work tree to make commits from.
type upstream struct {
	t    *testing.T
	root string // holds repo.git
	work string
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{t: t, root: t.TempDir(), work: t.TempDir()}
	testenv.Git(t, u.root, "init", "-q", "--bare", "-b", "main", "repo.git")
	testenv.Git(t, u.work, "init", "-q", "-b", "main")
	testenv.Git(t, u.work, "remote", "add", "origin", filepath.Join(u.root, "repo.git"))
	return u
}

// commit writes a file, commits and pushes; it returns the commit SHA.
func (u *upstream) commit(file, content string) string {
	write(u.t, filepath.Join(u.work, file), content)
	testenv.Git(u.t, u.work, "add", ".")
	testenv.Git(u.t, u.work, "commit", "-q", "-m", "change "+file)
	testenv.Git(u.t, u.work, "push", "-q", "-f", "origin", "main")
	return testenv.Git(u.t, u.work, "rev-parse", "HEAD")
}

func (u *upstream) tag(name string) {
	testenv.Git(u.t, u.work, "tag", "-a", name, "-m", name)
	testenv.Git(u.t, u.work, "push", "-q", "origin", name)
}

// httpServer serves the repository over HTTPS with git http-backend,
// behind basic auth, and counts the requests it gets.
type httpServer struct {
	*httptest.Server
	mu       sync.Mutex
	requests []string
	caPEM    []byte
}

func (u *upstream) serveHTTPS(user, password string) *httpServer {
	return u.serveHTTPSFor(u.t, user, password)
}

func (u *upstream) serveHTTPSFor(tb testing.TB, user, password string) *httpServer {
	s := &httpServer{}
	backend := &cgi.Handler{
		Path: "/usr/lib/git-core/git-http-backend",
		Root: "/",
		Env:  []string{"GIT_PROJECT_ROOT=" + u.root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests = append(s.requests, r.Method+" "+r.URL.Path)
		s.mu.Unlock()
		if gotUser, gotPass, ok := r.BasicAuth(); !ok || gotUser != user || gotPass != password {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, r)
	}))
	tb.Cleanup(s.Close)
	s.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
	return s
}

func (s *httpServer) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.requests
	s.requests = nil
	return r
}

func TestFetchHTTPS(t *testing.T) {
	up := newUpstream(t)
	first := up.commit("app.yaml", "v1")
	srv := up.serveHTTPS("alice", "tok-9f8e7d")
	url := srv.URL + "/repo.git"
	f := NewFetcher(t.TempDir())
	opts := RemoteOptions{URL: url, Ref: Ref{Branch: "main"}, Auth: Auth{Username: "alice", Password: "tok-9f8e7d", CABundle: srv.caPEM}, Timeout: 10 * time.Second}
	ctx := context.Background()

	snap, res, err := f.Fetch(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Revision != first || !res.Transferred || read(t, snap, "app.yaml") != "v1" {
		t.Errorf("first fetch: %+v", res)
	}
	snap.Close()
	srv.take()

	// Unchanged remote: one ref advertisement, no object transfer.
	snap, res, err = f.Fetch(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	snap.Close()
	if res.Transferred || res.Revision != first {
		t.Errorf("unchanged fetch: %+v", res)
	}
	if reqs := srv.take(); len(reqs) != 1 || reqs[0] != "GET /repo.git/info/refs" {
		t.Errorf("unchanged remote cost %v, want one ref advertisement", reqs)
	}
	if rev, err := f.Resolve(ctx, opts); err != nil || rev != first {
		t.Errorf("Resolve: %s %v", rev, err)
	}

	// A new commit is fetched; a rewritten branch is said to be.
	second := up.commit("app.yaml", "v2")
	snap, res, err = f.Fetch(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Revision != second || res.Previous != first || res.ForcePushed || read(t, snap, "app.yaml") != "v2" {
		t.Errorf("new commit: %+v", res)
	}
	snap.Close()
	testenv.Git(t, up.work, "reset", "-q", "--hard", first)
	rewritten := up.commit("other.yaml", "rewritten")
	snap, res, err = f.Fetch(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	snap.Close()
	if res.Revision != rewritten || !res.ForcePushed {
		t.Errorf("force push not detected: %+v", res)
	}

	// Tags, semver ranges and commits.
	up.tag("v1.0.0")
	up.commit("app.yaml", "v1.2")
	up.tag("v1.2.0")
	v2 := up.commit("app.yaml", "v2.0")
	up.tag("v2.0.0")
	for _, tt := range []struct {
		ref  Ref
		want string
	}{
		{Ref{Tag: "v1.0.0"}, "v1"}, // tagged on the rewritten branch
		{Ref{SemVer: "^1"}, "v1.2"},
		{Ref{SemVer: ">=2.0.0"}, "v2.0"},
		{Ref{Commit: v2}, "v2.0"},
		{Ref{Name: "v1.2.0"}, "v1.2"},
		{Ref{}, "v2.0"},
	} {
		o := opts
		o.Ref = tt.ref
		snap, _, err := f.Fetch(ctx, o)
		if err != nil {
			t.Errorf("%s: %v", tt.ref, err)
			continue
		}
		if got := read(t, snap, "app.yaml"); got != tt.want {
			t.Errorf("%s: app.yaml %q, want %q", tt.ref, got, tt.want)
		}
		snap.Close()
	}
}

func TestFetchHTTPSErrors(t *testing.T) {
	up := newUpstream(t)
	up.commit("app.yaml", "v1")
	srv := up.serveHTTPS("alice", "right-pass-1234")
	f := NewFetcher(t.TempDir())
	good := Auth{Username: "alice", Password: "right-pass-1234", CABundle: srv.caPEM}
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "https://" + closed.Addr().String() + "/repo.git"
	closed.Close()

	tests := []struct {
		name string
		url  string
		ref  Ref
		auth Auth
		want string
		is   error
	}{
		{name: "wrong password", url: srv.URL + "/repo.git", auth: Auth{Username: "alice", Password: "wrong-pass-5678", CABundle: srv.caPEM}, want: "credentials were refused"},
		{name: "no credentials", url: srv.URL + "/repo.git", auth: Auth{CABundle: srv.caPEM}, want: "authentication required"},
		{name: "untrusted certificate", url: srv.URL + "/repo.git", auth: Auth{Username: "alice", Password: "right-pass-1234"}, want: "certificate"},
		{name: "missing branch", url: srv.URL + "/repo.git", ref: Ref{Branch: "nope"}, auth: good, is: ErrRefNotFound},
		{name: "no tag in range", url: srv.URL + "/repo.git", ref: Ref{SemVer: "^9"}, auth: good, is: ErrRefNotFound},
		{name: "unreachable server", url: closedURL, auth: good, want: "connection refused"},
		{name: "password in the URL is not shown", url: strings.Replace(srv.URL, "https://", "https://alice:url-pass-4321@", 1) + "/nope.git", auth: Auth{CABundle: srv.caPEM}, want: "xxxxx"},
		{name: "token as the user in the URL is not shown", url: strings.Replace(srv.URL, "https://", "https://url-token-7777@", 1) + "/repo.git", auth: Auth{CABundle: srv.caPEM}, want: "https://xxxxx@"},
		{name: "token as the user of an unreachable server is not shown", url: strings.Replace(closedURL, "https://", "https://url-token-7777@", 1), auth: Auth{CABundle: srv.caPEM}, want: "connection refused"},
		{name: "token in a URL that does not parse is not shown", url: strings.Replace(srv.URL, "https://", "https://url-token-7777@", 1) + "/repo%zz.git", want: "invalid URL escape"},
		{name: "token as the username is not shown", url: closedURL, auth: Auth{Username: "auth-token-8888"}, want: "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := f.Fetch(context.Background(), RemoteOptions{URL: tt.url, Ref: tt.ref, Auth: tt.auth, Timeout: 5 * time.Second})
			if err == nil {
				t.Fatal("no error")
			}
			if tt.want != "" && !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q lacks %q", err, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %q is not %v", err, tt.is)
			}
			for _, secret := range []string{"right-pass-1234", "wrong-pass-5678", "url-pass-4321", "url-token-7777", "auth-token-8888"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error shows a password: %s", err)
				}
			}
		})
	}
}

// TestFetchTokenAsUser fetches with a token as the URL's user, as hosts
// take it: neither the snapshot's origin nor an error shows it.
func TestFetchTokenAsUser(t *testing.T) {
	up := newUpstream(t)
	up.commit("app.yaml", "v1")
	srv := up.serveHTTPS("user-token-31337", "")
	url := strings.Replace(srv.URL, "https://", "https://user-token-31337@", 1) + "/repo.git"
	f := NewFetcher(t.TempDir())
	opts := RemoteOptions{URL: url, Auth: Auth{CABundle: srv.caPEM}, Timeout: 10 * time.Second}
	snap, _, err := f.Fetch(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	if want := strings.Replace(srv.URL, "https://", "https://xxxxx@", 1) + "/repo.git"; snap.Origin != want {
		t.Errorf("origin %s, want %s", snap.Origin, want)
	}
	opts.Ref = Ref{Branch: "nope"}
	_, _, err = f.Fetch(context.Background(), opts)
	if !errors.Is(err, ErrRefNotFound) || strings.Contains(err.Error(), "user-token-31337") {
		t.Errorf("missing branch: %v", err)
	}
	// The cache on disk holds no credential: its configuration names the
	// remote without them, and the next fetch still authenticates.
	err = filepath.WalkDir(f.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if bytes.Contains(data, []byte("user-token-31337")) {
			t.Errorf("the cache file %s holds the token", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	up.commit("app.yaml", "v2")
	opts.Ref = Ref{}
	snap2, _, err := f.Fetch(context.Background(), opts)
	if err != nil {
		t.Fatalf("a second fetch through the credential-free cache: %v", err)
	}
	snap2.Close()
}

func TestRedact(t *testing.T) {
	tests := []struct {
		name, url, want string
	}{
		{"token as the user", "https://ghp_tok123@git.example/org/repo.git", "https://xxxxx@git.example/org/repo.git"},
		{"user and token", "https://alice:tok-456@git.example/repo.git", "https://xxxxx:xxxxx@git.example/repo.git"},
		{"token as the user with a placeholder password", "https://ghp_tok123:x-oauth-basic@git.example/repo.git", "https://xxxxx:xxxxx@git.example/repo.git"},
		{"token with a port", "http://tok@127.0.0.1:8080/repo.git", "http://xxxxx@127.0.0.1:8080/repo.git"},
		{"escaped token", "https://to%40ken:pa%2Fss@git.example/repo.git", "https://xxxxx:xxxxx@git.example/repo.git"},
		{"at sign in the user", "https://to@ken@git.example/repo.git", "https://xxxxx@git.example/repo.git"},
		{"URL that does not parse", "https://tok789@git.example/repo%zz.git", "https://xxxxx@git.example/repo%zz.git"},
		{"upper-case scheme", "HTTPS://tok@git.example/repo.git", "HTTPS://xxxxx@git.example/repo.git"},
		{"URL in a message", `Get "https://tok@git.example/repo.git/info/refs": refused`, `Get "https://xxxxx@git.example/repo.git/info/refs": refused`},
		{"no credentials", "https://git.example/repo.git", "https://git.example/repo.git"},
		{"at sign in the path", "https://git.example/org/@scope/repo.git", "https://git.example/org/@scope/repo.git"},
		{"at sign in the query", "https://git.example/repo.git?by=a@b", "https://git.example/repo.git?by=a@b"},
		{"SSH login", "ssh://git@git.example/repo.git", "ssh://git@git.example/repo.git"},
		{"SSH password", "ssh://git:secret@git.example/repo.git", "ssh://git:xxxxx@git.example/repo.git"},
		{"scp-like", "git@git.example:org/repo.git", "git@git.example:org/repo.git"},
		{"local path", "/srv/git/repo", "/srv/git/repo"},
		{"token in the query", "https://git.example/repo.git?private_token=glpat-abc&ref=main", "https://git.example/repo.git?private_token=xxxxx&ref=main"},
		{"access token after another parameter", "https://git.example/archive.tar.gz?ref=main&access_token=tok-1", "https://git.example/archive.tar.gz?ref=main&access_token=xxxxx"},
		{"a signed URL", `GET "https://bucket.example/o?X-Amz-Signature=abcdef0123&X-Amz-Date=1" failed`, `GET "https://bucket.example/o?X-Amz-Signature=xxxxx&X-Amz-Date=1" failed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Redact(tt.url); got != tt.want {
				t.Errorf("Redact(%q) = %q, want %q", tt.url, got, tt.want)
			}
		})
	}
}

// sshServer runs git-upload-pack for clients whose key it knows.
func (u *upstream) serveSSH(t *testing.T, client ssh.PublicKey) (addr string, host ssh.Signer) {
	_, hostKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	host, err = ssh.NewSignerFromKey(hostKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
		if bytes.Equal(key.Marshal(), client.Marshal()) {
			return nil, nil
		}
		return nil, fmt.Errorf("unknown key")
	}}
	cfg.AddHostKey(host)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go u.handleSSH(conn, cfg)
		}
	}()
	return l.Addr().String(), host
}

func (u *upstream) handleSSH(conn net.Conn, cfg *ssh.ServerConfig) {
	_, chans, reqs, err := ssh.NewServerConn(conn, cfg)
	if err != nil {
		conn.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "session only")
			continue
		}
		ch, requests, err := nc.Accept()
		if err != nil {
			continue
		}
		go func() {
			defer ch.Close()
			for req := range requests {
				if req.Type != "exec" {
					req.Reply(req.Type == "env", nil)
					continue
				}
				command := string(req.Payload[4:])
				req.Reply(true, nil)
				verb, arg, _ := strings.Cut(command, " ")
				if verb != "git-upload-pack" {
					return
				}
				cmd := exec.Command("git-upload-pack", filepath.Join(u.root, strings.Trim(arg, "'/")))
				cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, ch.Stderr()
				status := uint32(0)
				if err := cmd.Run(); err != nil {
					status = 1
				}
				payload := make([]byte, 4)
				binary.BigEndian.PutUint32(payload, status)
				ch.SendRequest("exit-status", false, payload)
				return
			}
		}()
	}
}

func TestFetchSSH(t *testing.T) {
	up := newUpstream(t)
	rev := up.commit("app.yaml", "over ssh")
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	addr, host := up.serveSSH(t, sshPub)
	url := "ssh://git@" + addr + "/repo.git"
	hostLine := knownhosts.Line([]string{knownhosts.Normalize(addr)}, host.PublicKey())
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	other, _ := ssh.NewSignerFromKey(otherKey)
	wrongLine := knownhosts.Line([]string{knownhosts.Normalize(addr)}, other.PublicKey())

	f := NewFetcher(t.TempDir())
	snap, res, err := f.Fetch(context.Background(), RemoteOptions{URL: url, Auth: Auth{SSHKey: keyPEM, KnownHosts: []byte(hostLine + "\n")}, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Revision != rev || read(t, snap, "app.yaml") != "over ssh" {
		t.Errorf("ssh fetch: %+v", res)
	}
	snap.Close()

	for _, tt := range []struct {
		name, knownHosts, want string
	}{
		{"changed host key", wrongLine, "has changed"},
		{"unknown host", "", "is not in known_hosts"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := NewFetcher(t.TempDir()).Fetch(context.Background(), RemoteOptions{URL: url, Auth: Auth{SSHKey: keyPEM, KnownHosts: []byte(tt.knownHosts)}, Timeout: 5 * time.Second})
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrHostKey) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
	_, _, err = NewFetcher(t.TempDir()).Fetch(context.Background(), RemoteOptions{URL: url, Auth: Auth{KnownHosts: []byte(hostLine)}})
	if err == nil || !strings.Contains(err.Error(), "SSH needs a private key") {
		t.Errorf("no key: %v", err)
	}
}

// BenchmarkUnchangedRemote is the cost of learning that a remote has not
// moved: Resolve is one ref advertisement (what a reconcile asks first);
// Fetch also confirms the commit is cached and writes its tree.
func BenchmarkUnchangedRemote(b *testing.B) {
	up := &upstream{root: b.TempDir(), work: b.TempDir()}
	testenv.Git(b, up.root, "init", "-q", "--bare", "-b", "main", "repo.git")
	testenv.Git(b, up.work, "init", "-q", "-b", "main")
	testenv.Git(b, up.work, "remote", "add", "origin", filepath.Join(up.root, "repo.git"))
	for i := range 200 {
		p := filepath.Join(up.work, fmt.Sprintf("ns-%03d", i/20), fmt.Sprintf("cm-%d.yaml", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-%d}\n", i)), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	testenv.Git(b, up.work, "add", ".")
	testenv.Git(b, up.work, "-c", "user.name=b", "-c", "user.email=b@example.test", "commit", "-q", "-m", "x")
	testenv.Git(b, up.work, "push", "-q", "origin", "main")
	srv := up.serveHTTPSFor(b, "u", "p")
	f := NewFetcher(b.TempDir())
	opts := RemoteOptions{URL: srv.URL + "/repo.git", Ref: Ref{Branch: "main"}, Auth: Auth{Username: "u", Password: "p", CABundle: srv.caPEM}}
	snap, _, err := f.Fetch(context.Background(), opts)
	if err != nil {
		b.Fatal(err)
	}
	snap.Close()
	b.Run("resolve", func(b *testing.B) {
		for b.Loop() {
			if _, err := f.Resolve(context.Background(), opts); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fetch-and-checkout", func(b *testing.B) {
		for b.Loop() {
			snap, res, err := f.Fetch(context.Background(), opts)
			if err != nil || res.Transferred {
				b.Fatalf("%v %+v", err, res)
			}
			snap.Close()
		}
	})
	srv.take()
	if _, err := f.Resolve(context.Background(), opts); err != nil {
		b.Fatal(err)
	}
	if reqs := srv.take(); len(reqs) != 1 {
		b.Fatalf("an unchanged remote cost %v", reqs)
	}
}
