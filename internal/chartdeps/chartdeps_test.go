package chartdeps_test

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gitk8s/gitk8s/internal/chartdeps"
	"github.com/gitk8s/gitk8s/internal/render"
	"github.com/gitk8s/gitk8s/internal/source"
	"github.com/gitk8s/gitk8s/internal/testenv"
	"github.com/gitk8s/gitk8s/internal/testenv/chartrepo"
)

// copyDir copies a folder of test data.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if info.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// byRef is objects as maps, sorted by what they name.
func byRef(objs []*render.Object) []map[string]any {
	sorted := append([]*render.Object(nil), objs...)
	sort.SliceStable(sorted, func(i, j int) bool {
		return sorted[i].Object.GetAPIVersion()+sorted[i].Ref() < sorted[j].Object.GetAPIVersion()+sorted[j].Ref()
	})
	out := make([]map[string]any, len(sorted))
	for i, o := range sorted {
		out[i] = o.Object.Object
	}
	return out
}

// helmTemplate renders the chart folder (dependencies in its charts/) with
// the Helm CLI.
func helmTemplate(t *testing.T, chartDir, release, namespace string) []*render.Object {
	t.Helper()
	out := chartrepo.RunHelm(t, t.TempDir(), "template", release, chartDir, "--namespace", namespace,
		"--include-crds", "--skip-tests", "--kube-version", render.DefaultKubeVersion)
	objs, err := render.Decode("helm", []byte(out))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// lockedChart is a chart whose dependency comes from a repository: the
// test data's shop chart with its vendored cache subchart published to a
// repository instead. helm dependency update, run against the repository,
// wrote Chart.lock; want is helm template's output with the dependency
// helm fetched, and the chart in root has no charts/ folder.
func lockedChart(t *testing.T, repoURL string, publish func(chartDir string), update []string) (root string, want []*render.Object) {
	t.Helper()
	work := t.TempDir()
	copyDir(t, filepath.Join("..", "render", "testdata", "helm", "shop"), filepath.Join(work, "shop"))
	publish(filepath.Join(work, "shop", "charts", "cache"))
	if err := os.RemoveAll(filepath.Join(work, "shop", "charts")); err != nil {
		t.Fatal(err)
	}
	chartYAML := filepath.Join(work, "shop", "Chart.yaml")
	data, err := os.ReadFile(chartYAML)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(chartYAML, []byte(strings.Replace(string(data), "    version: 0.3.0\n", "    version: 0.3.0\n    repository: "+repoURL+"\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	for _, args := range update {
		chartrepo.RunHelm(t, home, strings.Fields(strings.ReplaceAll(args, "CHART", filepath.Join(work, "shop")))...)
	}
	if _, err := os.Stat(filepath.Join(work, "shop", "Chart.lock")); err != nil {
		t.Fatalf("helm dependency update wrote no Chart.lock: %v", err)
	}
	want = helmTemplate(t, filepath.Join(work, "shop"), "shop", "store")
	root = t.TempDir()
	copyDir(t, filepath.Join(work, "shop"), filepath.Join(root, "shop"))
	if err := os.RemoveAll(filepath.Join(root, "shop", "charts")); err != nil {
		t.Fatal(err)
	}
	return root, want
}

// renderWith fetches the chart's dependencies with f and renders it.
func renderWith(t *testing.T, f *chartdeps.Fetcher, root string, repos []chartdeps.Repository) (*render.Bundle, error) {
	t.Helper()
	opts := render.Options{Root: root, Path: "shop", Helm: render.HelmOptions{ReleaseName: "shop", Namespace: "store"}}
	archives, err := f.Fetch(t.Context(), root, render.ChartDirs(opts), repos)
	if err != nil {
		return nil, err
	}
	opts.ChartArchives = archives
	return render.Render(t.Context(), opts)
}

// TestChartRepository: a dependency Chart.lock pins in a chart repository
// (index.yaml over HTTP on loopback, with basic auth) is fetched, checked
// against the index's digest and rendered exactly as helm template renders
// the chart after helm dependency update. A second render costs one
// conditional request for the index and fetches no archive.
func TestChartRepository(t *testing.T) {
	repo := chartrepo.NewServer(t)
	root, want := lockedChart(t, repo.URL, func(dir string) { repo.Publish(t, dir) },
		[]string{"repo add stable " + repo.URL + " --username charts --password s3cret-index", "dependency update CHART"})
	repo.RequireAuth("charts", "s3cret-index")
	allowed := []chartdeps.Repository{{URL: repo.URL, Auth: source.Auth{Username: "charts", Password: "s3cret-index"}}}
	f := chartdeps.NewFetcher(t.TempDir())

	before := repo.Requests()
	bundle, err := renderWith(t, f, root, allowed)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(byRef(want), byRef(bundle.Objects)); diff != "" {
		t.Errorf("gitk8s differs from helm template after helm dependency update (-helm +gitk8s):\n%s", diff)
	}
	if got := repo.Requests() - before; got != 2 {
		t.Errorf("the first render made %d requests, want 2 (the index and the archive): %v", got, repo.Paths())
	}
	have := map[string]bool{}
	for _, o := range bundle.Objects {
		have[o.Ref()] = true
	}
	if !have["StatefulSet/shop-cache"] || !have["ConfigMap/shop-metrics"] {
		t.Errorf("the dependency's objects (and its own vendored subchart's) are missing: %v", have)
	}

	before = repo.Requests()
	if _, err := renderWith(t, f, root, allowed); err != nil {
		t.Fatal(err)
	}
	if got := repo.Requests() - before; got != 1 {
		t.Errorf("a render with nothing changed made %d requests, want 1 (a conditional GET of the index): %v", got, repo.Paths()[before:])
	}

	t.Run("credentials refused", func(t *testing.T) {
		wrong := []chartdeps.Repository{{URL: repo.URL, Auth: source.Auth{Username: "charts", Password: "not-the-password"}}}
		_, err := renderWith(t, chartdeps.NewFetcher(t.TempDir()), root, wrong)
		t.Log(err)
		if err == nil || !strings.Contains(err.Error(), "shop/Chart.lock") || !strings.Contains(err.Error(), "refused the credentials") {
			t.Fatalf("want an error naming shop/Chart.lock and the refused credentials, got %v", err)
		}
		if strings.Contains(err.Error(), "not-the-password") {
			t.Errorf("the error shows the password: %v", err)
		}
	})

	t.Run("repository not allowed", func(t *testing.T) {
		before := repo.Requests()
		_, err := renderWith(t, chartdeps.NewFetcher(t.TempDir()), root, []chartdeps.Repository{{URL: "https://charts.example.com"}})
		t.Log(err)
		if err == nil || !strings.Contains(err.Error(), "shop/Chart.lock") || !strings.Contains(err.Error(), "--helm-repo") || !strings.Contains(err.Error(), "cache 0.3.0") {
			t.Fatalf("want an error naming shop/Chart.lock, the dependency and --helm-repo, got %v", err)
		}
		if repo.Requests() != before {
			t.Errorf("a refused repository was asked anyway")
		}
	})

	t.Run("archive altered", func(t *testing.T) {
		archives, _ := filepath.Glob(filepath.Join(repo.Dir, "cache-*.tgz"))
		if len(archives) != 1 {
			t.Fatalf("archives %v", archives)
		}
		good, err := os.ReadFile(archives[0])
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.WriteFile(archives[0], good, 0o644) })
		bad := append([]byte(nil), good...)
		bad[len(bad)/2] ^= 0xff
		if err := os.WriteFile(archives[0], bad, 0o644); err != nil {
			t.Fatal(err)
		}
		cache := t.TempDir()
		_, err = renderWith(t, chartdeps.NewFetcher(cache), root, allowed)
		t.Log(err)
		if err == nil || !strings.Contains(err.Error(), "digest") || !strings.Contains(err.Error(), "not used") {
			t.Fatalf("want an error saying the digest does not match, got %v", err)
		}
		if kept, _ := filepath.Glob(filepath.Join(cache, "sha256", "*", "*.tgz")); len(kept) > 0 {
			t.Errorf("an altered archive was cached: %v", kept)
		}
	})

	t.Run("repository unreachable", func(t *testing.T) {
		gone := chartrepo.NewServer(t)
		url := gone.URL
		rootGone, _ := lockedChart(t, url, func(dir string) { gone.Publish(t, dir) },
			[]string{"repo add gone " + url, "dependency update CHART"})
		gone.Close()
		_, err := renderWith(t, chartdeps.NewFetcher(t.TempDir()), rootGone, []chartdeps.Repository{{URL: url}})
		t.Log(err)
		if !errors.Is(err, chartdeps.ErrUnavailable) || !strings.Contains(err.Error(), "shop/Chart.lock") {
			t.Fatalf("want an unavailable error naming shop/Chart.lock, got %v", err)
		}
	})
}

// TestOCIRegistry: a dependency Chart.lock pins in an OCI registry (the
// distribution registry on loopback, with htpasswd auth) is fetched and
// verified by its layer digest, and renders as helm template renders it;
// a second render fetches no blob; a missing tag and refused credentials
// are errors that say so.
func TestOCIRegistry(t *testing.T) {
	reg := chartrepo.NewRegistry(t, "pusher", "oci-s3cret")
	repoURL := reg.URL("charts")
	root, want := lockedChart(t, repoURL, func(dir string) { reg.Push(t, dir, "charts") },
		[]string{"dependency update CHART --plain-http --username pusher --password oci-s3cret"})
	allowed := []chartdeps.Repository{{URL: "oci://" + reg.Host, Auth: source.Auth{Username: "pusher", Password: "oci-s3cret"}}}
	f := chartdeps.NewFetcher(t.TempDir())
	bundle, err := renderWith(t, f, root, allowed)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(byRef(want), byRef(bundle.Objects)); diff != "" {
		t.Errorf("gitk8s differs from helm template after helm dependency update (-helm +gitk8s):\n%s", diff)
	}
	before := len(reg.Requests())
	if _, err := renderWith(t, f, root, allowed); err != nil {
		t.Fatal(err)
	}
	for _, r := range reg.Requests()[before:] {
		if strings.Contains(r, "/blobs/") {
			t.Errorf("a render with nothing changed fetched a blob: %s", r)
		}
	}

	t.Run("credentials refused", func(t *testing.T) {
		wrong := []chartdeps.Repository{{URL: "oci://" + reg.Host, Auth: source.Auth{Username: "pusher", Password: "wrong-oci"}}}
		_, err := renderWith(t, chartdeps.NewFetcher(t.TempDir()), root, wrong)
		t.Log(err)
		if err == nil || !strings.Contains(err.Error(), "shop/Chart.lock") || !strings.Contains(err.Error(), "refused the credentials") {
			t.Fatalf("want an error naming shop/Chart.lock and the refused credentials, got %v", err)
		}
		if strings.Contains(err.Error(), "wrong-oci") {
			t.Errorf("the error shows the password: %v", err)
		}
	})

	t.Run("tag deleted", func(t *testing.T) {
		reg.Delete(t, "charts/cache", "0.3.0")
		_, err := renderWith(t, chartdeps.NewFetcher(t.TempDir()), root, allowed)
		t.Log(err)
		if err == nil || !strings.Contains(err.Error(), "shop/Chart.lock") || !strings.Contains(err.Error(), "not in the registry") {
			t.Fatalf("want an error naming shop/Chart.lock and the missing tag, got %v", err)
		}
	})
}

// TestLockProblems: a dependency to fetch without Chart.lock, a lock out
// of sync with Chart.yaml, a repository alias and a lock too large are
// each an error naming the file and the fix, before any request.
func TestLockProblems(t *testing.T) {
	chart := "apiVersion: v2\nname: app\nversion: 1.0.0\ndependencies:\n  - name: redis\n    version: 1.2.3\n    repository: https://charts.example.com\n"
	cases := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"no lock", map[string]string{"app/Chart.yaml": chart},
			[]string{"app/Chart.yaml", "no Chart.lock", "helm dependency update"}},
		{"lock out of sync", map[string]string{"app/Chart.yaml": chart,
			"app/Chart.lock": "dependencies:\n- name: redis\n  repository: https://charts.example.com\n  version: 1.2.3\ndigest: sha256:0000\n"},
			[]string{"app/Chart.lock", "out of sync", "helm dependency update"}},
		{"alias", map[string]string{"app/Chart.yaml": strings.Replace(chart, "https://charts.example.com", "\"@bitnami\"", 1)},
			[]string{"app/Chart.yaml", "alias", "URL"}},
		{"lock too large", map[string]string{"app/Chart.yaml": chart, "app/Chart.lock": "# " + strings.Repeat("x", 2<<20) + "\n"},
			[]string{"app/Chart.lock", "larger than"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := testenv.WriteFiles(t, tc.files)
			_, err := chartdeps.NewFetcher(t.TempDir()).Fetch(t.Context(), root, []string{"app"}, []chartdeps.Repository{{URL: "https://"}})
			if err == nil {
				t.Fatal("no error")
			}
			t.Log(err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}

	t.Run("vendored needs nothing", func(t *testing.T) {
		root := testenv.WriteFiles(t, map[string]string{"app/Chart.yaml": chart, "app/charts/redis/Chart.yaml": "apiVersion: v2\nname: redis\nversion: 1.2.3\n"})
		got, err := chartdeps.NewFetcher("").Fetch(t.Context(), root, []string{"app"}, nil)
		if err != nil || len(got) != 0 {
			t.Fatalf("a vendored dependency: got %v, %v; want nothing to fetch", got, err)
		}
	})
}
