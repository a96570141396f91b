package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/daemon"
	"github.com/gitk8s/gitk8s/internal/reconcile"
	"github.com/gitk8s/gitk8s/internal/source"
)

// syncOptions are the flags apply and diff share: what to read, which
// sync and inventory it belongs to, and how to apply and prune. They fill
// a reconcile.Request, or, with --config, name the daemon's sync whose
// request is used as the daemon builds it.
type syncOptions struct {
	src                   sourceOptions
	syncName              string
	configFile            string
	namespace             string
	inventory             string
	inventoryNamespace    string
	prune                 bool
	allowDestructivePrune bool
	pruneTimeout          time.Duration
	forceConflicts        bool
	concurrency           int
	noMemory              bool
	policy                policyOptions
}

// settingFlags are the flags that change what is applied; with --config
// the daemon's configuration decides them all.
var settingFlags = []string{"allow-remote-bases", "jsonnet-entry", "tla", "ext-str", "jsonnet-lib", "path",
	"enable-helm", "release-name", "release-namespace", "values", "set", "kube-version", "api-versions",
	"render-memory", "render-cpu", "render-timeout", "render-output", "helm-repo", "verify-key", "oci-plain-http", "skip-crds", "skip-hooks",
	"namespace", "inventory", "inventory-namespace", "prune", "allow-destructive-prune", "prune-timeout", "force-conflicts",
	"concurrency", "policy", "policy-builtin", "policy-dir", "policy-exclude-namespace", "no-policy", "wait",
	"context", "clusters", "selector", "cluster-timeout"}

func (o *syncOptions) addFlags(cmd *cobra.Command, pruneDefault bool) {
	o.src.addFlags(cmd)
	defaults := reconcile.DefaultSettings()
	cmd.Flags().StringVar(&o.syncName, "sync", "", "name of the sync: its inventory is gitk8s-<name> (default: the name of SRC and --path); with --config, the daemon's sync to predict")
	cmd.Flags().StringVar(&o.configFile, "config", "", "the daemon's configuration file: plan exactly what the daemon's next reconcile of --sync will do, with its settings, inventory and clusters, reading SRC instead of its remote")
	cmd.Flags().StringVarP(&o.namespace, "namespace", "n", "", "namespace of namespaced objects that name none (default: the context's namespace)")
	cmd.Flags().StringVar(&o.inventory, "inventory", "", "name of the ApplySet parent Secret that records what this sync applied (default: gitk8s-<sync>)")
	cmd.Flags().StringVar(&o.inventoryNamespace, "inventory-namespace", apply.DefaultInventoryNamespace, "namespace of the inventory Secret")
	cmd.Flags().BoolVar(&o.prune, "prune", pruneDefault, "delete objects of the inventory that are no longer rendered")
	cmd.Flags().BoolVar(&o.allowDestructivePrune, "allow-destructive-prune", false, "let a prune delete Namespaces, CRDs, PersistentVolumes and claims, or more than half of the inventory")
	cmd.Flags().DurationVar(&o.pruneTimeout, "prune-timeout", defaults.PruneTimeout, "how long to wait for each pruned object to be gone; one still there (a finalizer holds it) stays in the inventory")
	cmd.Flags().BoolVar(&o.forceConflicts, "force-conflicts", defaults.ForceConflicts, "take over fields other field managers own (each is reported); false makes them errors")
	cmd.Flags().IntVar(&o.concurrency, "concurrency", 0, fmt.Sprintf("requests in flight per cluster (default %d)", defaults.Concurrency))
	cmd.Flags().BoolVar(&o.noMemory, "no-memory", false, "do not remember what was applied; every object is dry-run")
	o.policy.addFlags(cmd)
}

// request builds the engine request for SRC: from the flags, or with
// --config from the daemon's own request for --sync. The returned func
// releases what the request holds.
func (o *syncOptions) request(cmd *cobra.Command, g *globalOptions, src string, wait time.Duration) (reconcile.Request, func(), error) {
	ctx := cmd.Context()
	var memory apply.Memory
	if !o.noMemory {
		mem, err := apply.DefaultMemoryDir()
		if err != nil {
			return reconcile.Request{}, nil, err
		}
		memory = mem
	}
	if o.configFile != "" {
		return o.daemonRequest(ctx, cmd.Flags(), g, src, memory)
	}
	settings := reconcile.DefaultSettings()
	render, err := o.src.renderSettings()
	if err != nil {
		return reconcile.Request{}, nil, err
	}
	settings.Render = render
	settings.Namespace = o.namespace
	settings.Inventory = reconcile.InventorySettings{Name: o.inventory, Namespace: o.inventoryNamespace}
	settings.Prune = o.prune
	settings.AllowDestructivePrune = o.allowDestructivePrune
	settings.PruneTimeout = o.pruneTimeout
	settings.ForceConflicts = o.forceConflicts
	if o.concurrency > 0 {
		settings.Concurrency = o.concurrency
	}
	settings.Wait = wait
	settings.ClusterTimeout = g.clusterTimeout
	settings.Policy = o.policy.settings()
	if errs := settings.Validate(); len(errs) > 0 {
		return reconcile.Request{}, nil, joinProblems(errs)
	}
	targets, err := g.targets()
	if err != nil {
		return reconcile.Request{}, nil, err
	}
	name := o.syncName
	if name == "" {
		name = o.src.syncName(src, o.src.path)
	}
	req := reconcile.Request{Name: name, Settings: settings, Clusters: reconcile.Clusters(targets), Memory: memory,
		Source: o.src.opener(src, o.src.path)}
	return req, func() {}, nil
}

// daemonRequest is the request the daemon builds for the sync --sync of
// --config, reading SRC (the revision under review) at the sync's path
// instead of the sync's remote.
func (o *syncOptions) daemonRequest(ctx context.Context, flags *pflag.FlagSet, g *globalOptions, src string, memory apply.Memory) (reconcile.Request, func(), error) {
	var conflicting []string
	for _, name := range settingFlags {
		if f := flags.Lookup(name); f != nil && f.Changed {
			conflicting = append(conflicting, "--"+name)
		}
	}
	if len(conflicting) > 0 {
		return reconcile.Request{}, nil, fmt.Errorf("--config takes every setting and cluster from the daemon's sync, so %s cannot be given with it", strings.Join(conflicting, ", "))
	}
	if o.syncName == "" {
		return reconcile.Request{}, nil, fmt.Errorf("--config needs --sync NAME: the daemon's sync to predict")
	}
	cfg, err := daemon.LoadConfig(o.configFile)
	if err != nil {
		return reconcile.Request{}, nil, err
	}
	s, ok := cfg.Sync(o.syncName)
	if !ok {
		var names []string
		for _, s := range cfg.Syncs {
			names = append(names, s.Name)
		}
		sort.Strings(names)
		return reconcile.Request{}, nil, fmt.Errorf("%s: no sync named %s; its syncs are %s", o.configFile, o.syncName, strings.Join(names, ", "))
	}
	d, err := daemon.New(cfg, daemon.Options{Kubeconfig: g.kubeconfig, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return reconcile.Request{}, nil, err
	}
	req, err := d.Request(ctx, s, o.src.opener(src, s.Source.Path))
	if err != nil {
		d.Close()
		return reconcile.Request{}, nil, err
	}
	req.Memory = memory
	return req, d.Close, nil
}

// opener opens SRC at folder with the source flags.
func (o *sourceOptions) opener(src, folder string) reconcile.Source {
	return reconcile.SourceFunc(func(ctx context.Context) (*source.Snapshot, error) {
		opts, err := o.openOptions()
		if err != nil {
			return nil, err
		}
		opts.Path = folder
		return source.Open(ctx, src, opts)
	})
}

// joinProblems makes one error of settings problems, one per line.
func joinProblems(errs []error) error {
	msgs := make([]string, len(errs))
	for i, err := range errs {
		msgs[i] = err.Error()
	}
	return fmt.Errorf("%s", strings.Join(msgs, "\n"))
}
