package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gitk8s/gitk8s/internal/reconcile"
	"github.com/gitk8s/gitk8s/internal/testenv"
)

// TestSyncSettingsReachTheEngine sets, in a daemon sync, the render,
// namespace and inventory settings the CLI has flags for: the jsonnet
// entry and its top-level argument are evaluated, objects without a
// namespace go to the sync's, and the inventory has the configured name.
func TestSyncSettingsReachTheEngine(t *testing.T) {
	ns := env.Namespace(t)
	srv := testenv.NewGitServer(t)
	srv.Commit(t, map[string]string{
		"app/main.jsonnet":  "function(value) { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'from-jsonnet' }, data: { value: value } }\n",
		"app/other.jsonnet": "error 'only the entry is evaluated'\n",
	})
	d := newDaemon(t, fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: %s, path: %s}}
syncs:
- name: settings-%[3]s
  source:
    url: %[4]s
    ref: {branch: main}
    path: app
    jsonnet: {entry: main.jsonnet, tlas: {value: from-the-config}}
  clusters: [local]
  namespace: %[3]s
  inventory: {name: inventory-%[3]s}
  policies: {skip: true}
`, env.Contexts[0], env.Kubeconfig, ns, srv.URL))
	if err := d.Reconcile(context.Background(), d.cfg.Syncs[0]); err != nil {
		t.Fatal(err)
	}
	if got := configMapValue(t, ns, "from-jsonnet"); got != "from-the-config" {
		t.Errorf("value %q, want the configured top-level argument", got)
	}
	if _, err := env.Client(t, "").CoreV1().Secrets("gitk8s-system").Get(context.Background(), "inventory-"+ns, metav1.GetOptions{}); err != nil {
		t.Errorf("the configured inventory: %v", err)
	}
}

// TestFederatedReplicasSkipAnOfflineCluster federates a Deployment over a
// cluster that answers and one that does not: the daemon gives every
// replica to the one that answers, and its status shows the placement.
func TestFederatedReplicasSkipAnOfflineCluster(t *testing.T) {
	ns := env.Namespace(t)
	offline := filepath.Join(t.TempDir(), "offline.kubeconfig")
	if err := os.WriteFile(offline, []byte(`apiVersion: v1
kind: Config
clusters: [{name: offline, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: offline, context: {cluster: offline, user: u}}]
current-context: offline
`), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := testenv.NewGitServer(t)
	srv.Commit(t, map[string]string{"fed.yaml": fmt.Sprintf(`apiVersion: types.kubefed.io/v1beta1
kind: FederatedNamespace
metadata: {name: %[1]s, namespace: %[1]s}
spec: {placement: {clusters: [{name: local}, {name: offline}]}}
---
apiVersion: types.kubefed.io/v1beta1
kind: FederatedDeployment
metadata: {name: web, namespace: %[1]s}
spec:
  template:
    spec:
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec: {containers: [{name: web, image: nginx}]}
  placement: {clusters: [{name: local}, {name: offline}]}
---
apiVersion: scheduling.kubefed.io/v1alpha1
kind: ReplicaSchedulingPreference
metadata: {name: web, namespace: %[1]s}
spec:
  targetKind: FederatedDeployment
  totalReplicas: 4
  clusters: {local: {weight: 1}, offline: {weight: 1}}
`, ns)})
	d := newDaemon(t, fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: %s, path: %s}}
- {name: offline, kubeconfig: {context: offline, path: %s}}
leaderElection: {cluster: local}
syncs:
- name: fed-%s
  source: {url: %s, ref: {branch: main}}
  clusters: [local, offline]
  policies: {skip: true}
`, env.Contexts[0], env.Kubeconfig, offline, ns, srv.URL))
	_ = d.Reconcile(context.Background(), d.cfg.Syncs[0])
	st := statusNamed(d, "fed-"+ns)
	if reason := st.Condition("Ready").Reason; reason != string(reconcile.ClusterUnavailable) {
		t.Errorf("reason %s (%s), want ClusterUnavailable for the offline cluster", reason, st.LastError)
	}
	dep, err := env.Client(t, "").AppsV1().Deployments(ns).Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 4 {
		t.Errorf("the cluster that answers runs %v replicas, want all 4", dep.Spec.Replicas)
	}
	var web *reconcile.Federated
	for i, f := range st.Federated {
		if f.Object == "FederatedDeployment/"+ns+"/web" {
			web = &st.Federated[i]
		}
	}
	if web == nil || web.Replicas["local"] != 4 || web.Replicas["offline"] != 0 {
		t.Errorf("status placements %+v, want 4 replicas on local and none on offline", st.Federated)
	}
}

// TestSyncCannotWriteTheDaemonsObjects pushes a repository that tries to
// overwrite another sync's Git credentials, another sync's inventory and
// the daemon's suspensions, and to plant an ApplySet parent: the sync is
// refused before anything is written, naming each object, and the
// objects keep what they held.
func TestSyncCannotWriteTheDaemonsObjects(t *testing.T) {
	ns := env.Namespace(t)
	ensureHomeNamespace(t)
	ctx := context.Background()
	client := env.Client(t, "")
	creds := "creds-" + ns
	if _, err := client.CoreV1().Secrets(HomeNamespace).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: creds},
		StringData: map[string]string{"password": "kept"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.CoreV1().Secrets(HomeNamespace).Delete(ctx, creds, metav1.DeleteOptions{}) })
	srv := testenv.NewGitServer(t)
	srv.Commit(t, map[string]string{
		"creds.yaml":     fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: %s, namespace: %s}\nstringData: {password: stolen}\n", creds, HomeNamespace),
		"inventory.yaml": fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: gitk8s-other-%s, namespace: %s}\n", ns, HomeNamespace),
		"suspended.yaml": fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s, namespace: %s}\n", SuspendedConfigMap, HomeNamespace),
		"keys.yaml":      fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: keys-%s, namespace: %s}\n", ns, HomeNamespace),
		"age.yaml":       fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: age-%s, namespace: %s}\n", ns, HomeNamespace),
		"charts.yaml":    fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: charts-%s, namespace: %s}\n", ns, HomeNamespace),
		"config.yaml":    fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: gitk8s-config, namespace: %s}\n", HomeNamespace),
		"parent.yaml":    fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: parent, namespace: %s, labels: {applyset.kubernetes.io/id: applyset-x-v1}}\n", ns),
		"ok.yaml":        fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok, namespace: %s}\ndata: {value: v}\n", ns),
	})
	d := newDaemon(t, fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: %s, path: %s}}
syncs:
- name: hostile-%[3]s
  source: {url: %[4]s, ref: {branch: main}}
  clusters: [local]
  policies: {skip: true}
- name: other-%[3]s
  source:
    url: %[4]s
    ref: {branch: main}
    auth: {secretRef: {name: %[5]s}}
    decryption: {provider: sops, secretRef: {name: age-%[3]s}}
    chartRepositories: [{url: "https://charts.example/", auth: {secretRef: {name: charts-%[3]s}}}]
  clusters: [local]
- name: signed-%[3]s
  source: {url: "oci://registry.example/app", ref: {tag: v1}, verify: {provider: cosign, secretRef: {name: keys-%[3]s}}}
  clusters: [local]
`, env.Contexts[0], env.Kubeconfig, ns, srv.URL, creds))
	err := d.Reconcile(ctx, d.cfg.Syncs[0])
	st := statusNamed(d, "hostile-"+ns)
	if err == nil || st.Condition("Ready").Reason != string(reconcile.PlanFailed) {
		t.Fatalf("reason %s (%v), want PlanFailed", st.Condition("Ready").Reason, err)
	}
	for _, want := range []string{"Secret/" + HomeNamespace + "/" + creds + ": the Git credentials of sync other-" + ns,
		"the inventory of sync other-" + ns, "the daemon's suspensions", "ConfigMap/" + ns + "/parent: labelled applyset.kubernetes.io/id",
		"Secret/" + HomeNamespace + "/keys-" + ns + ": the verification keys of sync signed-" + ns,
		"Secret/" + HomeNamespace + "/age-" + ns + ": the decryption keys of sync other-" + ns,
		"Secret/" + HomeNamespace + "/charts-" + ns + ": the chart repository credentials of sync other-" + ns,
		"ConfigMap/" + HomeNamespace + "/gitk8s-config: in " + HomeNamespace + ", the daemon's own namespace"} {
		if !strings.Contains(st.LastError, want) {
			t.Errorf("the error does not say %q:\n%s", want, st.LastError)
		}
	}
	got, err := client.CoreV1().Secrets(HomeNamespace).Get(ctx, creds, metav1.GetOptions{})
	if err != nil || string(got.Data["password"]) != "kept" {
		t.Errorf("the credentials were overwritten: %v", err)
	}
	if _, err := client.CoreV1().ConfigMaps(ns).Get(ctx, "ok", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a refused revision wrote a ConfigMap (%v)", err)
	}
}

// TestSyncNeverAdoptsAnotherSyncsInventory configures a sync whose
// source's CLI inventory name is another sync's inventory: it adopts
// nothing, while a sync whose CLI name is free adopts it.
func TestSyncNeverAdoptsAnotherSyncsInventory(t *testing.T) {
	d := newDaemon(t, fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: %s, path: %s}}
syncs:
- {name: shop-deploy, source: {url: https://git.example/other.git}, clusters: [local]}
- {name: web, source: {url: https://git.example/shop.git, path: deploy}, clusters: [local]}
- {name: api, source: {url: https://git.example/api.git, path: deploy}, clusters: [local]}
`, env.Contexts[0], env.Kubeconfig))
	for _, tt := range []struct {
		sync  int
		adopt []string
	}{{1, nil}, {2, []string{"gitk8s-api-deploy"}}} {
		req, err := d.Request(context.Background(), d.cfg.Syncs[tt.sync], nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := req.Settings.Inventory.Adopt; !slices.Equal(got, tt.adopt) {
			t.Errorf("sync %s adopts %v, want %v", d.cfg.Syncs[tt.sync].Name, got, tt.adopt)
		}
	}
}
