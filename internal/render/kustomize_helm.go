package render

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"sigs.k8s.io/kustomize/api/konfig"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/yaml"
)

// Kustomize inflates a kustomization's helmCharts by running the helm
// binary; gitk8s has none to run and would not run one on a repository's
// say. So before the build, every kustomization reachable from the built
// folder that lists helmCharts is inflated here, with the same in-process
// renderer as a chart folder: each chart's objects become a generated file
// beside the kustomization, and the kustomization kustomize reads lists
// those files among its resources instead of its helmCharts. Nothing is
// written to disk: the generated files and the rewritten kustomizations
// are an overlay of the confined file system kustomize builds from.

// kustomizeHelmFields are the parts of a kustomization that name charts.
type kustomizeHelmFields struct {
	HelmGlobals *types.HelmGlobals `json:"helmGlobals,omitempty"`
	HelmCharts  []types.HelmChart  `json:"helmCharts,omitempty"`
}

// inflateHelmCharts returns the overlay (absolute path → content) that
// replaces the helmCharts of every kustomization reachable from dir, or
// nil when none lists any.
func inflateHelmCharts(ctx context.Context, root, absRoot, dir string, opts Options) (map[string][]byte, error) {
	overlay := map[string][]byte{}
	err := visitKustomizations(root, dir, func(kdir, file string, data []byte, k *kustomizationRefs) error {
		if len(k.HelmCharts) == 0 {
			return nil
		}
		if !opts.KustomizeHelm {
			return &Error{Source: Source{File: file}, Err: errors.New("helmCharts: Helm is off for kustomizations of this sync; enable it (--enable-helm on the command line, enableHelm in a daemon sync's source) to render the charts in-process, or render the chart into the repository and list the output in resources")}
		}
		var fields kustomizeHelmFields
		if err := yaml.Unmarshal(data, &fields); err != nil {
			return &Error{Source: Source{File: file}, Err: fmt.Errorf("helmCharts: %w", err)}
		}
		var raw map[string]any
		if err := yaml.Unmarshal(data, &raw); err != nil {
			return &Error{Source: Source{File: file}, Err: err}
		}
		resources, _ := raw["resources"].([]any)
		for i, hc := range fields.HelmCharts {
			objs, err := inflateOne(ctx, root, kdir, file, fields.HelmGlobals, hc, opts)
			if err != nil {
				return err
			}
			var out []byte
			for _, o := range objs {
				// As kustomize marks what helm generated: its namespace
				// transformer leaves such objects to the chart, and the
				// mark is gone from the build's output.
				annotations := o.Object.GetAnnotations()
				if annotations == nil {
					annotations = map[string]string{}
				}
				annotations[konfig.HelmGeneratedAnnotation] = "true"
				o.Object.SetAnnotations(annotations)
				doc, err := yaml.Marshal(o.Object.Object)
				if err != nil {
					return &Error{Source: Source{File: file}, Err: err}
				}
				out = append(append(out, "---\n"...), doc...)
			}
			name := fmt.Sprintf(".gitk8s-helmchart-%d-%s.yaml", i, hc.Name)
			overlay[filepath.Join(absRoot, filepath.FromSlash(path.Join(kdir, name)))] = out
			resources = append(resources, name)
		}
		delete(raw, "helmCharts")
		delete(raw, "helmGlobals")
		delete(raw, "helmChartInflationGenerator")
		raw["resources"] = resources
		rewritten, err := yaml.Marshal(raw)
		if err != nil {
			return &Error{Source: Source{File: file}, Err: err}
		}
		overlay[filepath.Join(absRoot, filepath.FromSlash(file))] = rewritten
		return nil
	})
	if err != nil || len(overlay) == 0 {
		return nil, err
	}
	return overlay, nil
}

// inflateOne renders one entry of helmCharts as kustomize's generator
// would have helm render it.
func inflateOne(ctx context.Context, root, kdir, file string, globals *types.HelmGlobals, hc types.HelmChart, opts Options) ([]*Object, error) {
	bad := func(format string, args ...any) error {
		return &Error{Source: Source{File: file}, Err: fmt.Errorf("helmCharts %s: "+format, append([]any{hc.Name}, args...)...)}
	}
	if hc.Name == "" || strings.ContainsAny(hc.Name, `/\`) || strings.HasPrefix(hc.Name, ".") {
		return nil, bad("name must be a chart's folder name")
	}
	home := types.HelmDefaultHome
	if globals != nil && globals.ChartHome != "" {
		home = globals.ChartHome
	}
	if hc.Version != "" && hc.Repo != "" {
		home = path.Join(home, hc.Name+"-"+hc.Version)
	}
	chartDir := path.Clean(path.Join(kdir, filepath.ToSlash(home), hc.Name))
	if !fs.ValidPath(chartDir) {
		return nil, bad("the chart home %q leaves the source; gitk8s reads only files inside it", home)
	}
	if !isChart(root, chartDir) {
		if hc.Repo != "" {
			return nil, bad("the chart is not in %s and gitk8s does not pull from %s while rendering; vendor it (helm pull %s --repo %s --version %s --untar --untardir %s) and commit it", chartDir, hc.Repo, hc.Name, hc.Repo, hc.Version, path.Dir(chartDir))
		}
		return nil, bad("no chart at %s (no Chart.yaml there)", chartDir)
	}
	h := opts.Helm
	h.ReleaseName, h.Namespace = hc.ReleaseName, hc.Namespace
	if h.Namespace == "" {
		h.Namespace = opts.Helm.Namespace
	}
	h.Set = nil
	h.ValuesFiles = nil
	// Files are named relative to the kustomization; the chart renderer
	// takes them relative to the chart.
	fromChart := func(f string) string {
		rel, err := filepath.Rel(filepath.FromSlash(chartDir), filepath.FromSlash(path.Join(kdir, filepath.ToSlash(f))))
		if err != nil {
			return f
		}
		return filepath.ToSlash(rel)
	}
	switch hc.ValuesMerge {
	case "", "override", "merge":
		if hc.ValuesFile != "" {
			h.ValuesFiles = append(h.ValuesFiles, fromChart(hc.ValuesFile))
		}
		h.Values = hc.ValuesInline
	case "replace":
		h.Values = hc.ValuesInline
	default:
		return nil, bad("valuesMerge must be override, merge or replace, not %q", hc.ValuesMerge)
	}
	for _, f := range hc.AdditionalValuesFiles {
		h.ValuesFiles = append(h.ValuesFiles, fromChart(f))
	}
	if hc.KubeVersion != "" {
		h.KubeVersion = hc.KubeVersion
	}
	h.APIVersions = append(append([]string(nil), opts.Helm.APIVersions...), hc.ApiVersions...)
	h.SkipCRDs = !hc.IncludeCRDs
	h.SkipHooks = hc.SkipHooks
	if _, err := os.Stat(filepath.Join(root, chartDir)); err != nil {
		return nil, bad("%v", err)
	}
	return renderChart(ctx, root, chartDir, h, opts.ChartArchives[chartDir], opts.SOPS)
}
