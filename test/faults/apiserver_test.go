package faults

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gitk8s/gitk8s/internal/testenv"
)

// TestFaultAPIServerKilledDuringApply kills the API server (SIGKILL) while
// the daemon applies 1,000 ConfigMaps, and starts it again 5 s later: the
// reconcile that was cut off fails as ClusterUnavailable, and a later one
// applies every object, none lost.
func TestFaultAPIServerKilledDuringApply(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts an API server (about 40 s)")
	}
	ns := env.Namespace(t)
	c := client(t, "")
	want := numbered("cm", 1000, "v1")
	srv := testenv.NewGitServer(t)
	rev := srv.Commit(t, map[string]string{"configmaps.yaml": configMapsYAML(ns, want)})
	name := "apiserver-" + ns

	requests := markRequests(t)
	d := startDaemon(t, daemonSpec{Syncs: fmt.Sprintf(`- name: %s
  source: {url: %s, interval: 2s}
  clusters: [c1]
  prune: true
  requestConcurrency: 4
  policies: {skip: true}
`, name, srv.URL)})
	var atKill int
	poll(t, "the apply to start writing", 2*time.Minute, 20*time.Millisecond, func() bool {
		atKill = countConfigMaps(c, ns, "")
		return atKill >= 50
	})
	if err := env.ControlPlane.KillAPIServer(env.Contexts[0]); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	time.Sleep(5 * time.Second)
	st, _ := d.sync(name)
	if err := env.ControlPlane.StartAPIServer(context.Background(), env.Contexts[0]); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	afterRestart := countConfigMaps(c, ns, "")
	t.Logf("killed with %d of 1,000 ConfigMaps written seen; %d after the restart (%s after the kill); the daemon said %s: %.200s",
		atKill, afterRestart, back.Sub(killed).Round(100*time.Millisecond), st.Condition("Ready").Reason, st.LastError)
	if afterRestart >= len(want) {
		t.Fatalf("the apply had written all %d ConfigMaps before the kill: it was not interrupted", len(want))
	}

	d.waitSynced(t, name, rev, 2*time.Minute)
	converged := time.Since(back)
	t.Logf("reconciles: %s", d.reconcileCounts(t))
	lost, extra := configMapsLost(t, c, ns, want)
	if len(extra) > 0 {
		t.Errorf("ConfigMaps that Git does not hold: %v", extra)
	}
	figures(t, "kube-apiserver killed mid-apply of 1,000 objects", converged, requests.sent(t), lost)
}
