package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/gitk8s/gitk8s/internal/controlplane"
	"github.com/gitk8s/gitk8s/internal/testenv"
)

// electedDaemon is a daemon running RunElected in a test.
type electedDaemon struct {
	*Daemon
	stop func()
	done chan struct{}
	// url is where its HTTP API listens, when the test serves it.
	url string
}

// startElected starts a daemon of this configuration with leader
// election, serving its HTTP API on loopback when serve is set (and
// advertising that URL); the test stops it at its end if it has not.
func startElected(t *testing.T, cfgText string, serve bool) *electedDaemon {
	t.Helper()
	cfg, err := LoadConfig(writeConfig(t, cfgText))
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{GitCacheDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	var ln net.Listener
	if serve {
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		opts.AdvertiseURL = "http://" + ln.Addr().String()
	}
	d, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &electedDaemon{Daemon: d, stop: cancel, done: make(chan struct{}), url: opts.AdvertiseURL}
	if serve {
		h, err := d.Handler()
		if err != nil {
			t.Fatal(err)
		}
		srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: h}}
		srv.Start()
		t.Cleanup(srv.Close)
	}
	go func() { _ = d.RunElected(ctx); close(e.done) }()
	t.Cleanup(func() { cancel(); <-e.done })
	return e
}

func ensureHomeNamespace(t *testing.T) {
	client := env.Client(t, "")
	if _, err := client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: HomeNamespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// TestLeaderElection runs two daemons on one cluster: one reconciles, the
// other stands by; when the leader stops, the other takes over and applies
// what Git says since.
func TestLeaderElection(t *testing.T) {
	ns := env.Namespace(t)
	ensureHomeNamespace(t)
	cm := func(value string) string {
		return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: elected, namespace: %s}\ndata: {value: %q}\n", ns, value)
	}
	srv := testenv.NewGitServer(t)
	srv.Commit(t, map[string]string{"cm.yaml": cm("one")})
	cfgText := fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: %s, path: %s}}
syncs:
- name: elected-%s
  source: {url: %s, interval: 1s}
  clusters: [local]
leaderElection: {enabled: true, name: lease-%s, leaseDuration: 3s}
`, env.Contexts[0], env.Kubeconfig, ns, srv.URL, ns)
	value := func() string { return configMapValue(t, ns, "elected") }
	a := startElected(t, cfgText, false)
	testenv.Within(t, "a leads and applies", 30*time.Second, func() bool { return a.Leader() && value() == "one" })
	b := startElected(t, cfgText, false)
	time.Sleep(4 * time.Second) // longer than the lease: b must still stand by
	if b.Leader() {
		t.Fatal("two leaders")
	}
	if st := b.Status()[0]; !st.LastAttempt.IsZero() {
		t.Errorf("the standby reconciled: %+v", st)
	}
	// Both are ready; each says what it does.
	for d, want := range map[*Daemon]string{a.Daemon: "ok: leader\n", b.Daemon: "ok: standby\n"} {
		h, err := d.Handler()
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		if rec.Code != http.StatusOK || rec.Body.String() != want {
			t.Errorf("/readyz: %d %q, want %q", rec.Code, rec.Body.String(), want)
		}
	}

	a.stop()
	<-a.done
	stopped := time.Now()
	srv.Commit(t, map[string]string{"cm.yaml": cm("two")})
	testenv.Within(t, "b takes over and applies", 15*time.Second, func() bool { return b.Leader() && value() == "two" })
	// a released the Lease: b did not wait for it to lapse.
	if took := time.Since(stopped); took > 3*time.Second {
		t.Errorf("takeover took %s", took)
	}
	if a.Leader() {
		t.Error("the stopped daemon still says it leads")
	}
}

// stuckDeployment is a Deployment whose pods never become ready, so that
// a reconcile applying it waits for health until its timeout.
func stuckDeployment(ns string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: stuck, namespace: %s}
spec:
  replicas: 1
  selector: {matchLabels: {app: stuck}}
  template:
    metadata:
      labels: {app: stuck, %s: "true"}
    spec:
      containers: [{name: app, image: nginx, resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {cpu: 100m, memory: 64Mi}}}]
`, ns, controlplane.NeverReadyLabel)
}

// TestLeaderHandsOverAfterItsReconcile stops a leader while its reconcile
// waits for a Deployment that never becomes ready. The leader keeps its
// Lease until that reconcile reaches its own end (HealthCheckFailed, not
// a cancellation), and the standby leads only after it: no object is
// applied by both at once.
func TestLeaderHandsOverAfterItsReconcile(t *testing.T) {
	ns := env.Namespace(t)
	ensureHomeNamespace(t)
	srv := testenv.NewGitServer(t)
	srv.Commit(t, map[string]string{"stuck.yaml": stuckDeployment(ns)})
	cfgText := fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: %s, path: %s}}
syncs:
- name: handover-%s
  source: {url: %s, interval: 1h}
  clusters: [local]
  wait: {timeout: 6s}
leaderElection: {enabled: true, name: lease-%s, leaseDuration: 3s}
`, env.Contexts[0], env.Kubeconfig, ns, srv.URL, ns)
	client := env.Client(t, "")
	a := startElected(t, cfgText, false)
	testenv.Within(t, "a leads and applies the Deployment", 30*time.Second, func() bool {
		_, err := client.AppsV1().Deployments(ns).Get(context.Background(), "stuck", metav1.GetOptions{})
		return a.Leader() && err == nil
	})
	b := startElected(t, cfgText, false)
	time.Sleep(500 * time.Millisecond)
	a.stop() // a's reconcile is waiting for health
	var bLed time.Time
	testenv.Within(t, "b takes over", 20*time.Second, func() bool {
		if b.Leader() {
			bLed = time.Now()
			return true
		}
		return false
	})
	<-a.done
	st := a.Status()[0]
	if c := st.Condition("Ready"); c.Reason != ReasonHealthCheckFailed {
		t.Fatalf("a's reconcile ended with %+v, want its own HealthCheckFailed end", c)
	}
	if !bLed.After(st.LastAttempt) {
		t.Errorf("b led at %s, before a's reconcile ended at %s", bLed.Format(time.StampMilli), st.LastAttempt.Format(time.StampMilli))
	}
	if gap := bLed.Sub(st.LastAttempt); gap > 2*time.Second {
		t.Errorf("b led %s after a's reconcile ended: a did not release the Lease", gap)
	}
}

// frozenProxy forwards TCP to an address until it is frozen; then it
// drops every connection and accepts none.
type frozenProxy struct {
	ln     net.Listener
	mu     sync.Mutex
	conns  []net.Conn
	frozen bool
}

func newFrozenProxy(t *testing.T, to string) *frozenProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &frozenProxy{ln: ln}
	t.Cleanup(func() { ln.Close(); p.freeze() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.frozen {
				p.mu.Unlock()
				c.Close()
				continue
			}
			up, err := net.Dial("tcp", to)
			if err != nil {
				p.mu.Unlock()
				c.Close()
				continue
			}
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	return p
}

func (p *frozenProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestLeaderCutOffFromItsLeaseStops cuts a leader off from the API server
// that holds the Lease while it still reaches the cluster it applies to.
// It must stop leading, and cancel its reconcile, before the standby can
// take the Lease.
func TestLeaderCutOffFromItsLeaseStops(t *testing.T) {
	ns := env.Namespace(t)
	ensureHomeNamespace(t)
	raw, err := clientcmd.LoadFromFile(env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	ctxName := env.Contexts[0]
	server := raw.Clusters[raw.Contexts[ctxName].Cluster].Server
	u, err := url.Parse(server)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newFrozenProxy(t, u.Host)
	// The proxy listens on 127.0.0.1 like the API server, so its
	// certificate fits.
	viaProxy := raw.DeepCopy()
	viaProxy.Clusters[raw.Contexts[ctxName].Cluster].Server = "https://" + proxy.ln.Addr().String()
	proxied := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*viaProxy, proxied); err != nil {
		t.Fatal(err)
	}
	srv := testenv.NewGitServer(t)
	srv.Commit(t, map[string]string{"stuck.yaml": stuckDeployment(ns)})
	config := func(home string) string {
		return fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: home, kubeconfig: {context: %s, path: %s}}
- {name: local, kubeconfig: {context: %s, path: %s}}
syncs:
- name: cutoff-%s
  source: {url: %s, interval: 1h}
  clusters: [local]
  wait: {timeout: 5m}
leaderElection: {enabled: true, cluster: home, name: lease-%s, leaseDuration: 3s}
`, ctxName, home, ctxName, env.Kubeconfig, ns, srv.URL, ns)
	}
	client := env.Client(t, "")
	a := startElected(t, config(proxied), false)
	testenv.Within(t, "a leads and applies the Deployment", 30*time.Second, func() bool {
		_, err := client.AppsV1().Deployments(ns).Get(context.Background(), "stuck", metav1.GetOptions{})
		return a.Leader() && err == nil
	})
	b := startElected(t, config(env.Kubeconfig), false)
	time.Sleep(500 * time.Millisecond)
	proxy.freeze()
	frozen := time.Now()
	var aStopped, bLed time.Time
	testenv.Within(t, "a stops leading and b leads", 20*time.Second, func() bool {
		if aStopped.IsZero() && !a.Leader() {
			aStopped = time.Now()
		}
		if bLed.IsZero() && b.Leader() {
			bLed = time.Now()
		}
		return !aStopped.IsZero() && !bLed.IsZero()
	})
	t.Logf("a stopped leading %s after the freeze, b led %s after it", aStopped.Sub(frozen), bLed.Sub(frozen))
	if !aStopped.Before(bLed) {
		t.Errorf("b led before a stopped")
	}
	// a's reconcile, waiting up to 5 minutes for health, was cancelled.
	testenv.Within(t, "a's reconcile ends", 5*time.Second, func() bool { return !a.Status()[0].LastAttempt.IsZero() })
	if c := a.Status()[0].Condition("Ready"); c.Status != "False" || !strings.Contains(c.Message, "context canceled") {
		t.Errorf("a's reconcile was not cancelled: %+v", c)
	}
}

// TestStandbyForwardsToLeader: a push that reaches the standby (behind the
// same Service as the leader) is forwarded to the leader, which applies it;
// the standby's status API answers with the leader's status; a forwarded
// request that reaches a daemon that does not lead is refused with 503.
func TestStandbyForwardsToLeader(t *testing.T) {
	ns := env.Namespace(t)
	ensureHomeNamespace(t)
	cm := func(value string) string {
		return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: forwarded, namespace: %s}\ndata: {value: %q}\n", ns, value)
	}
	srv := testenv.NewGitServer(t)
	srv.Commit(t, map[string]string{"cm.yaml": cm("one")})
	secret := filepath.Join(t.TempDir(), "github")
	if err := os.WriteFile(secret, []byte("hook-secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgText := fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: %s, path: %s}}
syncs:
- name: forwarded-%s
  source: {url: %s, ref: {branch: main}, interval: 1h}
  clusters: [local]
webhooks:
  receivers: [{name: github, provider: github, secretFile: %s}]
leaderElection: {enabled: true, name: lease-%s, leaseDuration: 3s}
`, env.Contexts[0], env.Kubeconfig, ns, srv.URL, secret, ns)
	value := func() string { return configMapValue(t, ns, "forwarded") }
	a := startElected(t, cfgText, true)
	testenv.Within(t, "a leads and applies", 30*time.Second, func() bool { return a.Leader() && value() == "one" })
	b := startElected(t, cfgText, true)
	testenv.Within(t, "b knows the leader", 10*time.Second, func() bool { return b.LeaderURL() == a.url })

	srv.Commit(t, map[string]string{"cm.yaml": cm("two")})
	push := fmt.Sprintf(`{"ref":"refs/heads/main","repository":{"clone_url":%q}}`, srv.URL)
	req, _ := http.NewRequest(http.MethodPost, b.url+"/hooks/github", strings.NewReader(push))
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-Hub-Signature-256", "sha256="+sign("hook-secret", push))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("push to the standby: %s", resp.Status)
	}
	testenv.Within(t, "the leader applies the forwarded push", 15*time.Second, func() bool { return value() == "two" })
	if !b.Status()[0].LastAttempt.IsZero() {
		t.Error("the standby reconciled")
	}

	resp, err = http.Get(b.url + "/api/v1/syncs")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"leader":true`) || !strings.Contains(string(body), `"lastAppliedRevision"`) {
		t.Errorf("the standby's status API did not answer with the leader's status: %s", body)
	}

	req, _ = http.NewRequest(http.MethodGet, b.url+"/api/v1/syncs", nil)
	req.Header.Set(forwardedHeader, "http://elsewhere")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a request forwarded to the standby got %s, want 503", resp.Status)
	}
}
