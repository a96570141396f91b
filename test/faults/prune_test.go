package faults

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/daemon"
	"github.com/gitk8s/gitk8s/internal/testenv"
)

// TestFaultDaemonKilledDuringPrune SIGKILLs the daemon while it prunes 400
// of 900 ConfigMaps. The inventory stays consistent: its parent still
// lists the kind and namespace of every member, and each ConfigMap not yet
// deleted is still labelled as a member. A new daemon process finishes the
// prune, and no object that Git still holds is ever deleted.
func TestFaultDaemonKilledDuringPrune(t *testing.T) {
	ns := env.Namespace(t)
	c := client(t, "")
	keep, drop := numbered("keep", 500, "v1"), numbered("drop", 400, "v1")
	srv := testenv.NewGitServer(t)
	rev1 := srv.Commit(t, map[string]string{"keep.yaml": configMapsYAML(ns, keep), "drop.yaml": configMapsYAML(ns, drop)})
	name := "prune-" + ns
	spec := daemonSpec{CacheDir: t.TempDir(), Syncs: fmt.Sprintf(`- name: %s
  source: {url: %s, interval: 1s}
  clusters: [c1]
  prune: true
  requestConcurrency: 2
  policies: {skip: true}
`, name, srv.URL)}
	first := startDaemon(t, spec)
	first.waitSynced(t, name, rev1, 2*time.Minute)
	uids := map[string]types.UID{}
	for n, cm := range configMaps(t, c, ns) {
		uids[n] = cm.UID
	}

	requests := markRequests(t)
	rev2 := srv.Commit(t, map[string]string{"drop.yaml": ""})
	all := len(keep) + len(drop)
	poll(t, "the prune to start", time.Minute, 10*time.Millisecond, func() bool {
		n := countConfigMaps(c, ns, "")
		return n >= 0 && n < all
	})
	first.kill(t)
	killed := time.Now()
	live := configMaps(t, c, ns)
	left := 0
	for n := range drop {
		if _, ok := live[n]; ok {
			left++
		}
	}
	t.Logf("daemon SIGKILLed with %d of %d ConfigMaps to prune left", left, len(drop))
	if left == 0 || left == len(drop) {
		t.Fatalf("%d of %d left to prune at the kill: it was not in the middle of the prune", left, len(drop))
	}
	checkInventory(t, name, ns, drop, keep)

	second := startDaemon(t, spec)
	second.waitSynced(t, name, rev2, 2*time.Minute)
	converged := time.Since(killed)
	lost, extra := configMapsLost(t, c, ns, keep)
	if len(extra) > 0 {
		t.Errorf("not pruned: %v", extra)
	}
	for _, n := range requests.deleted(t, "configmaps", ns) {
		if _, ok := keep[n]; ok {
			t.Errorf("gitk8s deleted %s, which Git holds", n)
		}
	}
	for n, cm := range configMaps(t, c, ns) {
		if uids[n] != cm.UID {
			t.Errorf("ConfigMap %s was re-created", n)
			lost++
		}
	}
	checkInventory(t, name, ns, nil, keep)
	figures(t, "daemon SIGKILLed mid-prune of 400 of 900 objects", converged, requests.sent(t), lost)
}

// checkInventory checks a sync's inventory in the first cluster: its
// parent lists ConfigMaps in ns, every ConfigMap in ns that keep or
// pending name is labelled as its member, and no other is.
func checkInventory(t *testing.T, syncName, ns string, pending, keep map[string]string) {
	t.Helper()
	c := client(t, "")
	ctx := context.Background()
	parentName := "gitk8s-" + syncName
	parent, err := c.CoreV1().Secrets(daemon.HomeNamespace).Get(ctx, parentName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("inventory parent: %v", err)
	}
	id := apply.ApplySetID(parentName, daemon.HomeNamespace)
	if got := parent.Labels[apply.LabelApplySetID]; got != id {
		t.Errorf("inventory parent label %s=%q, want %q", apply.LabelApplySetID, got, id)
	}
	if kinds := parent.Annotations[apply.AnnotationContainsGroupKinds]; !strings.Contains(","+kinds+",", ",ConfigMap,") {
		t.Errorf("inventory parent lists kinds %q, without ConfigMap", kinds)
	}
	if nss := parent.Annotations[apply.AnnotationAdditionalNamespaces]; !strings.Contains(","+nss+",", ","+ns+",") {
		t.Errorf("inventory parent lists namespaces %q, without %s", nss, ns)
	}
	list, err := c.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	members := 0
	for _, cm := range list.Items {
		_, inGit := keep[cm.Name]
		_, isPending := pending[cm.Name]
		labelled := cm.Labels[apply.LabelPartOf] == id
		switch {
		case (inGit || isPending) && !labelled:
			t.Errorf("ConfigMap %s is not labelled as a member of the inventory", cm.Name)
		case !inGit && !isPending && labelled:
			t.Errorf("ConfigMap %s is a member of the inventory, but neither in Git nor waiting to be pruned", cm.Name)
		}
		if labelled {
			members++
		}
	}
	t.Logf("inventory %s/%s: kinds %s, %d members", daemon.HomeNamespace, parentName, parent.Annotations[apply.AnnotationContainsGroupKinds], members)
}
