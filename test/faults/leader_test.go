package faults

import (
	"fmt"
	"testing"
	"time"

	"github.com/gitk8s/gitk8s/internal/testenv"
)

// TestFaultLeaderKilledDuringSync runs two daemons with leader election
// and SIGKILLs the leader while it applies 800 ConfigMaps. It cannot
// release its Lease; the standby takes the Lease once it lapses and
// finishes the sync, none lost.
func TestFaultLeaderKilledDuringSync(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a Lease to lapse (about 30 s)")
	}
	ns := env.Namespace(t)
	c := client(t, "")
	srv := testenv.NewGitServer(t)
	rev1 := srv.Commit(t, map[string]string{"configmaps.yaml": configMapsYAML(ns, numbered("cm", 1, "v1"))})
	name := "leader-" + ns
	const lease = 4 * time.Second
	spec := daemonSpec{
		Syncs: fmt.Sprintf(`- name: %s
  source: {url: %s, interval: 1s}
  clusters: [c1]
  prune: true
  requestConcurrency: 2
  policies: {skip: true}
`, name, srv.URL),
		LeaderElection: fmt.Sprintf("{enabled: true, name: lease-%s, leaseDuration: %s}", ns, lease),
	}
	a := startDaemon(t, spec)
	poll(t, "the first daemon to lead", time.Minute, 100*time.Millisecond, func() bool { return a.role() == "leader" })
	a.waitSynced(t, name, rev1, time.Minute)
	b := startDaemon(t, spec)
	poll(t, "the second daemon to stand by", time.Minute, 100*time.Millisecond, func() bool { return b.role() == "standby" })

	want := numbered("cm", 800, "v2")
	requests := markRequests(t)
	rev2 := srv.Commit(t, map[string]string{"configmaps.yaml": configMapsYAML(ns, want)})
	var atKill int
	poll(t, "the leader to start writing", time.Minute, 20*time.Millisecond, func() bool {
		atKill = countConfigMaps(c, ns, "v2")
		return atKill >= 50
	})
	a.kill(t)
	killed := time.Now()
	if n := countConfigMaps(c, ns, "v2"); n >= len(want) {
		t.Fatalf("the leader had written all %d ConfigMaps when it was killed: the sync was not interrupted", n)
	}
	var took time.Duration
	poll(t, "the standby to lead", time.Minute, 50*time.Millisecond, func() bool {
		took = time.Since(killed)
		return b.role() == "leader"
	})
	if took < lease/2 {
		t.Errorf("the standby led %s after the kill, before the killed leader's Lease (%s) could lapse", took, lease)
	}
	b.waitSynced(t, name, rev2, 2*time.Minute)
	converged := time.Since(killed)
	t.Logf("leader killed with %d of %d ConfigMaps written seen; the standby led %s later, after %d reconciles of its own",
		atKill, len(want), took.Round(100*time.Millisecond), b.reconciles(t, ""))
	lost, extra := configMapsLost(t, c, ns, want)
	if len(extra) > 0 {
		t.Errorf("ConfigMaps that Git does not hold: %v", extra)
	}
	figures(t, "leader SIGKILLed mid-sync of 800 objects, standby finishes", converged, requests.sent(t), lost)
}
