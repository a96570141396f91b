package reconcile

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/cluster"
	"github.com/gitk8s/gitk8s/internal/controlplane"
	"github.com/gitk8s/gitk8s/internal/federation"
	"github.com/gitk8s/gitk8s/internal/source"
	"github.com/gitk8s/gitk8s/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env, 1) }

// dir is a Source that reads a folder of files as it is.
func dir(t *testing.T, files map[string]string) Source {
	root := testenv.WriteFiles(t, files)
	return SourceFunc(func(ctx context.Context) (*source.Snapshot, error) {
		return source.Open(ctx, root, source.Options{})
	})
}

func configMap(ns, name, value string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s, namespace: %s}\ndata: {value: %q}\n", name, ns, value)
}

// unreachable is a Target whose API server does not listen.
func unreachable(t *testing.T, name string) *cluster.Target {
	target, err := cluster.New(name, "default", &rest.Config{Host: "https://127.0.0.1:1"}, cluster.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	return target
}

func configMapExists(t *testing.T, ns, name string) bool {
	t.Helper()
	_, err := env.Client(t, "").CoreV1().ConfigMaps(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	return err == nil
}

// TestRunReasons runs each kind of outcome through the engine and checks
// its reason, its error and that a failure wrote nothing.
func TestRunReasons(t *testing.T) {
	tests := []struct {
		name string
		// files get the test's namespace for %[1]s.
		files        map[string]string
		wait         time.Duration
		unreachable  bool
		want         Reason
		wantErr      []string
		wantAbsent   []string // ConfigMaps a failure must not have written
		wantPresent  []string
		beforeRender bool // the run fails before it reaches the clusters
	}{
		{name: "succeeded", files: map[string]string{"a.yaml": configMap("%[1]s", "a", "1")}, want: Succeeded, wantPresent: []string{"a"}},
		{name: "render failed", files: map[string]string{"a.yaml": configMap("%[1]s", "a", "1"), "bad.yaml": "kind: [\n"},
			want: RenderFailed, wantErr: []string{"bad.yaml"}, wantAbsent: []string{"a"}, beforeRender: true},
		{name: "duplicate object", files: map[string]string{"a.yaml": configMap("%[1]s", "a", "1"), "b.yaml": configMap("%[1]s", "a", "2")},
			want: RenderFailed, wantErr: []string{"ConfigMap/%[1]s/a"}, wantAbsent: []string{"a"}, beforeRender: true},
		{name: "plan failed", files: map[string]string{"a.yaml": configMap("%[1]s", "a", "1"),
			"d.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: %[1]s}\nspec: {replicas: -3, selector: {matchLabels: {app: d}}, template: {metadata: {labels: {app: d}}, spec: {containers: [{name: c, image: x}]}}}\n"},
			want: PlanFailed, wantErr: []string{"Deployment/%[1]s/d", "replicas"}, wantAbsent: []string{"a"}},
		{name: "unknown kind", files: map[string]string{"a.yaml": configMap("%[1]s", "a", "1"), "w.yaml": "apiVersion: example.test/v1\nkind: Widget\nmetadata: {name: w, namespace: %[1]s}\n"},
			want: PlanFailed, wantErr: []string{"w.yaml", "Widget"}, wantAbsent: []string{"a"}},
		{name: "policy violation", files: map[string]string{"a.yaml": configMap("%[1]s", "a", "1"),
			"rb.yaml": "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: admin, namespace: %[1]s}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\nsubjects: [{kind: ServiceAccount, name: default, namespace: %[1]s}]\n"},
			want: PolicyViolation, wantErr: []string{"rbac-cluster-admin-binding", "RoleBinding/%[1]s/admin"}, wantAbsent: []string{"a"}},
		{name: "cluster unavailable", files: map[string]string{"a.yaml": configMap("%[1]s", "a", "1")}, unreachable: true,
			want: ClusterUnavailable, wantErr: []string{"cluster gone", "nothing was applied"}, wantAbsent: []string{"a"}},
		{name: "health check failed", wait: 2 * time.Second, files: map[string]string{
			"d.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: %[1]s}\nspec: {selector: {matchLabels: {app: d}}, template: {metadata: {labels: {app: d, " + controlplane.NeverReadyLabel + ": \"true\"}}, spec: {containers: [{name: c, image: x}]}}}\n"},
			want: HealthCheckFailed, wantErr: []string{"Deployment/%[1]s/d"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := env.Namespace(t)
			files := map[string]string{}
			for name, content := range tt.files {
				files[name] = fmt.Sprintf(content, ns)
			}
			settings := DefaultSettings()
			settings.Wait = tt.wait
			settings.Policy.Modes = map[string]string{"probe-liveness-missing": "off", "probe-readiness-missing": "off"}
			target := env.Target(t, "")
			if tt.unreachable {
				target = unreachable(t, "gone")
			}
			res := Run(context.Background(), Request{Name: "reasons-" + ns, Source: dir(t, files), Settings: settings,
				Clusters: Clusters([]*cluster.Target{target})})
			if res.Reason != tt.want {
				t.Fatalf("reason %s, want %s; error: %v", res.Reason, tt.want, res.Err)
			}
			if (res.Clusters == nil) != tt.beforeRender {
				t.Errorf("cluster results %v, want none only when the run failed before the clusters", res.Clusters)
			}
			for _, want := range tt.wantErr {
				if want = strings.ReplaceAll(want, "%[1]s", ns); res.Err == nil || !strings.Contains(res.Err.Error(), want) {
					t.Errorf("error %v does not name %q", res.Err, want)
				}
			}
			if tt.want == Succeeded && res.Err != nil {
				t.Errorf("error %v for a run that succeeded", res.Err)
			}
			for _, name := range tt.wantAbsent {
				if configMapExists(t, ns, name) {
					t.Errorf("ConfigMap %s was written by a run that failed with %s", name, res.Reason)
				}
			}
			for _, name := range tt.wantPresent {
				if !configMapExists(t, ns, name) {
					t.Errorf("ConfigMap %s was not applied", name)
				}
			}
		})
	}
}

// TestPruneRefusedKeepsEverything removes every object of a sync: the
// guard refuses, nothing is deleted, and the reason says so.
func TestPruneRefusedKeepsEverything(t *testing.T) {
	ns := env.Namespace(t)
	settings := DefaultSettings()
	settings.Prune = true
	clusters := Clusters([]*cluster.Target{env.Target(t, "")})
	name := "refused-" + ns
	first := Run(context.Background(), Request{Name: name, Source: dir(t, map[string]string{"a.yaml": configMap(ns, "a", "1"), "b.yaml": configMap(ns, "b", "1")}),
		Settings: settings, Clusters: clusters})
	if first.Reason != Succeeded {
		t.Fatalf("first apply: %s: %v", first.Reason, first.Err)
	}
	second := Run(context.Background(), Request{Name: name, Source: dir(t, map[string]string{"c.yaml": configMap(ns, "c", "1")}), Settings: settings, Clusters: clusters})
	if second.Reason != PruneRefused || !strings.Contains(second.Err.Error(), "prune refused") {
		t.Fatalf("second apply: %s: %v; want PruneRefused", second.Reason, second.Err)
	}
	for _, cm := range []string{"a", "b", "c"} {
		if !configMapExists(t, ns, cm) {
			t.Errorf("ConfigMap %s is gone after a refused prune", cm)
		}
	}
}

// TestFederationGivesReplicasOnlyToReadyClusters plans a
// ReplicaSchedulingPreference over a cluster that answers and one that
// does not: every replica goes to the one that answers, and the
// placement says so.
func TestFederationGivesReplicasOnlyToReadyClusters(t *testing.T) {
	ns := env.Namespace(t)
	files := map[string]string{"fed.yaml": fmt.Sprintf(`apiVersion: types.kubefed.io/v1beta1
kind: FederatedNamespace
metadata: {name: %[1]s, namespace: %[1]s}
spec:
  placement:
    clusters: [{name: local}, {name: gone}]
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
  placement:
    clusters: [{name: local}, {name: gone}]
---
apiVersion: scheduling.kubefed.io/v1alpha1
kind: ReplicaSchedulingPreference
metadata: {name: web, namespace: %[1]s}
spec:
  targetKind: FederatedDeployment
  totalReplicas: 4
  clusters:
    local: {weight: 1}
    gone: {weight: 1}
`, ns)}
	settings := DefaultSettings()
	settings.Policy.Off = true
	clusters := []Cluster{{Name: "local", Target: env.Target(t, "")}, {Name: "gone", Target: unreachable(t, "gone")}}
	res := Run(context.Background(), Request{Name: "fed-" + ns, Source: dir(t, files), Settings: settings, Clusters: clusters})
	if res.Reason != ClusterUnavailable {
		t.Fatalf("reason %s, want ClusterUnavailable for the cluster that is gone: %v", res.Reason, res.Err)
	}
	if res.Clusters[0].Reason != Succeeded {
		t.Fatalf("local: %s: %v", res.Clusters[0].Reason, res.Clusters[0].Err)
	}
	var web *federation.Placement
	for i, p := range res.Placements {
		if p.Federated == "FederatedDeployment/"+ns+"/web" {
			web = &res.Placements[i]
		}
	}
	if web == nil || web.Replicas["local"] != 4 || web.Replicas["gone"] != 0 || !slices.Equal(web.Clusters, []string{"local"}) {
		t.Fatalf("placements %+v, want all 4 replicas on local", res.Placements)
	}
	d, err := env.Client(t, "").AppsV1().Deployments(ns).Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 4 {
		t.Errorf("live Deployment has %v replicas, want 4", d.Spec.Replicas)
	}
}

// TestAdoptsAnEarlierInventory applies under one inventory, then under
// another that adopts it: the objects still rendered move, the one no
// longer rendered is pruned, and the earlier parent is deleted, so that
// there is one inventory afterwards.
func TestAdoptsAnEarlierInventory(t *testing.T) {
	ns := env.Namespace(t)
	clusters := Clusters([]*cluster.Target{env.Target(t, "")})
	settings := DefaultSettings()
	settings.Prune = true
	settings.AllowDestructivePrune = true // one of two objects is half
	old := Run(context.Background(), Request{Name: "old-" + ns, Source: dir(t, map[string]string{"a.yaml": configMap(ns, "a", "1"), "b.yaml": configMap(ns, "b", "1")}),
		Settings: settings, Clusters: clusters})
	if old.Reason != Succeeded {
		t.Fatalf("first apply: %s: %v", old.Reason, old.Err)
	}
	adopting := settings
	adopting.Inventory.Adopt = []string{InventoryName("old-" + ns)}
	src := dir(t, map[string]string{"a.yaml": configMap(ns, "a", "2")})

	plan := Run(context.Background(), Request{Name: "new-" + ns, Source: src, Settings: adopting, Clusters: clusters, DryRun: true})
	if plan.Reason != Succeeded {
		t.Fatalf("plan: %s: %v", plan.Reason, plan.Err)
	}
	actions := map[string]apply.Action{}
	for _, e := range plan.Clusters[0].ChangeSet.Entries {
		actions[e.Ref] = e.Action
	}
	if actions["ConfigMap/"+ns+"/a"] != apply.Configured || actions["ConfigMap/"+ns+"/b"] != apply.Pruned {
		t.Fatalf("plan %v: want a configured and b pruned", actions)
	}

	res := Run(context.Background(), Request{Name: "new-" + ns, Source: src, Settings: adopting, Clusters: clusters})
	if res.Reason != Succeeded {
		t.Fatalf("adopting apply: %s: %v", res.Reason, res.Err)
	}
	client := env.Client(t, "")
	if _, err := client.CoreV1().Secrets(apply.DefaultInventoryNamespace).Get(context.Background(), InventoryName("old-"+ns), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the adopted inventory is still there (%v)", err)
	}
	if configMapExists(t, ns, "b") {
		t.Error("b, no longer rendered, was not pruned")
	}
	a, err := client.CoreV1().ConfigMaps(ns).Get(context.Background(), "a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := a.Labels[apply.LabelPartOf], apply.ApplySetID(InventoryName("new-"+ns), apply.DefaultInventoryNamespace); got != want {
		t.Errorf("a is part of %q, want %q", got, want)
	}
}

// TestCancelledRunStopsBeforeTheClusters cancels the context: the run
// ends with the cancellation and writes nothing.
func TestCancelledRunStopsBeforeTheClusters(t *testing.T) {
	ns := env.Namespace(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := Run(ctx, Request{Name: "cancelled-" + ns, Source: dir(t, map[string]string{"a.yaml": configMap(ns, "a", "1")}), Settings: DefaultSettings(),
		Clusters: Clusters([]*cluster.Target{env.Target(t, "")})})
	if !errors.Is(res.Err, context.Canceled) || res.Clusters != nil {
		t.Fatalf("reason %s, error %v: want the cancellation, before the clusters", res.Reason, res.Err)
	}
	if configMapExists(t, ns, "a") {
		t.Error("a cancelled run wrote a ConfigMap")
	}
}

// TestRunServiceUnavailableDuringThePlan puts a gateway in front of the
// API server that passes the probe and every read but answers 503 to the
// dry-runs of the plan: both faces, the daemon's run and the CLI's dry
// run, call the cluster unavailable (not the plan failed), and nothing is
// written.
func TestRunServiceUnavailableDuringThePlan(t *testing.T) {
	direct := env.Target(t, "")
	upstream, err := url.Parse(direct.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	transport, err := rest.TransportFor(direct.Config)
	if err != nil {
		t.Fatal(err)
	}
	forward := httputil.NewSingleHostReverseProxy(upstream)
	forward.Transport = transport
	var mu sync.Mutex
	var refused, written []string
	gateway := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("dryRun") {
			mu.Lock()
			refused = append(refused, r.Method+" "+r.URL.Path)
			mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
				Status: metav1.StatusFailure, Code: http.StatusServiceUnavailable, Reason: metav1.StatusReasonServiceUnavailable,
				Message: "the server is currently unable to handle the request"})
			return
		}
		if r.Method != http.MethodGet {
			mu.Lock()
			written = append(written, r.Method+" "+r.URL.Path)
			mu.Unlock()
		}
		forward.ServeHTTP(w, r)
	}))
	t.Cleanup(gateway.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: gateway.Certificate().Raw})
	flaky, err := cluster.New("flaky", "default", &rest.Config{Host: gateway.URL, TLSClientConfig: rest.TLSClientConfig{CAData: ca}}, cluster.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, dryRun := range []bool{false, true} {
		t.Run(fmt.Sprintf("dry-run=%v", dryRun), func(t *testing.T) {
			ns := env.Namespace(t)
			mu.Lock()
			refused, written = nil, nil
			mu.Unlock()
			settings := DefaultSettings()
			settings.Prune = true
			settings.Policy.Off = true
			res := Run(context.Background(), Request{Name: "flaky-" + ns, Source: dir(t, map[string]string{"a.yaml": configMap(ns, "a", "1")}),
				Settings: settings, Clusters: Clusters([]*cluster.Target{flaky}), DryRun: dryRun})
			if res.Reason != ClusterUnavailable || res.Clusters[0].Reason != ClusterUnavailable {
				t.Fatalf("reason %s (cluster %s), want ClusterUnavailable: %v", res.Reason, res.Clusters[0].Reason, res.Err)
			}
			if want := "flaky became unreachable"; res.Err == nil || !strings.Contains(res.Err.Error(), want) || !strings.Contains(res.Err.Error(), "ConfigMap/"+ns+"/a") {
				t.Errorf("error %v does not say %q and name the object", res.Err, want)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(refused) == 0 {
				t.Error("the plan sent no dry-run, so the gateway's 503 was never tested")
			}
			if len(written) > 0 {
				t.Errorf("a run whose plan the cluster did not answer wrote %v", written)
			}
			if configMapExists(t, ns, "a") {
				t.Error("ConfigMap a was written")
			}
		})
	}
}
