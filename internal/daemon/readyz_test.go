package daemon

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gitk8s/gitk8s/internal/testenv"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
)

// TestReadyz: /readyz is 503 until the daemon runs, 200 "ok: leader" once
// it runs and the drift watch its apply started has synced, and 503 naming
// the watch while a watch cannot list its objects.
func TestReadyz(t *testing.T) {
	ns := env.Namespace(t)
	srv := testenv.NewGitServer(t)
	srv.Commit(t, map[string]string{"cm.yaml": fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ready, namespace: %s}\ndata: {k: v}\n", ns)})
	d := newDaemon(t, fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: %s, path: %s}}
syncs:
- name: ready-%s
  source: {url: %s, ref: {branch: main}, interval: 1h}
  clusters: [local]
`, env.Contexts[0], env.Kubeconfig, ns, srv.URL))
	h, err := d.Handler()
	if err != nil {
		t.Fatal(err)
	}
	readyz := func() (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := readyz(); code != http.StatusServiceUnavailable || !strings.Contains(body, "not started") {
		t.Errorf("before Run: %d %q", code, body)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.RunElected(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(30 * time.Second)
	for d.Status()[0].Condition("Ready").Status != "True" {
		if time.Now().After(deadline) {
			t.Fatalf("the sync did not apply: %+v", d.Status())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The apply started a drift watch; ready once it has listed.
	for {
		code, body := readyz()
		if code == http.StatusOK {
			if body != "ok: leader\n" {
				t.Errorf("ready body %q", body)
			}
			break
		}
		if !strings.Contains(body, "drift watches not synced: ready-"+ns+"/local: configmaps") {
			t.Errorf("not ready for another reason: %d %q", code, body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %d %q", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.driftMu.Lock()
	watches := len(d.drifts)
	d.driftMu.Unlock()
	if watches != 1 || len(d.driftUnsynced()) != 0 {
		t.Errorf("ready with %d drift watches, unsynced: %v", watches, d.driftUnsynced())
	}

	// A watch whose cluster stopped answering before it could list.
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	unreachable := *d.targets["local"]
	unreachable.Metadata = metadata.NewForConfigOrDie(&rest.Config{Host: gone.URL})
	d.watchDrift(ctx, "other", &unreachable, "", "applyset-x-v1", []schema.GroupVersionResource{{Version: "v1", Resource: "configmaps"}})
	time.Sleep(time.Second)
	if code, body := readyz(); code != http.StatusServiceUnavailable || !strings.Contains(body, "drift watches not synced: other/local: configmaps") {
		t.Errorf("with a watch that cannot list: %d %q", code, body)
	}
	// It holds readiness back for watchSyncGrace only: a cluster that stays
	// away must not keep the leader unready for good.
	defer func(grace time.Duration) { watchSyncGrace = grace }(watchSyncGrace)
	watchSyncGrace = 2 * time.Second
	time.Sleep(watchSyncGrace)
	if code, body := readyz(); code != http.StatusOK {
		t.Errorf("a watch that could not list for longer than the grace still holds readiness: %d %q", code, body)
	}
}
