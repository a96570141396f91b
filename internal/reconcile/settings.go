package reconcile

import (
	"context"
	"fmt"
	"path"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/chartdeps"
	"github.com/gitk8s/gitk8s/internal/policy"
	"github.com/gitk8s/gitk8s/internal/render"
	"github.com/gitk8s/gitk8s/internal/source"
)

// Settings are everything about a sync that changes what is applied,
// other than its source and clusters. The CLI's flags and a daemon sync's
// fields fill the same struct (docs/settings.md lists both side by side),
// and Validate checks it the same way for both.
type Settings struct {
	// Render says how the snapshot's folder is rendered.
	Render RenderSettings
	// Namespace, when set, is where namespaced objects without a namespace
	// go, instead of the cluster's default namespace.
	Namespace string
	// Inventory names the ApplySet parent; empty fields take their
	// defaults (see InventoryName).
	Inventory InventorySettings
	// Prune deletes inventory members that are no longer rendered.
	Prune bool
	// AllowDestructivePrune lets a prune delete Namespaces, CRDs,
	// PersistentVolumes and claims, or more than half of the inventory.
	AllowDestructivePrune bool
	// PruneTimeout bounds the wait for each pruned object to be gone.
	PruneTimeout time.Duration
	// ForceConflicts takes over fields other managers own (each is
	// reported); without it such fields fail the object.
	ForceConflicts bool
	// Concurrency bounds requests in flight per cluster.
	Concurrency int
	// Wait, when set, waits this long for every object to be healthy.
	Wait time.Duration
	// ClusterTimeout is the deadline of each cluster's part of a run.
	ClusterTimeout time.Duration
	// Policy is the policy gate.
	Policy PolicySettings
}

// RenderSettings are the render options that are not the snapshot's.
type RenderSettings struct {
	// AllowRemoteBases lets kustomizations load remote bases.
	AllowRemoteBases bool
	// JsonnetEntry is the one .jsonnet file (relative to the rendered
	// folder) to evaluate instead of walking the folder.
	JsonnetEntry string
	// TLAs and ExtVars are jsonnet's top-level arguments and external
	// variables, as strings.
	TLAs    map[string]string
	ExtVars map[string]string
	// JsonnetLibs are library folders inside the source.
	JsonnetLibs []string
	// KustomizeHelm lets kustomizations inflate their helmCharts.
	KustomizeHelm bool
	// Helm are the inputs of the Helm charts the source holds. A run
	// fills what they leave empty: the release namespace from Namespace,
	// the Kubernetes version and API versions from the sync's first
	// cluster that answers.
	Helm render.HelmOptions
	// Limits bound the render (zero fields: render.DefaultLimits).
	Limits render.Limits
	// ChartRepositories are the repositories the charts' Chart.lock files
	// may fetch dependencies from, with their credentials; a dependency
	// from any other is refused (vendor it in charts/ instead).
	ChartRepositories []chartdeps.Repository
	// SOPS holds the age keys that files encrypted with SOPS are decrypted
	// with, in the renderer only; without keys an encrypted file fails
	// the render.
	SOPS render.SOPSOptions
	// Charts fetches and caches those dependencies. It is the driver's, not
	// a setting of what is applied: nil refuses every dependency to fetch.
	Charts *chartdeps.Fetcher
}

// InventorySettings name the ApplySet parent Secret of a sync.
type InventorySettings struct {
	// Name defaults to InventoryName of the sync's name.
	Name string
	// Namespace defaults to apply.DefaultInventoryNamespace.
	Namespace string
	// Adopt names earlier parents (same namespace) whose members this
	// inventory takes over: an object applied under one of them is a
	// member of this one from the next apply on, and the earlier parent is
	// deleted once it has no members left. A sync that moved from the CLI
	// to the daemon adopts the inventory the CLI named after its source.
	Adopt []string
}

// PolicySettings are the policy gate of a sync.
type PolicySettings struct {
	// Off skips the gate: no built-in rule and no admission policy runs.
	Off bool
	// Settings are the built-in rules' modes and exclusions.
	policy.Settings
	// Dirs are the repository's folders of admission policies; empty means
	// policies/ when it exists. A folder named here must exist.
	Dirs []string
}

// DefaultSettings are the settings of a sync that says nothing more.
func DefaultSettings() Settings {
	opts := apply.DefaultOptions()
	return Settings{
		ForceConflicts: opts.ForceConflicts,
		Concurrency:    opts.Concurrency,
		PruneTimeout:   opts.PruneTimeout,
		ClusterTimeout: 10 * time.Minute,
	}
}

// Validate returns every problem of the settings, each naming its field
// as the Settings name it; the drivers prefix where it was set.
func (s Settings) Validate() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if s.Namespace != "" {
		if msgs := validation.IsDNS1123Label(s.Namespace); len(msgs) > 0 {
			bad("namespace %q: %s", s.Namespace, strings.Join(msgs, "; "))
		}
	}
	if n := s.Inventory.Name; n != "" {
		if msgs := validation.IsDNS1123Subdomain(n); len(msgs) > 0 {
			bad("inventory name %q: %s", n, strings.Join(msgs, "; "))
		}
	}
	if n := s.Inventory.Namespace; n != "" {
		if msgs := validation.IsDNS1123Label(n); len(msgs) > 0 {
			bad("inventory namespace %q: %s", n, strings.Join(msgs, "; "))
		}
	}
	if s.PruneTimeout < 0 || s.Wait < 0 || s.ClusterTimeout < 0 {
		bad("prune timeout, wait and cluster timeout must not be negative")
	}
	if s.Concurrency < 0 {
		bad("concurrency must not be negative")
	}
	if l := s.Render.Limits; l.Memory < 0 || l.CPU < 0 || l.Timeout < 0 || l.Output < 0 {
		bad("render limits must not be negative")
	}
	if e := s.Render.JsonnetEntry; e != "" && !insideSource(e) {
		bad("jsonnet entry %q must be a file inside the source", e)
	}
	for _, dir := range s.Render.JsonnetLibs {
		if !insideSource(dir) {
			bad("jsonnet library %q must be a folder inside the source", dir)
		}
	}
	for _, err := range s.Render.Helm.Check() {
		bad("%v", err)
	}
	if !s.Policy.Off {
		if _, perrs := s.Policy.Settings.Config(); len(perrs) > 0 {
			for _, err := range perrs {
				bad("policies: %v", err)
			}
		}
		for _, dir := range s.Policy.Dirs {
			if !insideSource(dir) {
				bad("policies: dirs: %q must be a folder inside the repository", dir)
			}
		}
	}
	return errs
}

func insideSource(p string) bool {
	clean := path.Clean(p)
	return p != "" && !path.IsAbs(clean) && clean != ".." && !strings.HasPrefix(clean, "../")
}

// Options are the render options for a snapshot.
func (r RenderSettings) Options(snap *source.Snapshot) render.Options {
	return render.Options{
		Root: snap.Root, Path: snap.Path, Boundary: snap.Boundary, Files: snap.Files,
		AllowRemoteBases: r.AllowRemoteBases,
		JsonnetEntry:     r.JsonnetEntry,
		Jsonnet:          render.JsonnetOptions{TLAs: r.TLAs, ExtVars: r.ExtVars, LibPaths: r.JsonnetLibs},
		Helm:             r.Helm,
		KustomizeHelm:    r.KustomizeHelm,
		Limits:           r.Limits,
		SOPS:             r.SOPS,
	}
}

// Render renders a snapshot as every command and the daemon do: the
// dependencies its charts' Chart.lock files pin are fetched first, from
// the allowed repositories, into the Fetcher's cache; then the renderer
// child renders, and it never reaches the network for them. A fetch that
// failed on the network wraps chartdeps.ErrUnavailable.
func (r RenderSettings) Render(ctx context.Context, opts render.Options) (*render.Bundle, error) {
	if dirs := render.ChartDirs(opts); len(dirs) > 0 {
		archives, err := r.Charts.Fetch(ctx, opts.Root, dirs, r.ChartRepositories)
		if err != nil {
			return nil, err
		}
		opts.ChartArchives = archives
	}
	return render.Render(ctx, opts)
}

// applyOptions are the apply options of one run of a sync.
func (s Settings) applyOptions(name string, dryRun bool, memory apply.Memory) apply.Options {
	opts := apply.DefaultOptions()
	opts.ForceConflicts = s.ForceConflicts
	if s.Concurrency > 0 {
		opts.Concurrency = s.Concurrency
	}
	opts.Prune = s.Prune
	opts.AllowDestructivePrune = s.AllowDestructivePrune
	if s.PruneTimeout > 0 {
		opts.PruneTimeout = s.PruneTimeout
	}
	opts.Wait = s.Wait
	opts.DryRun = dryRun
	opts.Memory = memory
	opts.Inventory = s.InventoryOf(name)
	return opts
}

// InventoryOf is the ApplySet parent of the sync with this name under
// these settings, defaults filled in.
func (s Settings) InventoryOf(syncName string) apply.InventoryOptions {
	inv := apply.InventoryOptions{Name: s.Inventory.Name, Namespace: s.Inventory.Namespace, Adopt: s.Inventory.Adopt}
	if inv.Name == "" {
		inv.Name = InventoryName(syncName)
	}
	if inv.Namespace == "" {
		inv.Namespace = apply.DefaultInventoryNamespace
	}
	return inv
}
