package daemon

import (
	"context"
	"fmt"

	"github.com/gitk8s/gitk8s/internal/reconcile"
)

// Settings are the sync's settings as the engine reads them. The CLI's
// prediction of a sync (gitk8s diff --config --sync) reads them through
// this same function.
func (s SyncConfig) Settings() reconcile.Settings {
	set := reconcile.DefaultSettings()
	set.Namespace = s.Namespace
	set.Inventory = reconcile.InventorySettings{Name: s.Inventory.Name, Namespace: s.Inventory.Namespace}
	// A repository applied with the CLI before the daemon took it over has
	// its inventory under the CLI's name for it; the sync adopts it.
	if legacy := reconcile.InventoryName(reconcile.SyncNameOf(s.Source.URL, s.Source.Path)); s.Inventory.Name == "" && legacy != reconcile.InventoryName(s.Name) {
		set.Inventory.Adopt = []string{legacy}
	}
	set.Prune = s.Prune
	set.AllowDestructivePrune = s.AllowDestructivePrune
	if s.PruneTimeout.Duration > 0 {
		set.PruneTimeout = s.PruneTimeout.Duration
	}
	if s.ForceConflicts != nil {
		set.ForceConflicts = *s.ForceConflicts
	}
	if s.RequestConcurrency > 0 {
		set.Concurrency = s.RequestConcurrency
	}
	if s.ClusterTimeout.Duration > 0 {
		set.ClusterTimeout = s.ClusterTimeout.Duration
	}
	set.Wait = s.Wait.Timeout.Duration
	set.Render.AllowRemoteBases = s.Source.AllowRemoteBases
	if j := s.Source.Jsonnet; j != nil {
		set.Render.JsonnetEntry, set.Render.TLAs, set.Render.ExtVars, set.Render.JsonnetLibs = j.Entry, j.TLAs, j.ExtVars, j.Libs
	}
	if p := s.Policies; p != nil {
		set.Policy.Off = p.Skip
		set.Policy.Dirs = p.Dirs
	}
	set.Policy.Settings = s.Policies.settings()
	return set
}

// Request is the engine request of one reconcile of a sync, reading src:
// its settings, its clusters as the daemon reaches them, and the daemon's
// apply memory. It has no hooks; Reconcile adds those. An error means the
// sync's clusters could not be chosen.
func (d *Daemon) Request(ctx context.Context, s SyncConfig, src reconcile.Source) (reconcile.Request, error) {
	req := reconcile.Request{Name: s.Name, Source: src, Settings: s.Settings(), Memory: d.memory}
	configs, err := d.clustersOf(s)
	if err != nil {
		return req, fmt.Errorf("sync %s: %w", s.Name, err)
	}
	for _, c := range configs {
		t, err := d.target(ctx, c)
		req.Clusters = append(req.Clusters, reconcile.Cluster{Name: c.Name, Labels: c.Labels, Target: t, Unavailable: err})
	}
	return req, nil
}

// Sync returns the configured sync with this name.
func (c *Config) Sync(name string) (SyncConfig, bool) {
	for _, s := range c.Syncs {
		if s.Name == name {
			return s, true
		}
	}
	return SyncConfig{}, false
}
