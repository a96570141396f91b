package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestLeaderElection runs two daemons on one cluster: one reconciles, the
// other stands by; when the leader stops, the other takes over within the
// lease and applies what Git says since.
func TestLeaderElection(t *testing.T) {
	ns := env.Namespace(t)
	client := env.Client(t, "")
	if _, err := client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "gitk8s-system"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	cm := func(value string) string {
		return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: elected, namespace: %s}\ndata: {value: %q}\n", ns, value)
	}
	srv := newGitServer(t)
	srv.commit(t, map[string]string{"cm.yaml": cm("one")})
	cfgText := fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: %s, path: %s}}
syncs:
- name: elected-%s
  source: {url: %s, interval: 1s}
  clusters: [local]
leaderElection: {enabled: true, name: lease-%s, leaseDuration: 3s}
`, env.Contexts[0], env.Kubeconfig, ns, srv.url, ns)
	start := func() (*Daemon, context.CancelFunc, chan struct{}) {
		cfg, err := LoadConfig(writeConfig(t, cfgText))
		if err != nil {
			t.Fatal(err)
		}
		d, err := New(cfg, Options{GitCacheDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = d.RunElected(ctx); close(done) }()
		return d, cancel, done
	}
	value := func() string {
		c, err := client.CoreV1().ConfigMaps(ns).Get(context.Background(), "elected", metav1.GetOptions{})
		if err != nil {
			return ""
		}
		return c.Data["value"]
	}
	wait := func(what string, ok func() bool, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not happen within %s", what, within)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	a, stopA, doneA := start()
	wait("a leads and applies", func() bool { return a.Leader() && value() == "one" }, 30*time.Second)
	b, stopB, doneB := start()
	defer func() { stopB(); <-doneB }()
	time.Sleep(4 * time.Second) // longer than the lease: b must still stand by
	if b.Leader() {
		t.Fatal("two leaders")
	}
	if st := b.Status()[0]; !st.LastAttempt.IsZero() {
		t.Errorf("the standby reconciled: %+v", st)
	}
	// Both are ready; each says what it does.
	for d, want := range map[*Daemon]string{a: "ok: leader\n", b: "ok: standby\n"} {
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

	stopA()
	<-doneA
	stopped := time.Now()
	srv.commit(t, map[string]string{"cm.yaml": cm("two")})
	wait("b takes over and applies", func() bool { return b.Leader() && value() == "two" }, 15*time.Second)
	if took := time.Since(stopped); took > 10*time.Second {
		t.Errorf("takeover took %s", took)
	}
	if a.Leader() {
		t.Error("the stopped daemon still says it leads")
	}
}
