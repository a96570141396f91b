package federation

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/gitk8s/gitk8s/internal/render"
)

const corpus = "testdata/kubefed/example"

func bundle(t *testing.T, files map[string]string) []*render.Object {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := render.Render(t.Context(), render.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	return b.Objects
}

// TestReplicaPlansFromTheUserGuide checks the plans KubeFed's user guide
// publishes for clusters A, B and C.
func TestReplicaPlansFromTheUserGuide(t *testing.T) {
	abc := []Cluster{{Name: "A", Ready: true}, {Name: "B", Ready: true}, {Name: "C", Ready: true}}
	tests := []struct {
		name     string
		clusters string
		total    int
		in       []Cluster
		want     map[string]int64
	}{
		{"equal weights", "    \"*\": {weight: 1}\n", 9, abc, map[string]int64{"A": 3, "B": 3, "C": 3}},
		{"weights without a default", "    A: {weight: 1}\n    B: {weight: 2}\n", 9, abc, map[string]int64{"A": 3, "B": 6, "C": 0}},
		{"min and max", "    A: {minReplicas: 4, maxReplicas: 6, weight: 1}\n    B: {minReplicas: 4, maxReplicas: 8, weight: 2}\n", 9, abc, map[string]int64{"A": 4, "B": 5, "C": 0}},
		{"a cluster offline", "    \"*\": {weight: 1}\n", 9, []Cluster{{Name: "A", Ready: true}, {Name: "B", Ready: false}, {Name: "C", Ready: true}}, map[string]int64{"A": 5, "B": 0, "C": 4}},
		{"ties go to heavier, then by name", "    \"*\": {weight: 1}\n", 8, abc, map[string]int64{"A": 3, "B": 3, "C": 2}},
		{"max caps and the rest moves on", "    A: {maxReplicas: 1, weight: 5}\n    B: {weight: 1}\n", 7, abc, map[string]int64{"A": 1, "B": 6, "C": 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := bundle(t, map[string]string{"rsp.yaml": "apiVersion: scheduling.kubefed.io/v1alpha1\nkind: ReplicaSchedulingPreference\nmetadata: {name: web, namespace: shop}\nspec:\n  targetKind: FederatedDeployment\n  totalReplicas: " + string(rune('0'+tt.total)) + "\n  clusters:\n" + tt.clusters})
			got, err := planReplicas(objs[0], tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
		})
	}
}

func clusters3() []Cluster {
	return []Cluster{
		{Name: "cluster1", Labels: map[string]string{"region": "eu"}, Ready: true},
		{Name: "cluster2", Labels: map[string]string{"region": "us"}, Ready: true},
		{Name: "cluster3", Labels: map[string]string{"region": "eu"}, Ready: true},
	}
}

func names(res *Result, cluster string) []string {
	var out []string
	for _, o := range res.PerCluster[cluster] {
		out = append(out, o.Ref())
	}
	sort.Strings(out)
	return out
}

// TestKubeFedCorpus expands KubeFed's own sample: every object lands in the
// clusters its placement names, with its overrides, and nowhere else.
func TestKubeFedCorpus(t *testing.T) {
	files := map[string]string{}
	for _, dir := range []string{"sample1", "scheduling"} {
		entries, err := os.ReadDir(filepath.Join(corpus, dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "federated") {
				data, err := os.ReadFile(filepath.Join(corpus, dir, e.Name()))
				if err != nil {
					t.Fatal(err)
				}
				files[dir+"-"+e.Name()] = string(data)
			}
		}
	}
	res, err := Expand(bundle(t, files), clusters3())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"ClusterRole/test-clusterrole", "ClusterRoleBinding/test-clusterrolebinding",
		"ConfigMap/test-namespace/test-configmap", "Deployment/test-namespace/test-deployment",
		"Ingress/test-namespace/test-ingress", "Job/test-namespace/test-job", "Namespace/test-namespace",
		"Secret/test-namespace/test-secret", "Service/test-namespace/test-service", "ServiceAccount/test-namespace/test-serviceaccount",
	}
	for _, c := range []string{"cluster1", "cluster2"} {
		if diff := cmp.Diff(want, names(res, c)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c, diff)
		}
	}
	if got := names(res, "cluster3"); len(got) != 0 {
		t.Errorf("cluster3 is in no placement but got %v", got)
	}

	find := func(cluster, ref string) *unstructured.Unstructured {
		for _, o := range res.PerCluster[cluster] {
			if o.Ref() == ref {
				return o.Object
			}
		}
		t.Fatalf("%s not in %s", ref, cluster)
		return nil
	}
	field := func(u *unstructured.Unstructured, path ...string) any {
		v, _, _ := unstructured.NestedFieldNoCopy(u.Object, path...)
		return v
	}
	d1, d2 := find("cluster1", "Deployment/test-namespace/test-deployment"), find("cluster2", "Deployment/test-namespace/test-deployment")
	// The ReplicaSchedulingPreference (10 replicas, weights 2:3) decides replicas.
	if field(d1, "spec", "replicas") != int64(4) || field(d2, "spec", "replicas") != int64(6) {
		t.Errorf("replicas %v / %v, want 4 / 6", field(d1, "spec", "replicas"), field(d2, "spec", "replicas"))
	}
	if img := d2.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["image"]; img != "nginx:1.17.0-alpine" {
		t.Errorf("cluster2 image %v", img)
	}
	if ann := d2.GetAnnotations(); len(ann) != 0 {
		t.Errorf("add then remove of annotation foo left %v", ann)
	}
	if j := find("cluster2", "Job/test-namespace/test-job"); field(j, "spec", "parallelism") != int64(2) {
		t.Errorf("job override: %v", field(j, "spec", "parallelism"))
	}
	if cm := find("cluster2", "ConfigMap/test-namespace/test-configmap"); field(cm, "data", "foo") != "bar" || field(cm, "data", "A") != nil {
		t.Errorf("configmap override: %v", field(cm, "data"))
	}
	if s := find("cluster2", "Secret/test-namespace/test-secret"); field(s, "data", "A") != nil {
		t.Errorf("secret null override kept A: %v", field(s, "data"))
	}
	if s := find("cluster1", "Secret/test-namespace/test-secret"); field(s, "data", "A") != "YWxhIG1hIGtvdGE=" {
		t.Errorf("cluster1 secret: %v", field(s, "data"))
	}
	ing := find("cluster1", "Ingress/test-namespace/test-ingress")
	if ing.GetAPIVersion() != "networking.k8s.io/v1" || !strings.Contains(toJSON(t, ing), `"service":{"name":"test-service","port":{"number":80}}`) {
		t.Errorf("ingress not converted: %s", toJSON(t, ing))
	}
}

func toJSON(t *testing.T, u *unstructured.Unstructured) string {
	data, err := u.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func fedCM(placement string, extra string) string {
	return "apiVersion: types.kubefed.io/v1beta1\nkind: FederatedConfigMap\nmetadata: {name: c, namespace: shop}\nspec:\n  template: {data: {a: b}}\n" + placement + extra
}

const fedNS = "apiVersion: types.kubefed.io/v1beta1\nkind: FederatedNamespace\nmetadata: {name: shop, namespace: shop}\nspec:\n  placement:\n    clusterSelector: {}\n"

func TestPlacementRules(t *testing.T) {
	tests := []struct {
		name      string
		placement string
		ns        string
		want      []string
		note      string
	}{
		{"clusters wins over the selector", "  placement:\n    clusters: [{name: cluster2}]\n    clusterSelector: {matchLabels: {region: eu}}\n", fedNS, []string{"cluster2"}, ""},
		{"an empty clusters list selects none", "  placement:\n    clusters: []\n    clusterSelector: {}\n", fedNS, nil, ""},
		{"an empty selector selects all", "  placement:\n    clusterSelector: {}\n", fedNS, []string{"cluster1", "cluster2", "cluster3"}, ""},
		{"a selector by label", "  placement:\n    clusterSelector: {matchLabels: {region: eu}}\n", fedNS, []string{"cluster1", "cluster3"}, ""},
		{"an empty placement selects none", "  placement: {}\n", fedNS, nil, ""},
		{"the namespace bounds placement", "  placement:\n    clusterSelector: {}\n", strings.Replace(fedNS, "clusterSelector: {}", "clusters: [{name: cluster1}]", 1), []string{"cluster1"}, ""},
		{"no FederatedNamespace: nowhere, with a reason", "  placement:\n    clusterSelector: {}\n", "", nil, "propagates nowhere: namespace shop has no FederatedNamespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{"cm.yaml": fedCM(tt.placement, "")}
			if tt.ns != "" {
				files["ns.yaml"] = tt.ns
			}
			res, err := Expand(bundle(t, files), clusters3())
			if err != nil {
				t.Fatal(err)
			}
			var p Placement
			for _, pl := range res.Placements {
				if pl.Federated == "FederatedConfigMap/shop/c" {
					p = pl
				}
			}
			if diff := cmp.Diff(tt.want, p.Clusters); diff != "" {
				t.Errorf("clusters (-want +got):\n%s", diff)
			}
			if !strings.Contains(p.Note, tt.note) {
				t.Errorf("note %q lacks %q", p.Note, tt.note)
			}
		})
	}
}

func TestOverridesRefused(t *testing.T) {
	placement := "  placement:\n    clusterSelector: {}\n"
	tests := []struct{ name, overrides, want string }{
		{"metadata name", "  overrides:\n  - clusterName: cluster1\n    clusterOverrides: [{path: /metadata/name, value: x}]\n", "/metadata/name may not be overridden"},
		{"namespace", "  overrides:\n  - clusterName: cluster1\n    clusterOverrides: [{path: /metadata/namespace, value: x}]\n", "/metadata/namespace may not be overridden"},
		{"kind", "  overrides:\n  - clusterName: cluster1\n    clusterOverrides: [{path: /kind, value: Secret}]\n", "/kind may not be overridden"},
		{"generateName", "  overrides:\n  - clusterName: cluster1\n    clusterOverrides: [{path: /metadata/generateName, value: x}]\n", "/metadata/generateName may not be overridden"},
		{"a cluster twice", "  overrides:\n  - clusterName: cluster1\n    clusterOverrides: [{path: /data/a, value: x}]\n  - clusterName: cluster1\n    clusterOverrides: [{path: /data/b, value: y}]\n", "cluster cluster1 is listed twice"},
		{"a path twice", "  overrides:\n  - clusterName: cluster1\n    clusterOverrides: [{path: /data/a, value: x}, {path: /data/a, op: remove}]\n", "path /data/a is overridden twice"},
		{"an unknown op", "  overrides:\n  - clusterName: cluster1\n    clusterOverrides: [{path: /data/a, op: move}]\n", `op "move" is not add, remove or replace`},
		{"a path that is not there", "  overrides:\n  - clusterName: cluster1\n    clusterOverrides: [{path: /data/missing, op: remove}]\n", "overrides for cluster cluster1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Expand(bundle(t, map[string]string{"cm.yaml": fedCM(placement, tt.overrides), "ns.yaml": fedNS}), clusters3())
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "cm.yaml:1: FederatedConfigMap/shop/c") {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
}
