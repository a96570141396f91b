package faults

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gitk8s/gitk8s/internal/testenv"
)

// TestFaultEtcdKilledDuringSync kills etcd (SIGKILL), which all three API
// servers store in, while the daemon changes 300 ConfigMaps and creates
// 300 more, and starts it again 5 s later on its data: the daemon retries
// until every object holds the new revision, none lost, and every API
// server is ready again.
func TestFaultEtcdKilledDuringSync(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts etcd (about 40 s)")
	}
	ns := env.Namespace(t)
	c := client(t, "")
	first := numbered("cm", 300, "v1")
	srv := testenv.NewGitServer(t)
	rev1 := srv.Commit(t, map[string]string{"configmaps.yaml": configMapsYAML(ns, first)})
	name := "etcd-" + ns
	d := startDaemon(t, daemonSpec{Syncs: fmt.Sprintf(`- name: %s
  source: {url: %s, interval: 2s}
  clusters: [c1]
  prune: true
  requestConcurrency: 4
  policies: {skip: true}
`, name, srv.URL)})
	d.waitSynced(t, name, rev1, 2*time.Minute)

	want := merged(numbered("cm", 300, "v2"), numbered("new", 300, "v2"))
	requests := markRequests(t)
	before := d.reconcileCounts(t)
	rev2 := srv.Commit(t, map[string]string{"configmaps.yaml": configMapsYAML(ns, want)})
	var atKill int
	poll(t, "the sync to start writing the new revision", time.Minute, 20*time.Millisecond, func() bool {
		atKill = countConfigMaps(c, ns, "v2")
		return atKill >= 30
	})
	if err := env.ControlPlane.KillEtcd(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	st, _ := d.sync(name)
	if err := env.ControlPlane.StartEtcd(context.Background()); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	t.Logf("etcd killed with %d of 600 objects at the new revision seen; during the outage the daemon said %s (%s): %.200s",
		atKill, st.Condition("Reconciling").Message, st.Condition("Ready").Reason, st.LastError)

	d.waitSynced(t, name, rev2, 2*time.Minute)
	converged := time.Since(back)
	t.Logf("reconciles since the new revision: %s", d.reconcileCounts(t).since(before))
	lost, extra := configMapsLost(t, c, ns, want)
	if len(extra) > 0 {
		t.Errorf("ConfigMaps that Git does not hold: %v", extra)
	}
	figures(t, "etcd killed mid-sync", converged, requests.sent(t), lost)
	// The other tests need every cluster.
	waitAPIServersReady(t, time.Minute)
}
