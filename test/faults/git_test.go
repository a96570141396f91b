package faults

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/gitk8s/gitk8s/internal/daemon"
	"github.com/gitk8s/gitk8s/internal/testenv"
)

// TestFaultGitDownThenForcePushed takes the Git server away for several
// poll intervals, while the branch is rewritten behind it (reset to an
// older commit and a new commit on top, force-pushed). During the outage
// the daemon changes and prunes nothing; when the server is back it
// applies the new head, prunes exactly the objects that head no longer
// holds (one from the dropped commit, one the new commit removed), and
// leaves every other object in place, not re-created.
func TestFaultGitDownThenForcePushed(t *testing.T) {
	ns := env.Namespace(t)
	c := client(t, "")
	srv := testenv.NewGitServer(t)
	base := merged(numbered("keep", 8, "a"), map[string]string{"removed-by-new-head": "a"})
	revA := srv.Commit(t, map[string]string{"configmaps.yaml": configMapsYAML(ns, base)})
	atB := merged(base, map[string]string{"keep-0000": "b", "only-in-dropped-commit": "b"})
	revB := srv.Commit(t, map[string]string{"configmaps.yaml": configMapsYAML(ns, atB)})
	name := "git-" + ns
	const interval = time.Second
	d := startDaemon(t, daemonSpec{Syncs: fmt.Sprintf(`- name: %s
  source: {url: %s, ref: {branch: main}, interval: %s}
  clusters: [c1]
  prune: true
  policies: {skip: true}
`, name, srv.URL, interval)})
	d.waitSynced(t, name, revB, time.Minute)
	uids := map[string]types.UID{}
	for n, cm := range configMaps(t, c, ns) {
		uids[n] = cm.UID
	}

	requests := markRequests(t)
	srv.Down()
	down := time.Now()
	// The branch is rewritten while the server is away: B is dropped,
	// and C, on top of A, removes one object, changes one and adds one.
	testenv.Git(t, srv.Work, "reset", "-q", "--hard", revA)
	atC := merged(numbered("keep", 8, "a"), map[string]string{"keep-0001": "c", "added-by-new-head": "c"})
	revC := srv.Commit(t, map[string]string{"configmaps.yaml": configMapsYAML(ns, atC)})
	poll(t, "the daemon to see the source unavailable", 30*time.Second, 100*time.Millisecond, func() bool {
		st, ok := d.sync(name)
		return ok && st.Condition("Ready").Reason == daemon.ReasonSourceUnavailable
	})
	time.Sleep(5*interval - time.Since(down))
	st, _ := d.sync(name)
	if st.Condition("Ready").Reason != daemon.ReasonSourceUnavailable || st.LastAppliedRevision != revB {
		t.Errorf("during the outage: reason %s, applied %.12s; want SourceUnavailable and still %.12s", st.Condition("Ready").Reason, st.LastAppliedRevision, revB)
	}
	if lost, extra := configMapsLost(t, c, ns, atB); lost > 0 || len(extra) > 0 {
		t.Errorf("during the outage the objects changed: %d lost, extra %v", lost, extra)
	}
	failedDuringOutage := d.reconciles(t, "failed")
	srv.Take()
	srv.Up(t)
	back := time.Now()
	t.Logf("Git down %s; %d failed reconciles meanwhile", back.Sub(down).Round(100*time.Millisecond), failedDuringOutage)

	d.waitSynced(t, name, revC, time.Minute)
	converged := time.Since(back)
	lost, extra := configMapsLost(t, c, ns, atC)
	if len(extra) > 0 {
		t.Errorf("objects the new head removed are still there: %v", extra)
	}
	wantDeleted := []string{"only-in-dropped-commit", "removed-by-new-head"}
	if got := requests.deleted(t, "configmaps", ns); !slices.Equal(got, wantDeleted) {
		t.Errorf("gitk8s deleted %v, want exactly %v", got, wantDeleted)
	}
	for n, cm := range configMaps(t, c, ns) {
		if old, ok := uids[n]; ok && old != cm.UID {
			t.Errorf("ConfigMap %s was re-created", n)
		}
	}
	git := srv.Take()
	t.Logf("Git requests after the server came back: %d (%s)", len(git), strings.Join(git[:min(len(git), 6)], ", "))
	figures(t, "Git server down for 5 intervals, back with a force-pushed branch", converged, requests.sent(t), lost)
}
