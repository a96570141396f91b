package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gitk8s/gitk8s/internal/testenv"
)

// loopbackListeners binds n addresses on loopback, for a configuration
// to name before the daemon's servers are made.
func loopbackListeners(t *testing.T, n int) []net.Listener {
	t.Helper()
	var out []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Close() })
		out = append(out, l)
	}
	return out
}

// serveOn serves d's servers, as Servers makes them, on the listeners
// bound for their addresses, and returns their base URLs in the same
// order.
func serveOn(t *testing.T, d *Daemon, listeners []net.Listener) []string {
	t.Helper()
	servers, err := d.Servers(DefaultServerOptions())
	if err != nil {
		t.Fatal(err)
	}
	if len(servers) != len(listeners) {
		t.Fatalf("%d servers, want %d", len(servers), len(listeners))
	}
	var urls []string
	for i, srv := range servers {
		l := listeners[i]
		if srv.Addr != l.Addr().String() {
			t.Fatalf("server %d is at %s, want %s", i, srv.Addr, l.Addr())
		}
		o := DefaultServerOptions()
		if srv.ReadHeaderTimeout != o.ReadHeaderTimeout || srv.ReadTimeout != o.ReadTimeout || srv.WriteTimeout != o.WriteTimeout ||
			srv.IdleTimeout != o.IdleTimeout || srv.MaxHeaderBytes != o.MaxHeaderBytes {
			t.Errorf("server at %s is not bounded as NewServer bounds it", srv.Addr)
		}
		go func() { _ = srv.Serve(l) }()
		t.Cleanup(func() { _ = srv.Close() })
		urls = append(urls, "http://"+l.Addr().String())
	}
	return urls
}

// webhookSecretFile writes a receiver's secret to a file.
func webhookSecretFile(t *testing.T, secret string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hook")
	if err := os.WriteFile(p, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// call sends one request and returns its status code.
func call(t *testing.T, method, url string, header http.Header, body string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// githubPush is a signed GitHub push of branch main of repo.
func githubPush(repo, secret string) (http.Header, string) {
	body := fmt.Sprintf(`{"ref":"refs/heads/main","repository":{"clone_url":%q}}`, repo)
	h := http.Header{}
	h.Set("X-GitHub-Event", "push")
	h.Set("X-Hub-Signature-256", "sha256="+sign(secret, body))
	return h, body
}

// TestHooksListen serves a daemon whose configuration sets
// webhooks.hooksListen on two loopback listeners: /hooks/ is served only
// at hooksListen, everything else only at listen; each gets 404 on the
// other. Without hooksListen, one listener serves both, as before.
func TestHooksListen(t *testing.T) {
	ns := env.Namespace(t)
	git := testenv.NewGitServer(t)
	git.Commit(t, map[string]string{"cm.yaml": fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: split, namespace: %s}\ndata: {value: one}\n", ns)})
	secret := webhookSecretFile(t, "split-secret")
	config := func(webhooks string) string {
		return fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: %s, path: %s}}
syncs:
- name: split-%s
  source: {url: %s, ref: {branch: main}, interval: 1h}
  clusters: [local]
webhooks:
  %s
  receivers: [{name: github, provider: github, secretFile: %s}]
`, env.Contexts[0], env.Kubeconfig, ns, git.URL, webhooks, secret)
	}
	ls := loopbackListeners(t, 2)
	d := newDaemon(t, config(fmt.Sprintf("listen: %q\n  hooksListen: %q", ls[0].Addr(), ls[1].Addr())))
	urls := serveOn(t, d, ls)
	status, hooks := urls[0], urls[1]
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.RunElected(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	testenv.Within(t, "the daemon is ready", 30*time.Second, func() bool {
		return call(t, http.MethodGet, status+"/readyz", nil, "") == http.StatusOK
	})

	pushHeader, push := githubPush(git.URL, "split-secret")
	forwarded := pushHeader.Clone()
	forwarded.Set(forwardedHeader, "http://elsewhere")
	tests := []struct {
		name       string
		method     string
		path       string
		header     http.Header
		body       string
		onStatus   int
		onHooks    int
		onCombined int
	}{
		{"health", http.MethodGet, "/healthz", nil, "", 200, 404, 200},
		{"readiness", http.MethodGet, "/readyz", nil, "", 200, 404, 503},
		{"metrics", http.MethodGet, "/metrics", nil, "", 200, 404, 200},
		{"status API", http.MethodGet, "/api/v1/syncs", nil, "", 200, 404, 200},
		{"status page", http.MethodGet, "/", nil, "", 200, 404, 200},
		{"a path nothing serves", http.MethodGet, "/nothing", nil, "", 404, 404, 404},
		{"a signed push", http.MethodPost, "/hooks/github", pushHeader, push, 404, 202, 202},
		{"an unsigned push", http.MethodPost, "/hooks/github", nil, push, 404, 401, 401},
		{"a receiver that does not exist", http.MethodPost, "/hooks/gitlab", pushHeader, push, 404, 404, 404},
		// Only a standby of an election forwards, to the status listener.
		{"a push marked forwarded, without election", http.MethodPost, "/hooks/github", forwarded, push, 404, 202, 202},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := call(t, tt.method, status+tt.path, tt.header, tt.body); got != tt.onStatus {
				t.Errorf("at listen: %d, want %d", got, tt.onStatus)
			}
			if got := call(t, tt.method, hooks+tt.path, tt.header, tt.body); got != tt.onHooks {
				t.Errorf("at hooksListen: %d, want %d", got, tt.onHooks)
			}
		})
	}

	// Without hooksListen: one listener serves everything (this daemon
	// does not run, so it is not ready).
	one := loopbackListeners(t, 1)
	combined := serveOn(t, newDaemon(t, config(fmt.Sprintf("listen: %q", one[0].Addr()))), one)[0]
	for _, tt := range tests {
		t.Run("one listener/"+tt.name, func(t *testing.T) {
			if got := call(t, tt.method, combined+tt.path, tt.header, tt.body); got != tt.onCombined {
				t.Errorf("%d, want %d", got, tt.onCombined)
			}
		})
	}
}

// TestHooksListenStandbyForwards: with leader election and hooksListen,
// a push that reaches the standby's hooks listener is checked there and
// forwarded to the leader's status listener (the URL it advertises),
// which applies it; the leader's status listener still refuses a push
// that no standby forwarded.
func TestHooksListenStandbyForwards(t *testing.T) {
	ns := env.Namespace(t)
	ensureHomeNamespace(t)
	cm := func(value string) string {
		return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: split-forwarded, namespace: %s}\ndata: {value: %q}\n", ns, value)
	}
	git := testenv.NewGitServer(t)
	git.Commit(t, map[string]string{"cm.yaml": cm("one")})
	secret := webhookSecretFile(t, "split-secret")
	start := func() (d *Daemon, status, hooks string) {
		ls := loopbackListeners(t, 2)
		cfg, err := LoadConfig(writeConfig(t, fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: %s, path: %s}}
syncs:
- name: split-forwarded-%s
  source: {url: %s, ref: {branch: main}, interval: 1h}
  clusters: [local]
webhooks:
  listen: %q
  hooksListen: %q
  receivers: [{name: github, provider: github, secretFile: %s}]
leaderElection: {enabled: true, name: lease-%s, leaseDuration: 3s}
`, env.Contexts[0], env.Kubeconfig, ns, git.URL, ls[0].Addr(), ls[1].Addr(), secret, ns)))
		if err != nil {
			t.Fatal(err)
		}
		d, err = New(cfg, Options{GitCacheDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			AdvertiseURL: "http://" + ls[0].Addr().String()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(d.Close)
		urls := serveOn(t, d, ls)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = d.RunElected(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		return d, urls[0], urls[1]
	}
	value := func() string { return configMapValue(t, ns, "split-forwarded") }
	a, aStatus, _ := start()
	testenv.Within(t, "a leads and applies", 30*time.Second, func() bool { return a.Leader() && value() == "one" })
	b, _, bHooks := start()
	testenv.Within(t, "b knows the leader", 10*time.Second, func() bool { return b.LeaderURL() == aStatus })

	git.Commit(t, map[string]string{"cm.yaml": cm("two")})
	header, push := githubPush(git.URL, "split-secret")
	if got := call(t, http.MethodPost, aStatus+"/hooks/github", header, push); got != http.StatusNotFound {
		t.Errorf("a push to the leader's status listener: %d, want 404", got)
	}
	if got := call(t, http.MethodPost, bHooks+"/hooks/github", header, push); got != http.StatusAccepted {
		t.Fatalf("a push to the standby's hooks listener: %d, want 202", got)
	}
	testenv.Within(t, "the leader applies the forwarded push", 15*time.Second, func() bool { return value() == "two" })
	if !b.Status()[0].LastAttempt.IsZero() {
		t.Error("the standby reconciled")
	}
	// The standby checked the forwarded push; the leader counted it.
	forwardedCounted := func(d *Daemon) float64 {
		families, err := d.metrics.registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		n := 0.0
		for _, f := range families {
			if f.GetName() != "gitk8s_webhook_requests_total" {
				continue
			}
			for _, m := range f.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
		return n
	}
	if diff := cmp.Diff([]float64{1, 0}, []float64{forwardedCounted(a), forwardedCounted(b)}); diff != "" {
		t.Errorf("webhook requests counted on leader and standby (-want +got):\n%s", diff)
	}
}

// TestHooksListenValidation: hooksListen must be host:port and must not
// be an address that listen binds too.
func TestHooksListenValidation(t *testing.T) {
	tests := []struct {
		name        string
		listen      string
		hooksListen string
		want        []string
	}{
		{"one listener", "", "", nil},
		{"two ports", ":9292", ":9293", nil},
		{"the default port", "", ":9293", nil},
		{"two hosts, one port", "127.0.0.1:9292", "127.0.0.2:9292", nil},
		{"both picked by the kernel", "127.0.0.1:0", "127.0.0.1:0", nil},
		{"the same address", ":9292", ":9292", []string{`hooksListen ":9292" is an address listen ":9292" binds too: give /hooks/ a port of its own, or leave hooksListen out to serve everything at listen`}},
		{"the default address", "", "0.0.0.0:9292", []string{`hooksListen "0.0.0.0:9292" is an address listen ":9292" binds too: give /hooks/ a port of its own, or leave hooksListen out to serve everything at listen`}},
		{"an address within listen's", ":9292", "10.0.0.1:9292", []string{`hooksListen "10.0.0.1:9292" is an address listen ":9292" binds too: give /hooks/ a port of its own, or leave hooksListen out to serve everything at listen`}},
		{"no port", ":9292", "9293", []string{`hooksListen "9293": address 9293: missing port in address (write host:port or :port)`}},
		{"listen without a port", "9292", ":9293", []string{`listen "9292": address 9292: missing port in address (write host:port or :port)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := WebhooksConfig{Listen: tt.listen, HooksListen: tt.hooksListen}.listenProblems()
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

// TestReceiverLimitsFromConfig: a receiver's limits in the configuration
// are the limits its requests meet.
func TestReceiverLimitsFromConfig(t *testing.T) {
	ns := env.Namespace(t)
	git := testenv.NewGitServer(t)
	git.Commit(t, map[string]string{"cm.yaml": fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: limits, namespace: %s}\n", ns)})
	secret := webhookSecretFile(t, "limits-secret")
	ls := loopbackListeners(t, 1)
	d := newDaemon(t, fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: %s, path: %s}}
syncs:
- name: limits-%s
  source: {url: %s, ref: {branch: main}, interval: 1h}
  clusters: [local]
webhooks:
  listen: %q
  receivers: [{name: github, provider: github, secretFile: %s, invalidBurst: 2, invalidPerMinute: 1}]
`, env.Contexts[0], env.Kubeconfig, ns, git.URL, ls[0].Addr(), secret))
	url := serveOn(t, d, ls)[0] + "/hooks/github"
	_, push := githubPush(git.URL, "limits-secret")
	var got []int
	for range 3 {
		got = append(got, call(t, http.MethodPost, url, nil, push))
	}
	if want := []int{401, 401, 429}; !cmp.Equal(got, want) {
		t.Errorf("three unsigned pushes with invalidBurst 2: %v, want %v", got, want)
	}
	if _, err := parseConfig(t, `apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters: [{name: local, kubeconfig: {context: x}}]
webhooks: {receivers: [{name: github, provider: github, secretFile: /dev/null, bodyTimeout: -1s}]}
`); err == nil || !strings.Contains(err.Error(), "must not be negative") {
		t.Errorf("a negative bodyTimeout: %v, want it refused", err)
	}
}

// parseConfig loads a configuration from text.
func parseConfig(t *testing.T, text string) (*Config, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return LoadConfig(p)
}
