package render

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/loader/archive"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/ignore"
	release "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/strvals"
	"sigs.k8s.io/yaml"
)

// ChartFile marks a folder as a Helm chart.
const ChartFile = "Chart.yaml"

// DefaultKubeVersion is the Kubernetes version a chart is rendered for
// when no cluster is asked (gitk8s render and validate, or HelmOptions
// that set none): the version of the Kubernetes client gitk8s is built
// with.
const DefaultKubeVersion = "v1.37.0"

// DefaultReleaseName is the release name of a chart whose options name
// none: the chart's own name is used, and this only when that is empty.
const DefaultReleaseName = "release-name"

// HelmOptions are the inputs of a chart's render, as `helm template` takes
// them. The CLI's flags and a daemon sync's helm field fill the same
// struct.
type HelmOptions struct {
	// ReleaseName is .Release.Name; empty means the chart's name.
	ReleaseName string `json:"releaseName,omitempty"`
	// Namespace is .Release.Namespace; empty means "default".
	Namespace string `json:"namespace,omitempty"`
	// ValuesFiles are merged over the chart's values.yaml in order. Each
	// is relative to the chart's folder and must stay inside the source.
	ValuesFiles []string `json:"valuesFiles,omitempty"`
	// Values are merged over the values files.
	Values map[string]any `json:"values,omitempty"`
	// Set are key=value pairs in Helm's --set syntax, merged last.
	Set []string `json:"set,omitempty"`
	// KubeVersion is .Capabilities.KubeVersion; empty means
	// DefaultKubeVersion.
	KubeVersion string `json:"kubeVersion,omitempty"`
	// APIVersions are added to .Capabilities.APIVersions: group/version
	// and group/version/Kind, as the target cluster serves them.
	APIVersions []string `json:"apiVersions,omitempty"`
	// SkipCRDs leaves the chart's crds/ out, SkipHooks its hooks, as a
	// kustomization's helmCharts may ask (includeCRDs, skipHooks).
	SkipCRDs  bool `json:"skipCRDs,omitempty"`
	SkipHooks bool `json:"skipHooks,omitempty"`
}

// Check returns every problem of the options that is known before a chart
// is read.
func (o HelmOptions) Check() []error {
	var errs []error
	if o.KubeVersion != "" {
		if _, err := common.ParseKubeVersion(o.KubeVersion); err != nil {
			errs = append(errs, fmt.Errorf("helm kube version %q: %v; want a version such as v1.31.0", o.KubeVersion, err))
		}
	}
	for _, s := range o.Set {
		if err := strvals.ParseInto(s, map[string]any{}); err != nil {
			errs = append(errs, fmt.Errorf("helm set %q: %v", s, err))
		}
	}
	for _, f := range o.ValuesFiles {
		if f == "" || path.IsAbs(filepath.ToSlash(f)) {
			errs = append(errs, fmt.Errorf("helm values file %q must be a path inside the source, relative to the chart", f))
		}
	}
	return errs
}

// isChart reports whether dir (relative to root) holds a Chart.yaml.
func isChart(root, dir string) bool {
	info, err := os.Lstat(filepath.Join(root, dir, ChartFile))
	return err == nil && info.Mode().IsRegular()
}

// HasChart reports whether rendering opts would render a Helm chart: a
// folder under opts.Path, not inside a kustomization or ignored, holds a
// Chart.yaml, or a kustomization inflates helmCharts. It reads only names
// (and kustomization text), so a driver can ask before it renders whether
// the target cluster's capabilities are needed.
func HasChart(opts Options) bool {
	dirs, kustomizeHelm := findCharts(opts, true)
	return len(dirs) > 0 || kustomizeHelm
}

// ChartDirs are the chart folders (relative to opts.Root) a render of
// opts would render, in walk order; charts that kustomizations inflate
// are not among them.
func ChartDirs(opts Options) []string {
	dirs, _ := findCharts(opts, false)
	return dirs
}

// findCharts walks opts.Path as the render does, reading only names, for
// folders holding a Chart.yaml; kustomizeHelm says whether a kustomization
// under it inflates helmCharts (when opts.KustomizeHelm). With first it
// stops at the first of either.
func findCharts(opts Options, first bool) (dirs []string, kustomizeHelm bool) {
	if opts.JsonnetEntry != "" || opts.Files {
		return nil, false
	}
	ignore, _ := readIgnore(opts.Root)
	done := func() bool { return first && (len(dirs) > 0 || kustomizeHelm) }
	var walk func(dir string, depth int)
	walk = func(dir string, depth int) {
		if done() || depth > 64 {
			return
		}
		if file := kustomizationIn(opts.Root, dir); file != "" {
			// A kustomization may reach charts through helmCharts; its
			// text is enough to tell (the parent parses no repository
			// YAML).
			if opts.KustomizeHelm && !kustomizeHelm {
				kustomizeHelm = kustomizationsMention(opts.Root, dir, "helmCharts")
			}
			return
		}
		if isChart(opts.Root, dir) {
			dirs = append(dirs, dir)
			return
		}
		entries, err := os.ReadDir(filepath.Join(opts.Root, dir))
		if err != nil {
			return
		}
		for _, e := range entries {
			rel := path.Join(dir, e.Name())
			if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			if ignore != nil && ignore.Match(strings.Split(rel, "/"), true) {
				continue
			}
			walk(rel, depth+1)
		}
	}
	dir := path.Clean(filepath.ToSlash(opts.Path))
	if dir == "" || dir == "/" {
		dir = "."
	}
	if fs.ValidPath(dir) {
		walk(dir, 0)
	}
	return dirs, kustomizeHelm
}

// kustomizationsMention reports whether a kustomization file under dir
// holds word. It reads at most 1 MiB of each.
func kustomizationsMention(root, dir, word string) bool {
	found := false
	_ = filepath.WalkDir(filepath.Join(root, dir), func(p string, d fs.DirEntry, err error) error {
		if err != nil || found {
			return filepath.SkipDir
		}
		if d.IsDir() || !slices.Contains(kustomizationFiles, d.Name()) || !d.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return nil
		}
		defer f.Close()
		data, _ := io.ReadAll(io.LimitReader(f, 1<<20))
		found = bytes.Contains(data, []byte(word))
		return nil
	})
	return found
}

// maxChartBytes bounds the files of one chart, its subcharts included.
const maxChartBytes = 64 << 20

// loadChart reads the chart in dir as Helm's loader reads a chart folder
// (.helmignore honoured), but only regular files inside the source: a link
// is followed only where it stays inside. The archives, fetched by the
// driver from the repositories Chart.lock names, join the chart's charts/
// folder.
func loadChart(root, dir string, archives []string, decrypt *sopsReader) (*chart.Chart, error) {
	absRoot, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	disk := confinedFS{root: absRoot}
	top := filepath.Join(absRoot, filepath.FromSlash(dir))
	rules := ignore.Empty()
	if data, err := readConfined(root, path.Join(dir, ignore.HelmIgnore)); err == nil {
		if rules, err = ignore.Parse(bytes.NewReader(data)); err != nil {
			return nil, &Error{Source: Source{File: path.Join(dir, ignore.HelmIgnore)}, Err: err}
		}
	}
	rules.AddDefaults()
	var files []*archive.BufferedFile
	var total int64
	var walk func(rel string, depth int) error
	walk = func(rel string, depth int) error {
		if depth > 32 {
			return fmt.Errorf("%s: folders nested more than 32 deep", path.Join(dir, rel))
		}
		entries, err := os.ReadDir(filepath.Join(top, filepath.FromSlash(rel)))
		if err != nil {
			return err
		}
		for _, e := range entries {
			name := path.Join(rel, e.Name())
			abs := filepath.Join(top, filepath.FromSlash(name))
			if err := disk.inside(abs); err != nil {
				return err
			}
			info, err := os.Stat(abs)
			if err != nil {
				return fmt.Errorf("%s: %w", path.Join(dir, name), err)
			}
			if rules.Ignore(name, info) {
				continue
			}
			if info.IsDir() {
				if err := walk(name, depth+1); err != nil {
					return err
				}
				continue
			}
			if !info.Mode().IsRegular() {
				return fmt.Errorf("%s is not a regular file", path.Join(dir, name))
			}
			if total += info.Size(); total > maxChartBytes {
				return fmt.Errorf("the chart's files are more than %s; keep only the chart in its folder, or list the rest in .helmignore", byteSize(maxChartBytes))
			}
			data, err := os.ReadFile(abs)
			if err != nil {
				return err
			}
			if name == "values.yaml" && isSOPSFile(data) {
				// The chart's own values, encrypted: decrypted in memory,
				// never rendered as ciphertext.
				if data, err = decrypt.read(path.Join(dir, name), data); err != nil {
					return err
				}
			}
			files = append(files, &archive.BufferedFile{Name: name, ModTime: info.ModTime(), Data: bytes.TrimPrefix(data, []byte("\xEF\xBB\xBF"))})
		}
		return nil
	}
	if err := walk("", 0); err != nil {
		return nil, &Error{Source: Source{File: path.Join(dir, ChartFile)}, Err: fmt.Errorf("the chart cannot be read: %w", err)}
	}
	for _, a := range archives {
		data, err := readArchive(a, maxChartBytes-total)
		if err != nil {
			return nil, &Error{Source: Source{File: path.Join(dir, "Chart.lock")}, Err: fmt.Errorf("a fetched dependency cannot be read: %w", err)}
		}
		total += int64(len(data))
		files = append(files, &archive.BufferedFile{Name: "charts/" + filepath.Base(a), Data: data})
	}
	c, err := loader.LoadFiles(files)
	if err != nil {
		return nil, &Error{Source: Source{File: path.Join(dir, ChartFile)}, Err: fmt.Errorf("the chart cannot be loaded: %w", err)}
	}
	return c, nil
}

// readArchive reads a fetched dependency archive of at most limit bytes.
func readArchive(file string, limit int64) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("the chart and its dependencies are more than %s", byteSize(maxChartBytes))
	}
	return data, nil
}

// chartValues merges the values of opts as helm template does: values
// files in order, then the inline values, then --set pairs.
func chartValues(root, dir string, opts HelmOptions, decrypt *sopsReader) (map[string]any, error) {
	vals := map[string]any{}
	for _, f := range opts.ValuesFiles {
		file := path.Clean(path.Join(dir, filepath.ToSlash(f)))
		if !fs.ValidPath(file) {
			return nil, &Error{Source: Source{File: path.Join(dir, ChartFile)}, Err: fmt.Errorf("values file %q leaves the source; gitk8s reads only files inside it", f)}
		}
		data, err := readConfined(root, file)
		if err != nil {
			return nil, &Error{Source: Source{File: file}, Err: fmt.Errorf("values file: %w", unwrapPathError(err))}
		}
		if data, err = decrypt.read(file, data); err != nil {
			return nil, err
		}
		var m map[string]any
		if err := yaml.Unmarshal(data, &m); err != nil {
			return nil, &Error{Source: Source{File: file}, Err: fmt.Errorf("values file is not YAML: %w", err)}
		}
		vals = loader.MergeMaps(vals, m)
	}
	if len(opts.Values) > 0 {
		vals = loader.MergeMaps(vals, deepCopyMap(opts.Values))
	}
	for _, s := range opts.Set {
		if err := strvals.ParseInto(s, vals); err != nil {
			return nil, fmt.Errorf("helm set %q: %w", s, err)
		}
	}
	return vals, nil
}

func deepCopyMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			v = deepCopyMap(sub)
		}
		out[k] = v
	}
	return out
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// renderChart renders the chart in dir as `helm template --include-crds
// --skip-tests` would, and decodes its objects. Hooks other than tests are
// kept, with their annotations, for the apply stage to run as hooks. Each
// object's source is the template it came from, inside the chart's
// folder. Template evaluation happens here, in the renderer child, under
// its limits; nothing reaches the network or a cluster (lookup returns
// nothing, as in helm template).
func renderChart(ctx context.Context, root, dir string, opts HelmOptions, archives []string, sopsOpts SOPSOptions) ([]*Object, error) {
	chartSrc := Source{File: path.Join(dir, ChartFile)}
	decrypt := &sopsReader{opts: sopsOpts}
	c, err := loadChart(root, dir, archives, decrypt)
	if err != nil {
		return nil, err
	}
	if err := missingDependencies(c); err != nil {
		return nil, &Error{Source: chartSrc, Err: err}
	}
	vals, err := chartValues(root, dir, opts, decrypt)
	if err != nil {
		return nil, err
	}
	install := action.NewInstall(action.NewConfiguration(action.ConfigurationSetLogger(slog.DiscardHandler)))
	install.DryRunStrategy = action.DryRunClient
	install.Replace = true
	install.IncludeCRDs = !opts.SkipCRDs
	install.ReleaseName = opts.ReleaseName
	if install.ReleaseName == "" {
		install.ReleaseName = c.Name()
	}
	if install.ReleaseName == "" {
		install.ReleaseName = DefaultReleaseName
	}
	install.Namespace = opts.Namespace
	if install.Namespace == "" {
		install.Namespace = "default"
	}
	kubeVersion := opts.KubeVersion
	if kubeVersion == "" {
		kubeVersion = DefaultKubeVersion
	}
	if install.KubeVersion, err = common.ParseKubeVersion(kubeVersion); err != nil {
		return nil, fmt.Errorf("helm kube version %q: %w", kubeVersion, err)
	}
	install.APIVersions = common.VersionSet(opts.APIVersions)
	rel, err := runInstall(ctx, install, c, vals)
	if err != nil {
		decrypt.mu.Lock()
		hidden := append([]string(nil), decrypt.seen...)
		decrypt.mu.Unlock()
		return nil, chartError(dir, c.Name(), errors.New(redactSecretInputs(err.Error(), hidden)))
	}
	var objects []*Object
	var errs []error
	addManifest := func(sourceComment, manifest string) {
		file := chartFile(dir, c.Name(), sourceComment)
		objs, err := decodeFile(file, []byte(manifest))
		for _, o := range objs {
			o.Source.Line = 0 // a line of the rendered output is no line of the template
		}
		objects = append(objects, objs...)
		if err != nil {
			errs = append(errs, fmt.Errorf("the chart rendered something that is not an object (helm template shows the output): %w", err))
		}
	}
	for _, part := range splitRendered(rel.Manifest) {
		addManifest(part.source, part.body)
	}
	hooks := append([]*release.Hook(nil), rel.Hooks...)
	sort.SliceStable(hooks, func(i, j int) bool { return hooks[i].Path < hooks[j].Path })
	for _, h := range hooks {
		if isTestHook(h) || opts.SkipHooks {
			continue
		}
		addManifest(h.Path, h.Manifest)
	}
	if err := decrypt.checkHeld(path.Join(dir, ChartFile), objects); err != nil {
		errs = append(errs, err)
	}
	return objects, errors.Join(errs...)
}

// runInstall runs the client-only install and recovers a template that
// panics Helm.
func runInstall(ctx context.Context, install *action.Install, c *chart.Chart, vals map[string]any) (rel *release.Release, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("helm panicked rendering the chart: %v", r)
		}
	}()
	out, err := install.RunWithContext(ctx, c, vals)
	if err != nil {
		return nil, err
	}
	r, ok := out.(*release.Release)
	if !ok {
		return nil, fmt.Errorf("helm returned a release of type %T", out)
	}
	return r, nil
}

func isTestHook(h *release.Hook) bool {
	for _, e := range h.Events {
		if e == release.HookTest {
			return true
		}
	}
	return false
}

// missingDependencies names the dependencies Chart.yaml declares that are
// not in charts/ (helm template refuses them too).
func missingDependencies(c *chart.Chart) error {
	have := map[string]bool{}
	for _, sub := range c.Dependencies() {
		have[sub.Name()] = true
	}
	var missing []string
	for _, d := range c.Metadata.Dependencies {
		if d == nil || have[d.Name] {
			continue
		}
		missing = append(missing, d.Name)
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("dependencies %s are not in the chart's charts/ folder; run helm dependency build and commit charts/", strings.Join(missing, ", "))
}

// renderedPart is one template's output in a release manifest.
type renderedPart struct{ source, body string }

// splitRendered cuts a release manifest at its "# Source:" comments.
func splitRendered(manifest string) []renderedPart {
	var parts []renderedPart
	var cur *renderedPart
	for _, line := range strings.SplitAfter(manifest, "\n") {
		if s, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "# Source: "); ok {
			parts = append(parts, renderedPart{source: s})
			cur = &parts[len(parts)-1]
			continue
		}
		if cur == nil {
			parts = append(parts, renderedPart{})
			cur = &parts[len(parts)-1]
		}
		cur.body += line
	}
	return parts
}

// chartFile turns a template path as Helm names it (chartname/templates/x)
// into the file in the source.
func chartFile(dir, chartName, helmPath string) string {
	if helmPath == "" {
		return path.Join(dir, ChartFile)
	}
	_, rest, ok := strings.Cut(helmPath, "/")
	if !ok {
		rest = helmPath
	}
	return path.Join(dir, rest)
}

// chartError says which template of the chart failed, when Helm names
// one ("app/templates/x.yaml:12:3", "execution error at
// (app/templates/x.yaml:1:3)", "YAML parse error on app/templates/x.yaml").
func chartError(dir, chartName string, err error) error {
	msg := err.Error()
	src := Source{File: path.Join(dir, ChartFile)}
	where := regexp.MustCompile(`(?:^|[\s(])(` + regexp.QuoteMeta(chartName) + `/[^\s:()]+)(?::(\d+))?`)
	if m := where.FindStringSubmatch(msg); m != nil {
		src.File = chartFile(dir, chartName, m[1])
		if m[2] != "" {
			src.Line, _ = strconv.Atoi(m[2])
		}
	}
	return &Error{Source: src, Err: fmt.Errorf("helm template failed: %s", msg)}
}
