package federation

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/object"

	"github.com/gitk8s/gitk8s/internal/render"
)

// fuzzClusters are the clusters the fuzz targets place objects on; one is
// not Ready, so that replica plans move its share.
func fuzzClusters() []Cluster {
	return []Cluster{
		{Name: "cluster1", Labels: map[string]string{"region": "eu"}, Ready: true},
		{Name: "cluster2", Labels: map[string]string{"region": "us"}, Ready: true},
		{Name: "cluster3", Labels: map[string]string{"region": "eu"}, Ready: false},
	}
}

// FuzzExpand places any bundle and checks what KubeFed's rules promise:
// no panic; errors are *render.Error naming the file; every cluster gets
// every ordinary object; each federated object lands, under the identity
// its Placement names, on exactly the sorted, known clusters it lists;
// and a replica plan sets spec.replicas where it places.
func FuzzExpand(f *testing.F) {
	for _, folder := range []string{corpus + "/sample1", corpus + "/scheduling", "../../examples/federation"} {
		files, err := filepath.Glob(filepath.Join(folder, "*.yaml"))
		if err != nil {
			f.Fatal(err)
		}
		var all bytes.Buffer
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
			all.WriteString("---\n")
			all.Write(data)
		}
		f.Add(all.Bytes())
	}
	f.Add([]byte(fedNS + "---\n" + fedCM("  placement:\n    clusterSelector: {matchLabels: {region: eu}}\n",
		"  overrides:\n  - clusterName: cluster1\n    clusterOverrides: [{path: /data/a, value: x}, {path: /metadata/labels, op: add, value: {tier: web}}]\n")))
	f.Add([]byte(fedNS + "---\napiVersion: types.kubefed.io/v1beta1\nkind: FederatedDeployment\nmetadata: {name: web, namespace: shop}\nspec:\n  template: {spec: {replicas: 1}}\n  placement: {clusters: [{name: cluster1}, {name: cluster2}, {name: cluster3}, {name: nowhere}]}\n" +
		"---\napiVersion: scheduling.kubefed.io/v1alpha1\nkind: ReplicaSchedulingPreference\nmetadata: {name: web, namespace: shop}\nspec:\n  targetKind: FederatedDeployment\n  totalReplicas: 10\n  clusters:\n    cluster1: {minReplicas: 2, maxReplicas: 3, weight: 1}\n    \"*\": {weight: 2}\n"))
	const file = "federation.yaml"
	f.Fuzz(func(t *testing.T, data []byte) {
		objects, _ := render.Decode(file, data)
		res, err := Expand(objects, fuzzClusters())
		if err != nil {
			checkErrorsName(t, err, file)
			return
		}
		names := []string{"cluster1", "cluster2", "cluster3"}
		if len(res.PerCluster) != len(names) {
			t.Fatalf("objects for %d clusters, want %d", len(res.PerCluster), len(names))
		}
		// placed[cluster][id] counts the federated objects placed there.
		placed := map[string]map[object.ObjMetadata]int{}
		for _, p := range res.Placements {
			if !slices.IsSorted(p.Clusters) || len(slices.Compact(slices.Clone(p.Clusters))) != len(p.Clusters) {
				t.Fatalf("%s: clusters %v are not sorted and unique", p.Federated, p.Clusters)
			}
			for _, c := range p.Clusters {
				if !slices.Contains(names, c) {
					t.Fatalf("%s: placed on %s, which is not a cluster", p.Federated, c)
				}
				if placed[c] == nil {
					placed[c] = map[object.ObjMetadata]int{}
				}
				placed[c][p.Target]++
				if p.Replicas != nil && p.Replicas[c] <= 0 {
					t.Fatalf("%s: placed on %s with %d replicas", p.Federated, c, p.Replicas[c])
				}
			}
			for c, n := range p.Replicas {
				if n < 0 || (n > 0 && !slices.Contains(p.Clusters, c)) {
					t.Fatalf("%s: %d replicas on %s, placed on %v", p.Federated, n, c, p.Clusters)
				}
			}
		}
		inBundle := map[*render.Object]bool{}
		for _, o := range objects {
			inBundle[o] = true
		}
		for _, c := range names {
			got := map[object.ObjMetadata]int{}
			ordinary := 0
			for _, o := range res.PerCluster[c] {
				if inBundle[o] {
					ordinary++
					continue
				}
				got[o.ID()]++
			}
			if want := countOrdinary(objects); ordinary != want {
				t.Fatalf("cluster %s has %d of the %d ordinary objects", c, ordinary, want)
			}
			for id, n := range got {
				if placed[c][id] != n {
					t.Fatalf("cluster %s has %d objects %v; placements put %d there (an override changed what names the object?)", c, n, id, placed[c][id])
				}
			}
			for id, n := range placed[c] {
				if got[id] != n {
					t.Fatalf("cluster %s: placements put %d objects %v there, it has %d", c, n, id, got[id])
				}
			}
		}
		targets := map[object.ObjMetadata]int{}
		for _, p := range res.Placements {
			targets[p.Target]++
		}
		for _, p := range res.Placements {
			if p.Replicas == nil || targets[p.Target] > 1 {
				continue // which object is whose is not known
			}
			for _, c := range p.Clusters {
				for _, o := range res.PerCluster[c] {
					if inBundle[o] || o.ID() != p.Target {
						continue
					}
					if n, _, _ := unstructured.NestedInt64(o.Object.Object, "spec", "replicas"); n != p.Replicas[c] {
						t.Fatalf("%s on %s: spec.replicas %d, the plan says %d", p.Federated, c, n, p.Replicas[c])
					}
				}
			}
		}
	})
}

// countOrdinary counts the objects of the bundle that are placed as they
// are: all but Federated<Kind> objects and KubeFed's configuration. An
// object of the types group whose kind is not Federated<Kind> is ordinary.
func countOrdinary(objects []*render.Object) int {
	n := 0
	for _, o := range objects {
		gvk := o.Object.GroupVersionKind()
		switch {
		case gvk.Group == TypesGroup && strings.HasPrefix(gvk.Kind, "Federated"):
		case gvk.Group == CoreGroup || gvk.Group == SchedulingGroup:
		default:
			n++
		}
	}
	return n
}

// FuzzOverrides applies any overrides to any template of a
// FederatedDeployment placed on every cluster: overrides never change
// what names the object, a cluster without overrides gets the template
// unchanged, an accepted add or replace leaves its value where its JSON
// pointer (RFC 6901) points, and a refusal is a *render.Error naming the
// object's file and the object. The overrides are a JSON list of entries and, unless
// path and op are both empty, one more entry for cluster2 with the
// operation op, path, value; so that the fuzzer mutates a path as a path.
// A template or value that is not JSON is taken as the default template
// and as a string.
func FuzzOverrides(f *testing.F) {
	template := `{"metadata": {"labels": {"app": "web"}}, "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27", "args": ["-v"]}]}}}}`
	for _, overrides := range []string{
		`[{"clusterName": "cluster1", "clusterOverrides": [{"path": "/spec/replicas", "value": 5}]}]`,
		`[{"clusterName": "cluster1", "clusterOverrides": [{"path": "/spec/template/spec/containers/0/image", "value": "nginx:1.28"}, {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "-q"}]}]`,
		`[{"clusterName": "cluster1", "clusterOverrides": [{"path": "/metadata/name", "value": "other"}]}]`,
		`[{"clusterName": "cluster1", "clusterOverrides": [{"path": "/spec/replicas", "op": "move"}]}]`,
		`[{"clusterName": "cluster1", "clusterOverrides": [{"path": "/spec/a~1b", "op": "add", "value": 1}, {"path": "/spec/c~0d", "op": "add", "value": 2}]}]`,
		`[{"clusterName": "", "clusterOverrides": []}]`,
		`[{"clusterName": "cluster2"}]`,
		`{"clusterName": "cluster1"}`,
		`[]`,
	} {
		f.Add(template, overrides, "", "", "")
	}
	for _, op := range [][3]string{
		{"replace", "/spec/replicas", "5"},
		{"", "/spec/template/spec/containers/0/image", `"nginx:1.28"`},
		{"add", "/spec/template/spec/containers/0/args/-", `"-q"`},
		{"remove", "/metadata/labels/app", ""},
		{"add", "/metadata/annotations", `{"a": "b"}`},
		{"replace", "/metadata/labels", "null"},
		{"add", "/spec/strategy", `{"type": "Recreate"}`},
		{"remove", "/spec/missing", ""},
		{"add", "/spec/template/spec/containers/9", "{}"},
		{"add", "/metadata", `{"name": "web", "namespace": "shop", "labels": {"app": "web"}}`},
		{"add", "spec/replicas", "2"},
		{"replace", "/spec/template/spec/containers/-1/image", `"x"`},
	} {
		f.Add(template, "[]", op[0], op[1], op[2])
	}
	sample, err := os.ReadFile(corpus + "/sample1/federateddeployment.yaml")
	if err != nil {
		f.Fatal(err)
	}
	objs, err := render.Decode("sample.yaml", sample)
	if err != nil {
		f.Fatal(err)
	}
	for _, o := range objs {
		tmpl, _ := json.Marshal(o.Object.Object["spec"].(map[string]any)["template"])
		ovr, _ := json.Marshal(o.Object.Object["spec"].(map[string]any)["overrides"])
		f.Add(string(tmpl), string(ovr), "", "", "")
	}
	const file = "web.yaml"
	f.Fuzz(func(t *testing.T, template, overrides, op, path, value string) {
		if !utf8.ValidString(op) || !utf8.ValidString(path) || !utf8.ValidString(value) {
			return // decoded YAML and JSON hold only UTF-8
		}
		var tmpl, ovr, val any
		if utiljson.Unmarshal([]byte(template), &tmpl) != nil {
			_ = utiljson.Unmarshal([]byte(`{"spec": {"replicas": 1}}`), &tmpl)
		}
		if utiljson.Unmarshal([]byte(value), &val) != nil {
			val = value
		}
		if utiljson.Unmarshal([]byte(overrides), &ovr) != nil {
			ovr = []any{}
		}
		if list, ok := ovr.([]any); ok && (op != "" || path != "") {
			extra := map[string]any{"path": path, "value": val}
			if op != "" {
				extra["op"] = op
			}
			ovr = append(list, map[string]any{"clusterName": "cluster2", "clusterOverrides": []any{extra}})
		}
		expand := func(withOverrides bool) (*Result, error) {
			spec := map[string]any{"template": tmpl, "placement": map[string]any{"clusterSelector": map[string]any{}}}
			if withOverrides {
				spec["overrides"] = ovr
			}
			fed := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "types.kubefed.io/v1beta1", "kind": "FederatedDeployment",
				"metadata": map[string]any{"name": "web", "namespace": "shop"},
				"spec":     spec,
			}}
			ns := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "types.kubefed.io/v1beta1", "kind": "FederatedNamespace",
				"metadata": map[string]any{"name": "shop", "namespace": "shop"},
				"spec":     map[string]any{"placement": map[string]any{"clusterSelector": map[string]any{}}},
			}}
			return Expand([]*render.Object{{Object: fed, Source: render.Source{File: file, Line: 1}}, {Object: ns, Source: render.Source{File: "ns.yaml", Line: 1}}}, fuzzClusters())
		}
		res, err := expand(true)
		if err != nil {
			checkErrorsName(t, err, file)
			if !strings.Contains(err.Error(), "FederatedDeployment/shop/web") {
				t.Fatalf("error %q does not name the object", err)
			}
			return
		}
		plain, err := expand(false)
		if err != nil {
			t.Fatalf("the object expands with its overrides, not without them: %v", err)
		}
		want := object.ObjMetadata{GroupKind: defaultTargets["Deployment"].GroupKind(), Namespace: "shop", Name: "web"}
		overridden := map[string]bool{}
		if entries, ok := ovr.([]any); ok {
			for _, e := range entries {
				if m, ok := e.(map[string]any); ok {
					if c, ok := m["clusterName"].(string); ok {
						overridden[c] = true
					}
				}
			}
		}
		for c, objs := range res.PerCluster {
			for i, o := range objs {
				if o.Source.File != file {
					continue // the FederatedNamespace's Namespace
				}
				if o.ID() != want || o.Object.GetAPIVersion() != "apps/v1" {
					used, _ := json.Marshal(ovr)
					t.Fatalf("cluster %s: overrides %s turned Deployment/shop/web into %s %s", c, used, o.Object.GetAPIVersion(), render.RefOf(o.Object))
				}
				if c == "cluster2" && path != "" && (op == "" || op == "add" || op == "replace") {
					checkPointer(t, o.Object.Object, path, val)
				}
				if overridden[c] {
					continue
				}
				got, _ := json.Marshal(o.Object.Object)
				base, _ := json.Marshal(plain.PerCluster[c][i].Object.Object)
				if !bytes.Equal(got, base) {
					t.Fatalf("cluster %s has no overrides, yet its object changed:\n%s\nnot\n%s", c, got, base)
				}
			}
		}
	})
}

// TestOverridePathsRefused holds what FuzzOverrides found: an override of
// /metadata, or a path without its leading slash (the patch library skips
// what comes before the first one), renamed the object or set a field
// other than the one written.
func TestOverridePathsRefused(t *testing.T) {
	objs := func(path string) []*render.Object {
		fed := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "types.kubefed.io/v1beta1", "kind": "FederatedConfigMap",
			"metadata": map[string]any{"name": "c", "namespace": "shop"},
			"spec": map[string]any{
				"template":  map[string]any{"data": map[string]any{"a": "b"}},
				"placement": map[string]any{"clusterSelector": map[string]any{}},
				"overrides": []any{map[string]any{"clusterName": "cluster1", "clusterOverrides": []any{map[string]any{"path": path, "value": "x"}}}},
			},
		}}
		ns := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "types.kubefed.io/v1beta1", "kind": "FederatedNamespace",
			"metadata": map[string]any{"name": "shop", "namespace": "shop"},
			"spec":     map[string]any{"placement": map[string]any{"clusterSelector": map[string]any{}}},
		}}
		return []*render.Object{{Object: fed, Source: render.Source{File: "cm.yaml", Line: 1}}, {Object: ns, Source: render.Source{File: "ns.yaml", Line: 1}}}
	}
	tests := []struct{ path, want string }{
		{"/metadata", "/metadata may not be overridden whole"},
		{"x/metadata/name", `override path "x/metadata/name" is not a JSON pointer`},
		{"data/a", `override path "data/a" is not a JSON pointer`},
		{"", `override path "" is not a JSON pointer`},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			_, err := Expand(objs(tt.path), fuzzClusters())
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "cm.yaml:1: FederatedConfigMap/shop/c") {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := Expand(objs("/metadata/labels"), fuzzClusters()); err != nil {
		t.Errorf("/metadata/labels: %v", err)
	}
}

// checkPointer fails unless the JSON pointer path addresses want in doc.
// A negative array index, which the patch library takes to count from the
// end, is not checked.
func checkPointer(t *testing.T, doc map[string]any, path string, want any) {
	t.Helper()
	if !strings.HasPrefix(path, "/") {
		t.Fatalf("override path %q, which is not a JSON pointer, was accepted", path)
	}
	var at any = doc
	for _, token := range strings.Split(path[1:], "/") {
		token = strings.ReplaceAll(strings.ReplaceAll(token, "~1", "/"), "~0", "~")
		switch v := at.(type) {
		case map[string]any:
			next, ok := v[token]
			if !ok {
				t.Fatalf("override %s was accepted, yet %q is not there", path, token)
			}
			at = next
		case []any:
			i, err := strconv.Atoi(token)
			if token == "-" {
				i, err = len(v)-1, nil
			}
			if err == nil && i < 0 {
				return
			}
			if err != nil || i >= len(v) {
				t.Fatalf("override %s was accepted, yet index %q is not in a list of %d", path, token, len(v))
			}
			at = v[i]
		default:
			t.Fatalf("override %s was accepted, yet %q is under a %T", path, token, at)
		}
	}
	got, _ := json.Marshal(at)
	wantJSON, _ := json.Marshal(want)
	if !bytes.Equal(got, wantJSON) {
		t.Fatalf("override %s: the object holds %s there, not %s", path, got, wantJSON)
	}
}

// checkErrorsName fails unless every error joined into err is a
// *render.Error whose message starts with file.
func checkErrorsName(t *testing.T, err error, file string) {
	t.Helper()
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			checkErrorsName(t, e, file)
		}
		return
	}
	var e *render.Error
	if !errors.As(err, &e) || !strings.HasPrefix(err.Error(), file) {
		t.Fatalf("error %q (%T) does not name %s", err, err, file)
	}
}
