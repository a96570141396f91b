package render

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/gitk8s/gitk8s/internal/testenv"
)

// helmBinary is the Helm CLI the Makefile builds, of the version gitk8s
// renders with.
func helmBinary(t *testing.T) string {
	t.Helper()
	bin, err := filepath.Abs(filepath.Join("..", "..", ".cache", "bin", "helm"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("helm missing at %s; build it with `make helm`", bin)
	}
	return bin
}

// byRef is a bundle's objects as maps, sorted by what they name.
func byRef(objs []*Object) []map[string]any {
	sorted := append([]*Object(nil), objs...)
	sort.SliceStable(sorted, func(i, j int) bool {
		return sorted[i].Object.GetAPIVersion()+sorted[i].Ref() < sorted[j].Object.GetAPIVersion()+sorted[j].Ref()
	})
	out := make([]map[string]any, len(sorted))
	for i, o := range sorted {
		out[i] = o.Object.Object
	}
	return out
}

// TestHelmMatchesHelmTemplate renders charts with gitk8s and with the
// Helm CLI's `helm template --include-crds --skip-tests` and compares the
// objects: the public podinfo chart with its default and production
// values and with its optional templates switched on, and a chart with
// nested dependencies, a CRD and templates that depend on the cluster's
// version and API versions, with and without those capabilities.
func TestHelmMatchesHelmTemplate(t *testing.T) {
	helm := helmBinary(t)
	root := filepath.Join("testdata", "helm")
	cases := []struct {
		name  string
		chart string
		opts  HelmOptions
		// want are objects (Kind/name) the render must hold; absent must
		// not be there.
		want, absent []string
	}{
		{name: "podinfo default", chart: "podinfo", opts: HelmOptions{ReleaseName: "web", Namespace: "apps"},
			want: []string{"Deployment/apps/web-podinfo", "Service/apps/web-podinfo"}, absent: []string{"Pod/web-podinfo-grpc-test", "Job/apps/web-podinfo-pre-install"}},
		{name: "podinfo prod values", chart: "podinfo", opts: HelmOptions{ReleaseName: "web", Namespace: "apps", ValuesFiles: []string{"values-prod.yaml"}},
			want: []string{"Deployment/web-podinfo-redis", "ConfigMap/web-podinfo-redis"}},
		{name: "podinfo optional templates", chart: "podinfo", opts: HelmOptions{ReleaseName: "web", Namespace: "apps",
			ValuesFiles: []string{"values-prod.yaml"},
			Values: map[string]any{"serviceMonitor": map[string]any{"enabled": true}, "hpa": map[string]any{"enabled": true},
				"podDisruptionBudget": map[string]any{"maxUnavailable": 1}},
			Set: []string{"certificate.create=true", "certificate.dnsNames[0]=podinfo.example.com", "httpRoute.enabled=true", "replicaCount=3", "hooks.preInstall.job.enabled=true"}},
			want: []string{"ServiceMonitor/apps/web-podinfo", "HorizontalPodAutoscaler/apps/web-podinfo", "Certificate/apps/web-podinfo", "HTTPRoute/apps/web-podinfo", "PodDisruptionBudget/apps/web-podinfo", "Job/apps/web-podinfo-pre-install"}},
		{name: "shop without capabilities", chart: "shop", opts: HelmOptions{ReleaseName: "shop", Namespace: "store", KubeVersion: "v1.30.4"},
			want:   []string{"CustomResourceDefinition/orders.shop.example.com", "Secret/shop-db", "StatefulSet/shop-cache", "ConfigMap/shop-metrics"},
			absent: []string{"ServiceMonitor/shop-shop", "HorizontalPodAutoscaler/shop-shop", "Order/shop-first-order"}},
		{name: "shop with capabilities", chart: "shop", opts: HelmOptions{ReleaseName: "shop", Namespace: "store", KubeVersion: "v1.36.1",
			APIVersions: []string{"monitoring.coreos.com/v1", "monitoring.coreos.com/v1/ServiceMonitor", "shop.example.com/v1/Order"}},
			want: []string{"ServiceMonitor/shop-shop", "HorizontalPodAutoscaler/shop-shop", "Order/shop-first-order"}},
		{name: "shop without its dependency", chart: "shop", opts: HelmOptions{ReleaseName: "shop", Namespace: "store", Set: []string{"cache.enabled=false"}},
			absent: []string{"StatefulSet/shop-cache", "ConfigMap/shop-metrics"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bundle, err := Render(t.Context(), Options{Root: root, Path: tc.chart, Helm: tc.opts})
			if err != nil {
				t.Fatal(err)
			}
			kubeVersion := tc.opts.KubeVersion
			if kubeVersion == "" {
				kubeVersion = DefaultKubeVersion
			}
			args := []string{"template", tc.opts.ReleaseName, filepath.Join(root, tc.chart), "--namespace", tc.opts.Namespace,
				"--include-crds", "--skip-tests", "--kube-version", kubeVersion}
			for _, v := range tc.opts.APIVersions {
				args = append(args, "--api-versions", v)
			}
			for _, f := range tc.opts.ValuesFiles {
				args = append(args, "-f", filepath.Join(root, tc.chart, f))
			}
			if len(tc.opts.Values) > 0 {
				inline := filepath.Join(t.TempDir(), "inline.yaml")
				data, _ := yaml.Marshal(tc.opts.Values)
				if err := os.WriteFile(inline, data, 0o600); err != nil {
					t.Fatal(err)
				}
				args = append(args, "-f", inline)
			}
			for _, s := range tc.opts.Set {
				args = append(args, "--set", s)
			}
			cmd := exec.Command(helm, args...)
			cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
			out, err := cmd.Output()
			if err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, ee.Stderr)
				}
				t.Fatal(err)
			}
			want, err := decodeFile("helm", out)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(byRef(want), byRef(bundle.Objects)); diff != "" {
				t.Errorf("gitk8s differs from helm template (-helm +gitk8s):\n%s", diff)
			}
			have := map[string]*Object{}
			for _, o := range bundle.Objects {
				have[o.Ref()] = o
			}
			for _, ref := range tc.want {
				if have[ref] == nil {
					t.Errorf("%s is not rendered", ref)
				}
			}
			for _, ref := range tc.absent {
				if have[ref] != nil {
					t.Errorf("%s is rendered", ref)
				}
			}
			for _, o := range bundle.Objects {
				if !strings.HasPrefix(o.Source.File, tc.chart+"/") || o.Source.Line != 0 {
					t.Errorf("%s: source %s, want a file of the chart", o.Ref(), o.Source)
				}
			}
		})
	}
}

// TestHelmSources: each object names the template it came from.
func TestHelmSources(t *testing.T) {
	bundle, err := Render(t.Context(), Options{Root: filepath.Join("testdata", "helm"), Path: "shop", Helm: HelmOptions{ReleaseName: "shop"}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"Deployment/shop-shop":                             "shop/templates/deployment.yaml",
		"CustomResourceDefinition/orders.shop.example.com": "shop/crds/orders.yaml",
		"StatefulSet/shop-cache":                           "shop/charts/cache/templates/statefulset.yaml",
		"ConfigMap/shop-metrics":                           "shop/charts/cache/charts/metrics/templates/configmap.yaml",
	}
	for _, o := range bundle.Objects {
		if file, ok := want[o.Ref()]; ok {
			if o.Source.File != file {
				t.Errorf("%s: source %s, want %s", o.Ref(), o.Source.File, file)
			}
			delete(want, o.Ref())
		}
	}
	for ref := range want {
		t.Errorf("%s not rendered", ref)
	}
}

const minimalChart = "apiVersion: v2\nname: app\nversion: 0.1.0\n"

// TestHelmErrors: a chart that cannot be rendered fails its render with
// an error that names the file and says what to do, and a hostile chart
// is stopped by the render's limits or its boundary.
func TestHelmErrors(t *testing.T) {
	limits := Limits{CPU: 3 * time.Second, Memory: 512 << 20, Timeout: 30 * time.Second}
	cases := []struct {
		name  string
		files map[string]string
		link  [2]string // a symbolic link to make: name, target
		opts  HelmOptions
		want  []string
		limit bool
		cpu   time.Duration
	}{
		{name: "template error", files: map[string]string{
			"chart/Chart.yaml":          minimalChart,
			"chart/templates/good.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: good\n",
			"chart/templates/cm.yaml":   "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: {{ .Values.missing.deeper }}\n",
		}, want: []string{"chart/templates/cm.yaml:6", "helm template failed", "nil pointer"}},
		{name: "required value", files: map[string]string{
			"chart/Chart.yaml":        minimalChart,
			"chart/templates/cm.yaml": "{{ required \"set image.tag for this chart\" .Values.image }}\n",
		}, want: []string{"chart/templates/cm.yaml", "set image.tag for this chart"}},
		{name: "missing dependency", files: map[string]string{
			"chart/Chart.yaml": minimalChart + "dependencies:\n  - name: postgresql\n    version: 15.0.0\n    repository: https://charts.example.com\n",
		}, want: []string{"chart/Chart.yaml", "postgresql", "charts/", "helm dependency build"}},
		{name: "kube version below the chart's", files: map[string]string{
			"chart/Chart.yaml": minimalChart + "kubeVersion: \">=1.40.0-0\"\n",
		}, want: []string{"chart/Chart.yaml", "kubeVersion", "1.37"}},
		{name: "not an object", files: map[string]string{
			"chart/Chart.yaml":         minimalChart,
			"chart/templates/bad.yaml": "just: [text\n",
		}, want: []string{"chart/templates/bad.yaml", "YAML parse error"}},
		{name: "values file missing", files: map[string]string{"chart/Chart.yaml": minimalChart},
			opts: HelmOptions{ValuesFiles: []string{"values-prod.yaml"}}, want: []string{"chart/values-prod.yaml", "values file"}},
		{name: "values file outside the source", files: map[string]string{"chart/Chart.yaml": minimalChart},
			opts: HelmOptions{ValuesFiles: []string{"../../etc/passwd"}}, want: []string{"leaves the source"}},
		{name: "link out of the source", files: map[string]string{"chart/Chart.yaml": minimalChart},
			link: [2]string{"chart/files/passwd", "/etc/passwd"}, want: []string{"files/passwd", "outside the repository"}},
		{name: "chart that loops", files: map[string]string{
			"chart/Chart.yaml":        minimalChart,
			"chart/templates/cm.yaml": "{{ range until 200000 }}{{ range until 200000 }}{{ end }}{{ end }}\n",
		}, limit: true, want: []string{"CPU"}},
		{name: "chart that allocates", files: map[string]string{
			"chart/Chart.yaml":        minimalChart,
			"chart/templates/cm.yaml": "{{ $s := \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\" }}{{ range until 40 }}{{ $s = print $s $s }}{{ end }}{{ len $s }}\n",
		}, limit: true, cpu: time.Minute, want: []string{"memory"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := testenv.WriteFiles(t, tc.files)
			if tc.link[0] != "" {
				link := filepath.Join(root, filepath.FromSlash(tc.link[0]))
				if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(tc.link[1], link); err != nil {
					t.Fatal(err)
				}
			}
			limits := limits
			if tc.cpu > 0 {
				limits.CPU = tc.cpu
			}
			bundle, err := Render(t.Context(), Options{Root: root, Path: "chart", Helm: tc.opts, Limits: limits})
			if err == nil {
				t.Fatalf("rendered %d objects, want an error", len(bundle.Objects))
			}
			if errors.Is(err, ErrLimit) != tc.limit {
				t.Errorf("stopped by a limit: %v, want %v", errors.Is(err, ErrLimit), tc.limit)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
			if strings.Contains(err.Error(), root) {
				t.Errorf("error names the folder on disk:\n%v", err)
			}
		})
	}
}

// TestKustomizeHelmChartsMatchKubectl inflates a kustomization's helmCharts
// in-process and compares the result with `kubectl kustomize --enable-helm`
// running the Helm CLI of the same version: inline and additional values,
// CRDs, capabilities, and kustomize's own namespace and name prefix over
// the chart's objects.
func TestKustomizeHelmChartsMatchKubectl(t *testing.T) {
	kubectl, helm := kubectlBinary(t), helmBinary(t)
	root := t.TempDir()
	if err := os.CopyFS(filepath.Join(root, "app", "charts", "shop"), os.DirFS(filepath.Join("testdata", "helm", "shop"))); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"app/kustomization.yaml": `namespace: store
namePrefix: k-
resources: [extra.yaml]
helmCharts:
- name: shop
  releaseName: kshop
  valuesInline: {replicas: 4, cache: {enabled: false}}
  additionalValuesFiles: [values-extra.yaml]
  includeCRDs: true
  skipTests: true
  kubeVersion: v1.36.0
  apiVersions: [monitoring.coreos.com/v1/ServiceMonitor]
`,
		"app/extra.yaml":        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata:\n  a: b\n",
		"app/values-extra.yaml": "image: registry.example.com/shop:3.2\n",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(root, filepath.FromSlash(name)), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Render(t.Context(), Options{Root: root, Path: "app"}); err == nil || !strings.Contains(err.Error(), "--enable-helm") {
		t.Errorf("helmCharts without Helm enabled: %v, want an error naming --enable-helm", err)
	}
	bundle, err := Render(t.Context(), Options{Root: root, Path: "app", KustomizeHelm: true})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(kubectl, "kustomize", "--enable-helm", "--helm-command", helm, filepath.Join(root, "app"))
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("kubectl kustomize: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	want, err := decodeFile("kubectl", out)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(byRef(want), byRef(bundle.Objects)); diff != "" {
		t.Errorf("gitk8s differs from kubectl kustomize --enable-helm (-kubectl +gitk8s):\n%s", diff)
	}
	have := map[string]bool{}
	for _, o := range bundle.Objects {
		have[o.Ref()] = true
	}
	for _, ref := range []string{"Deployment/k-kshop-shop", "ServiceMonitor/k-kshop-shop", "CustomResourceDefinition/orders.shop.example.com", "ConfigMap/store/k-extra"} {
		if !have[ref] {
			t.Errorf("%s not rendered; have %v", ref, have)
		}
	}
	if have["StatefulSet/k-kshop-cache"] {
		t.Error("the dependency the inline values switched off was rendered")
	}
	entries, _ := os.ReadDir(filepath.Join(root, "app"))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".gitk8s") {
			t.Errorf("the render wrote %s into the source", e.Name())
		}
	}
}
