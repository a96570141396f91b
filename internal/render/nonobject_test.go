package render

import (
	"strings"
	"testing"

	"github.com/gitk8s/gitk8s/internal/testenv"
	"github.com/google/go-cmp/cmp"
)

const configMap = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s}\n"

// A folder walked for manifests holds the files of other tools beside
// them; each is left out and said to be what it is, and the objects of
// the folder still render.
func TestToolFilesAreLeftOutAndNamed(t *testing.T) {
	root := testenv.WriteFiles(t, map[string]string{
		"app/cm.yaml":              strings.ReplaceAll(configMap, "%s", "app"),
		"app/values.yaml":          "replicaCount: 2\nimage:\n  repository: nginx\n",
		"app/values-prod.yaml":     "replicaCount: 5\n",
		"env/prod.values.yaml":     "replicaCount: 5\n",
		"values/staging.yaml":      "ingress: {enabled: true}\n",
		"skaffold.yaml":            "apiVersion: skaffold/v4beta6\nkind: Config\nmetadata: {name: app}\nbuild: {artifacts: [{image: app}]}\n",
		"docker-compose.yml":       "services:\n  web: {image: nginx}\n",
		"package.json":             `{"name": "site", "version": "1.0.0"}`,
		"kind-cluster.yaml":        "apiVersion: kind.x-k8s.io/v1alpha4\nkind: Cluster\nnodes: [{role: control-plane}]\n",
		"transformers/labels.yaml": "apiVersion: builtin\nkind: LabelTransformer\nmetadata: {name: labels}\nlabels: {team: a}\n",
		"lib/util.libsonnet":       "{ name(x):: 'app-' + x }\n",
		"components/team/kustomization.yaml": `apiVersion: kustomize.config.k8s.io/v1alpha1
kind: Component
patches:
- target: {kind: Deployment}
  patch: '[{"op": "add", "path": "/metadata/labels/team", "value": "a"}]'
`,
		"jsonnetfile.json": `{"version": 1, "dependencies": []}`,
	})
	bundle, err := Render(t.Context(), Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	var objects []string
	for _, o := range bundle.Objects {
		objects = append(objects, o.Source.String()+" "+o.Ref())
	}
	if diff := cmp.Diff([]string{"app/cm.yaml:1 ConfigMap/app"}, objects); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
	got := map[string]string{}
	for _, s := range bundle.Skipped {
		got[s.File] = s.What
	}
	want := map[string]string{
		"app/values.yaml":          helmValues,
		"app/values-prod.yaml":     helmValues,
		"env/prod.values.yaml":     helmValues,
		"values/staging.yaml":      helmValues,
		"skaffold.yaml":            "a Skaffold configuration",
		"docker-compose.yml":       "a Docker Compose file",
		"package.json":             "an npm package file",
		"kind-cluster.yaml":        "a kind cluster configuration",
		"transformers/labels.yaml": "a kustomize transformer or generator configuration (read by the kustomization that lists it)",
		"components/team":          "a kustomize Component (built only by the kustomizations that list it under components)",
		"jsonnetfile.json":         "a jsonnet-bundler dependency list",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("skipped (-want +got):\n%s", diff)
	}
}

// A tool's file name does not hide objects: a values.yaml that holds a
// ConfigMap is read, and one with a real mistake reports the mistake.
func TestToolFileNamesDoNotHideObjects(t *testing.T) {
	root := testenv.WriteFiles(t, map[string]string{
		"values.yaml":  strings.ReplaceAll(configMap, "%s", "values"),
		"package.json": `{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "pkg"}}`,
	})
	bundle, err := Render(t.Context(), Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if len(bundle.Objects) != 2 || len(bundle.Skipped) != 0 {
		t.Errorf("got %d objects and skipped %v, want both ConfigMaps and nothing skipped", len(bundle.Objects), bundle.Skipped)
	}

	root = testenv.WriteFiles(t, map[string]string{
		"values.yaml": "replicaCount: [2\n",
		"other.yaml":  "replicaCount: 2\n",
	})
	_, err = Render(t.Context(), Options{Root: root})
	for _, want := range []string{"values.yaml: invalid YAML", "other.yaml:1: apiVersion and kind missing"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to say %q", err, want)
		}
	}
}

// Named one by one (SRC files), a tool's file is an error that says what
// it is and what to give instead; none makes the folder of files a chart
// or a kustomization.
func TestToolFilesNamedAsSRCAreErrors(t *testing.T) {
	for _, tc := range []struct {
		file, content, want string
	}{
		{"values.yaml", "replicaCount: 2\n", "values.yaml: this is a file of Helm values, not Kubernetes objects; they belong to a chart: give them with --values FILE"},
		{"Chart.yaml", "apiVersion: v2\nname: web\nversion: 1.0.0\n", "Chart.yaml: this is a Helm chart's Chart.yaml, not Kubernetes objects; give the chart's folder as SRC"},
		{"skaffold.yaml", "apiVersion: skaffold/v4beta6\nkind: Config\nmetadata: {name: app}\n", "skaffold.yaml: this is a Skaffold configuration, not Kubernetes objects"},
		{"kustomization.yaml", "resources: [cm.yaml]\n", "kustomization.yaml: this is a kustomization, which kustomize builds from its folder; give the folder as SRC"},
		{"Kustomization", "resources: [cm.yaml]\n", "Kustomization: this is a kustomization"},
		{"util.libsonnet", "{ name(x):: x }\n", "util.libsonnet: this is a jsonnet library"},
		{"kubeconfig.yaml", "apiVersion: v1\nkind: Config\nclusters: []\nusers: []\n", "kubeconfig.yaml: this is a kubeconfig (it holds credentials: keep it out of Git), not Kubernetes objects; remove it from the source and rotate the credentials it holds"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			root := testenv.WriteFiles(t, map[string]string{tc.file: tc.content})
			_, err := Render(t.Context(), Options{Root: root, Files: true})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "apiVersion and kind missing") {
				t.Errorf("error %v reports a tool's file as an object without apiVersion and kind", err)
			}
		})
	}
}

// A Component named as the folder to render is built, as kubectl
// kustomize builds it; only one found on the way is left out.
func TestComponentAtTheTopIsBuilt(t *testing.T) {
	root := testenv.WriteFiles(t, map[string]string{
		"kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nresources: [cm.yaml]\n",
		"cm.yaml":            strings.ReplaceAll(configMap, "%s", "from-component"),
	})
	bundle, err := Render(t.Context(), Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if len(bundle.Objects) != 1 || bundle.Objects[0].Ref() != "ConfigMap/from-component" || len(bundle.Skipped) != 0 {
		t.Errorf("got %d objects, skipped %v; want the Component's ConfigMap", len(bundle.Objects), bundle.Skipped)
	}
}

// The templates of a chart are not manifests: rendering a folder inside a
// chart says so and names the chart, and a template given as a file says
// that it is one.
func TestFolderInsideAChartNamesTheChart(t *testing.T) {
	template := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n  labels:\n{{ include \"web.labels\" . | indent 4 }}\n"
	root := testenv.WriteFiles(t, map[string]string{
		"charts/web/Chart.yaml":        "apiVersion: v2\nname: web\nversion: 1.0.0\n",
		"charts/web/templates/cm.yaml": template,
	})
	_, err := Render(t.Context(), Options{Root: root, Path: "charts/web/templates"})
	want := `path "charts/web/templates" is inside the Helm chart charts/web: its files are the chart's templates and values, not manifests; render the chart's folder charts/web`
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %q", err, want)
	}

	root = testenv.WriteFiles(t, map[string]string{"cm.yaml": template})
	_, err = Render(t.Context(), Options{Root: root, Files: true})
	if err == nil || !strings.Contains(err.Error(), "the file holds {{ }} template actions: a Helm template is rendered with its chart, so give the folder with Chart.yaml") {
		t.Errorf("error %v, want it to name the template actions", err)
	}
}

// A tool's document among objects is an error of its own: the file's
// objects are not taken as the whole of it.
func TestToolDocumentAmongObjects(t *testing.T) {
	root := testenv.WriteFiles(t, map[string]string{
		"all.yaml": strings.ReplaceAll(configMap, "%s", "a") + "---\napiVersion: skaffold/v4beta6\nkind: Config\n",
	})
	_, err := Render(t.Context(), Options{Root: root})
	want := "all.yaml:5: a Skaffold configuration, not a Kubernetes object; move it out of the manifests, or list it in .gitk8signore"
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %q", err, want)
	}
}
