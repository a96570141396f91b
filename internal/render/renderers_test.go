package render

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitk8s/gitk8s/internal/testenv"
	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// kubectlBinary is the kubectl built with the local control plane.
func kubectlBinary(t *testing.T) string {
	t.Helper()
	bin, err := filepath.Abs(filepath.Join("..", "..", ".cache", "bin", "kubectl"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("kubectl missing at %s; build it with `make controlplane`", bin)
	}
	return bin
}

// TestKustomizeMatchesKubectl renders overlays with gitk8s and with
// `kubectl kustomize` and compares the objects, in order.
func TestKustomizeMatchesKubectl(t *testing.T) {
	kubectl := kubectlBinary(t)
	root := filepath.Join("testdata", "kustomize")
	for _, dir := range []string{"base", "overlays/prod", "overlays/staging", "components/monitoring"} {
		t.Run(dir, func(t *testing.T) {
			bundle, err := Render(t.Context(), Options{Root: root, Path: dir})
			if err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(kubectl, "kustomize", filepath.Join(root, dir)).Output()
			if err != nil {
				t.Fatalf("kubectl kustomize: %v", err)
			}
			want, err := decodeFile("kubectl", out)
			if err != nil {
				t.Fatal(err)
			}
			var wantObjs, gotObjs []map[string]any
			for _, o := range want {
				wantObjs = append(wantObjs, o.Object.Object)
			}
			for _, o := range bundle.Objects {
				gotObjs = append(gotObjs, o.Object.Object)
				if o.Source.File != dir+"/kustomization.yaml" {
					t.Errorf("%s: source %s", o.Ref(), o.Source)
				}
			}
			if diff := cmp.Diff(wantObjs, gotObjs); diff != "" {
				t.Errorf("gitk8s differs from kubectl kustomize (-kubectl +gitk8s):\n%s", diff)
			}
		})
	}
}

func TestKustomizeOverlayContent(t *testing.T) {
	bundle, err := Render(t.Context(), Options{Root: filepath.Join("testdata", "kustomize"), Path: "overlays/prod"})
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, o := range bundle.Objects {
		refs = append(refs, o.Ref())
	}
	for _, want := range []string{"Deployment/shop-prod/prod-web", "Service/shop-prod/prod-web", "ConfigMap/shop-prod/prod-scrape-targets"} {
		if !strings.Contains(strings.Join(refs, " "), want) {
			t.Errorf("missing %s in %v", want, refs)
		}
	}
	for _, o := range bundle.Objects {
		if o.Object.GetKind() == "Secret" && !strings.HasPrefix(o.Object.GetName(), "prod-db-") {
			t.Errorf("secretGenerator name without hash: %s", o.Object.GetName())
		}
	}
}

func TestKustomizeRefuses(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{{
		name:  "remote base",
		files: map[string]string{"app/kustomization.yaml": "resources:\n- github.com/example/repo//deploy?ref=v1\n"},
		want:  `app/kustomization.yaml: remote kustomize bases are not allowed: "github.com/example/repo//deploy?ref=v1"`,
	}, {
		name:  "remote URL in a base",
		files: map[string]string{"app/kustomization.yaml": "resources:\n- ../base\n", "base/kustomization.yaml": "resources:\n- https://example.test/all.yaml\n"},
		want:  "base/kustomization.yaml: remote kustomize bases are not allowed",
	}, {
		name:  "file outside the repository",
		files: map[string]string{"app/kustomization.yaml": "resources:\n- ../../outside.yaml\n"},
		want:  `app/kustomization.yaml: "../../outside.yaml" is outside the repository`,
	}, {
		name:  "broken kustomization",
		files: map[string]string{"app/kustomization.yaml": "resources:\n- missing.yaml\n"},
		want:  "app/kustomization.yaml: kustomize build failed",
	}, {
		name:  "plugins are off",
		files: map[string]string{"app/kustomization.yaml": "generators:\n- gen.yaml\n", "app/gen.yaml": "apiVersion: example.test/v1\nkind: MyGenerator\nmetadata: {name: g}\n"},
		want:  "app/kustomization.yaml: kustomize build failed",
	}, {
		name:  "helm is off",
		files: map[string]string{"app/kustomization.yaml": "helmCharts:\n- name: nginx\n  repo: https://charts.example.test\n"},
		want:  "app/kustomization.yaml: helmCharts: Helm is off for kustomizations of this sync; enable it (--enable-helm",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := testenv.WriteFiles(t, tt.files)
			_, err := Render(t.Context(), Options{Root: root, Path: "app"})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestJsonnet(t *testing.T) {
	opts := Options{Root: filepath.Join("testdata", "jsonnet"), Jsonnet: JsonnetOptions{
		TLAs: map[string]string{}, ExtVars: map[string]string{"environment": "prod"},
	}}
	bundle, err := Render(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range bundle.Objects {
		got = append(got, o.Source.File+" "+o.Ref())
	}
	want := []string{"app.jsonnet ConfigMap/env", "app.jsonnet Service/web", "app.jsonnet Deployment/web", "list.jsonnet ConfigMap/from-list"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
	if env, _, _ := unstructured.NestedString(bundle.Objects[0].Object.Object, "data", "environment"); env != "prod" {
		t.Errorf("ext var not passed: %q", env)
	}
	opts.JsonnetEntry = "app.jsonnet"
	opts.Jsonnet.TLAs = map[string]string{}
	bundle, err = Render(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(bundle.Objects) != 3 {
		t.Errorf("entry file only: %d objects", len(bundle.Objects))
	}
}

func TestJsonnetErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  []string
	}{{
		name:  "runtime error with its stack",
		files: map[string]string{"a.jsonnet": "local f(x) = error 'boom: ' + x;\n{ a: f('here') }\n"},
		want:  []string{"a.jsonnet: jsonnet: RUNTIME ERROR: boom: here", "a.jsonnet:1"},
	}, {
		name:  "syntax error",
		files: map[string]string{"a.jsonnet": "{ a: }\n"},
		want:  []string{"a.jsonnet: jsonnet:", "a.jsonnet:1"},
	}, {
		name:  "import outside the repository",
		files: map[string]string{"sub/a.jsonnet": "import '../../../../../etc/hostname'\n"},
		want:  []string{"sub/a.jsonnet: jsonnet:", "leaves the repository"},
	}, {
		name:  "absolute import",
		files: map[string]string{"a.jsonnet": "import '/etc/hostname'\n"},
		want:  []string{"absolute paths leave the repository"},
	}, {
		name:  "output that is not objects",
		files: map[string]string{"a.jsonnet": "{ a: 'text' }\n"},
		want:  []string{"a.jsonnet: $.a: jsonnet output holds a string where an object was expected"},
	}, {
		name:  "object without a name",
		files: map[string]string{"a.jsonnet": "[{ apiVersion: 'v1', kind: 'ConfigMap', metadata: {} }]\n"},
		want:  []string{"a.jsonnet: $[0] ConfigMap: metadata.name missing"},
	}, {
		name:  "missing top-level argument",
		files: map[string]string{"a.jsonnet": "function(name) { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: name } }\n"},
		want:  []string{"a.jsonnet: jsonnet:", "name"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Render(t.Context(), Options{Root: testenv.WriteFiles(t, tt.files)})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestIgnoreFileAndSymlinks(t *testing.T) {
	root := testenv.WriteFiles(t, map[string]string{
		".gitk8signore":         "drafts/\n*.draft.yaml\n!keep.draft.yaml\n",
		"app/a.yaml":            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
		"app/b.draft.yaml":      "not: [valid",
		"app/keep.draft.yaml":   "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: keep}\n",
		"drafts/x.yaml":         "not: [valid",
		"shared/common.yaml":    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: common}\n",
		"lib/helpers.libsonnet": "{}",
	})
	if err := os.Symlink("../shared/common.yaml", filepath.Join(root, "app", "linked.yaml")); err != nil {
		t.Fatal(err)
	}
	bundle, err := Render(t.Context(), Options{Root: root, Path: "app"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range bundle.Objects {
		got = append(got, o.Ref())
	}
	if diff := cmp.Diff([]string{"ConfigMap/a", "ConfigMap/keep", "ConfigMap/common"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "x.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "x.yaml"), filepath.Join(root, "app", "escape.yaml")); err != nil {
		t.Fatal(err)
	}
	_, err = Render(t.Context(), Options{Root: root, Path: "app"})
	if err == nil || !strings.Contains(err.Error(), "app/escape.yaml: symbolic link leaves the repository") {
		t.Errorf("error %v", err)
	}
}
