package faults

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/gitk8s/gitk8s/internal/daemon"
	"github.com/gitk8s/gitk8s/internal/testenv"
)

// federatedYAML federates a namespace, a ConfigMap holding value and a
// Deployment of total replicas over the three clusters, equally weighted.
func federatedYAML(ns, value string, total int) string {
	return fmt.Sprintf(`apiVersion: types.kubefed.io/v1beta1
kind: FederatedNamespace
metadata: {name: %[1]s, namespace: %[1]s}
spec: {placement: {clusterSelector: {}}}
---
apiVersion: types.kubefed.io/v1beta1
kind: FederatedConfigMap
metadata: {name: settings, namespace: %[1]s}
spec:
  template: {data: {value: %[2]q}}
  placement: {clusterSelector: {}}
---
apiVersion: types.kubefed.io/v1beta1
kind: FederatedDeployment
metadata: {name: web, namespace: %[1]s}
spec:
  template:
    spec:
      replicas: 1
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec: {containers: [{name: web, image: nginx}]}
  placement: {clusterSelector: {}}
---
apiVersion: scheduling.kubefed.io/v1alpha1
kind: ReplicaSchedulingPreference
metadata: {name: web, namespace: %[1]s}
spec:
  targetKind: FederatedDeployment
  totalReplicas: %[3]d
  rebalance: true
  clusters: {c1: {weight: 1}, c2: {weight: 1}, c3: {weight: 1}}
`, ns, value, total)
}

// federatedLost counts, in one cluster, the federated objects that are
// missing or not as Git says: the namespace, the ConfigMap's value, the
// Deployment's replicas (as planned for that cluster).
func federatedLost(t *testing.T, kubeContext, ns, value string, replicas int32) int {
	t.Helper()
	c := client(t, kubeContext)
	ctx := context.Background()
	lost := 0
	if _, err := c.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		lost++
	}
	if cm, err := c.CoreV1().ConfigMaps(ns).Get(ctx, "settings", metav1.GetOptions{}); err != nil || cm.Data["value"] != value {
		lost++
	}
	if dep, err := c.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{}); err != nil || dep.Spec.Replicas == nil || *dep.Spec.Replicas != replicas {
		lost++
	}
	return lost
}

// TestFaultClusterUnreachableDuringFederatedSync cuts the network between
// the daemon and the third of three clusters for a minute while a
// federated sync changes; the cluster itself goes on working, as in a
// partition. The two that answer get the new revision and all the replicas
// within seconds and keep them for the rest of the minute, reconcile after
// reconcile, while the third keeps the old revision untouched; once it is
// reachable again, the next reconcile gives it the revision and its share
// of the replicas again.
func TestFaultClusterUnreachableDuringFederatedSync(t *testing.T) {
	ns := env.Namespace(t)
	for _, ctx := range env.Contexts[1:] {
		c := client(t, ctx)
		t.Cleanup(func() {
			err := c.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("delete namespace %s: %v", ns, err)
			}
		})
	}
	// The daemon reaches c3 through a proxy the test can cut.
	away := env.Contexts[2]
	raw, err := clientcmd.LoadFromFile(env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	server, err := url.Parse(raw.Clusters[raw.Contexts[away].Cluster].Server)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewProxy(t, server.Host)
	raw.Clusters[raw.Contexts[away].Cluster].Server = "https://" + proxy.Addr
	viaProxy := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*raw, viaProxy); err != nil {
		t.Fatal(err)
	}

	srv := testenv.NewGitServer(t)
	rev1 := srv.Commit(t, map[string]string{"federated.yaml": federatedYAML(ns, "v1", 6)})
	name := "federated-" + ns
	d := startDaemon(t, daemonSpec{Kubeconfigs: map[string]string{"c3": viaProxy}, Syncs: fmt.Sprintf(`- name: %s
  source: {url: %s, interval: 2s}
  clusters: [c1, c2, c3]
  prune: true
  wait: {timeout: 1m}
  policies: {skip: true}
`, name, srv.URL)})
	d.waitSynced(t, name, rev1, 2*time.Minute)

	const outage = time.Minute
	requests := markRequests(t)
	proxy.Cut()
	cut := time.Now()
	rev2 := srv.Commit(t, map[string]string{"federated.yaml": federatedYAML(ns, "v2", 9)})
	committed := time.Now()
	var st daemon.SyncStatus
	poll(t, "the two clusters that answer to get the new revision", time.Minute, 100*time.Millisecond, func() bool {
		var ok bool
		st, ok = d.sync(name)
		return ok && st.LastAttemptedRevision == rev2 && st.Condition("Ready").Reason == daemon.ReasonClusterUnavailable &&
			federatedLost(t, env.Contexts[0], ns, "v2", replicasOf(st, "c1")) == 0 &&
			federatedLost(t, env.Contexts[1], ns, "v2", replicasOf(st, "c2")) == 0
	})
	partial := time.Since(committed)
	if r1, r2, r3 := replicasOf(st, "c1"), replicasOf(st, "c2"), replicasOf(st, "c3"); r1+r2 != 9 || r3 != 0 {
		t.Errorf("replicas during the outage: c1 %d, c2 %d, c3 %d; want all 9 on c1 and c2", r1, r2, r3)
	}
	if lost := federatedLost(t, away, ns, "v1", 2); lost != 0 {
		t.Errorf("c3 lost %d objects while it could not be reached", lost)
	}
	// For the rest of the outage every reconcile must leave things as they
	// are: c3 skipped, c1 and c2 at the new revision with all the replicas.
	attempts := map[time.Time]bool{st.LastAttempt: true}
	var broken string
	for time.Since(cut) < outage && broken == "" {
		time.Sleep(time.Second)
		st, _ = d.sync(name)
		attempts[st.LastAttempt] = true
		switch {
		case st.Condition("Ready").Reason != daemon.ReasonClusterUnavailable:
			broken = fmt.Sprintf("the daemon said %s: %.160s", st.Condition("Ready").Reason, st.LastError)
		case replicasOf(st, "c1")+replicasOf(st, "c2") != 9 || replicasOf(st, "c3") != 0:
			broken = fmt.Sprintf("replicas c1 %d, c2 %d, c3 %d", replicasOf(st, "c1"), replicasOf(st, "c2"), replicasOf(st, "c3"))
		case federatedLost(t, env.Contexts[0], ns, "v2", replicasOf(st, "c1")) != 0:
			broken = "c1 lost the new revision"
		case federatedLost(t, env.Contexts[1], ns, "v2", replicasOf(st, "c2")) != 0:
			broken = "c2 lost the new revision"
		case federatedLost(t, away, ns, "v1", 2) != 0:
			broken = "c3 was changed while it could not be reached"
		}
	}
	if broken != "" {
		t.Errorf("%s after the cut: %s", time.Since(cut).Round(100*time.Millisecond), broken)
	}
	t.Logf("with c3 cut off, c1 and c2 held the new revision and all 9 replicas %s after the commit, and kept them through %d reconciles; after %s the daemon said %s: %.160s",
		partial.Round(100*time.Millisecond), len(attempts), outage, st.Condition("Ready").Reason, st.LastError)
	proxy.Restore(t)
	back := time.Now()

	d.waitSynced(t, name, rev2, 2*time.Minute)
	converged := time.Since(back)
	st, _ = d.sync(name)
	lost := 0
	for i, ctx := range env.Contexts {
		lost += federatedLost(t, ctx, ns, "v2", replicasOf(st, fmt.Sprintf("c%d", i+1)))
		if r := replicasOf(st, fmt.Sprintf("c%d", i+1)); r != 3 {
			t.Errorf("after the outage c%d runs %d replicas, want 3", i+1, r)
		}
	}
	figures(t, "one of three clusters unreachable for a minute during a federated sync", converged, requests.sent(t), lost)
}

// replicasOf is the replicas the daemon planned for a cluster's share of
// the federated Deployment.
func replicasOf(st daemon.SyncStatus, cluster string) int32 {
	for _, f := range st.Federated {
		if strings.HasPrefix(f.Object, "FederatedDeployment/") {
			if n, ok := f.Replicas[cluster]; ok {
				return int32(n)
			}
			return 0
		}
	}
	return -1
}
