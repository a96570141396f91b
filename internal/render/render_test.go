package render

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitk8s/gitk8s/internal/testenv"
	"github.com/google/go-cmp/cmp"
)

func TestRenderOrderAndSources(t *testing.T) {
	root := testenv.WriteFiles(t, map[string]string{
		"b/web.yaml": `# leading comment
apiVersion: v1
kind: ConfigMap
metadata: {name: web, namespace: shop}
---
---
# an empty document above, a comment-only one here
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
`,
		"a/list.json": `{"apiVersion": "v1", "kind": "List", "items": [
  {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "one"}},
  {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "two"}}]}`,
		"a/README.md":          "not a manifest",
		".github/workflow.yml": "on: push",
		"c/typed-list.yaml": `apiVersion: v1
kind: ConfigMapList
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: three}
`,
	})
	bundle, err := Render(t.Context(), Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range bundle.Objects {
		got = append(got, o.Source.String()+" "+o.Ref())
	}
	want := []string{
		"a/list.json:1 Service/one",
		"a/list.json:1 Service/two",
		"b/web.yaml:1 ConfigMap/shop/web",
		"b/web.yaml:9 Deployment/web",
		"c/typed-list.yaml:1 ConfigMap/three",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
}

func TestRenderPath(t *testing.T) {
	root := testenv.WriteFiles(t, map[string]string{
		"deploy/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
		"other/cm.yaml":  "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n",
	})
	bundle, err := Render(t.Context(), Options{Root: root, Path: "deploy"})
	if err != nil {
		t.Fatal(err)
	}
	if len(bundle.Objects) != 1 || bundle.Objects[0].Source.File != "deploy/cm.yaml" {
		t.Fatalf("got %d objects, first from %v", len(bundle.Objects), bundle.Objects[0].Source)
	}
	for _, bad := range []string{"../etc", "missing", "deploy/cm.yaml"} {
		if _, err := Render(t.Context(), Options{Root: root, Path: bad}); err == nil {
			t.Errorf("path %q: no error", bad)
		}
	}
}

func TestRenderBadInput(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  []string // every substring must be in the error
	}{{
		name:  "yaml syntax error names the line in the file",
		files: map[string]string{"app.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\n   labels: x\n"},
		want:  []string{"app.yaml: invalid YAML", "line 9"},
	}, {
		name:  "tab indentation",
		files: map[string]string{"tabs.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n\tname: x\n"},
		want:  []string{"tabs.yaml: invalid YAML", "line 4"},
	}, {
		name:  "missing apiVersion",
		files: map[string]string{"x.yaml": "kind: ConfigMap\nmetadata: {name: a}\n"},
		want:  []string{"x.yaml:1: ConfigMap/a: apiVersion missing"},
	}, {
		name:  "missing kind",
		files: map[string]string{"x.yaml": "---\napiVersion: v1\nmetadata: {name: a}\n"},
		want:  []string{"x.yaml:2: (no kind)/a: kind missing"},
	}, {
		name:  "missing apiVersion and kind",
		files: map[string]string{"x.yaml": "metadata: {name: a}\n"},
		want:  []string{"x.yaml:1: (no kind)/a: apiVersion and kind missing"},
	}, {
		name:  "missing metadata",
		files: map[string]string{"x.yaml": "apiVersion: v1\nkind: ConfigMap\ndata: {a: b}\n"},
		want:  []string{"x.yaml:1: ConfigMap: metadata missing"},
	}, {
		name:  "missing name",
		files: map[string]string{"x.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {namespace: shop}\n"},
		want:  []string{"x.yaml:1: ConfigMap: metadata.name missing"},
	}, {
		name:  "generateName is not enough",
		files: map[string]string{"x.yaml": "apiVersion: batch/v1\nkind: Job\nmetadata: {generateName: run-}\n"},
		want:  []string{"x.yaml:1: Job: metadata.name missing: generateName"},
	}, {
		name:  "name of the wrong type",
		files: map[string]string{"x.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [a]}\n"},
		want:  []string{"x.yaml:1: ConfigMap: metadata.name must be a string"},
	}, {
		name:  "a scalar document",
		files: map[string]string{"x.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\njust text\n"},
		want:  []string{"x.yaml:5: document is a string, not a Kubernetes object"},
	}, {
		name:  "a list document",
		files: map[string]string{"x.yaml": "- a\n- b\n"},
		want:  []string{"x.yaml:1: document is a list"},
	}, {
		name: "the same object twice",
		files: map[string]string{
			"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: shop}\n",
			"b.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: a, namespace: shop}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: shop}\n",
		},
		want: []string{"b.yaml:5: ConfigMap/shop/a: defined twice, first at a.yaml:1"},
	}, {
		name:  "bad list item",
		files: map[string]string{"x.yaml": "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {}\n"},
		want:  []string{"x.yaml:1: List items[0] ConfigMap: metadata.name missing"},
	}, {
		name:  "invalid JSON",
		files: map[string]string{"x.json": `{"apiVersion": "v1", "kind": "ConfigMap",` + "\n" + `"metadata": {"name": "a"}`},
		want:  []string{"x.json: invalid YAML"},
	}, {
		name: "every bad file is reported",
		files: map[string]string{
			"a.yaml": "kind: ConfigMap\nmetadata: {name: a}\n",
			"b.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",
		},
		want: []string{"a.yaml:1", "b.yaml:1"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bundle, err := Render(t.Context(), Options{Root: testenv.WriteFiles(t, tt.files)})
			if err == nil {
				t.Fatalf("no error; rendered %d objects", len(bundle.Objects))
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if bundle != nil {
				t.Errorf("a bundle came back with the error")
			}
		})
	}
}

// TestRenderNamesItsBoundary: an error about reading outside the root
// names the boundary the options give.
func TestRenderNamesItsBoundary(t *testing.T) {
	root := testenv.WriteFiles(t, map[string]string{
		"overlays/prod/kustomization.yaml": "resources: [../../base]\n",
		"base/kustomization.yaml":          "resources: [cm.yaml]\n",
		"base/cm.yaml":                     "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n",
		"leaky/cm.yaml":                    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\n",
	})
	if err := os.Symlink("/etc/hostname", filepath.Join(root, "leaky", "link.yaml")); err != nil {
		t.Fatal(err)
	}
	bundle, err := Render(t.Context(), Options{Root: root, Path: "overlays/prod", Boundary: "the Git work tree /home/me/shop"})
	if err != nil || len(bundle.Objects) != 1 {
		t.Fatalf("../../base inside the boundary: %v", err)
	}
	_, err = Render(t.Context(), Options{Root: root, Path: "leaky", Boundary: "the Git work tree /home/me/shop"})
	if err == nil || !strings.Contains(err.Error(), "leaves the Git work tree /home/me/shop") {
		t.Errorf("a link leaving the boundary: %v, want an error naming the boundary", err)
	}
}
