package daemon

import (
	"context"
	"fmt"
	"slices"

	"github.com/gitk8s/gitk8s/internal/chartdeps"
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
	set.Render.Limits = s.Source.RenderLimits.limits()
	if j := s.Source.Jsonnet; j != nil {
		set.Render.JsonnetEntry, set.Render.TLAs, set.Render.ExtVars, set.Render.JsonnetLibs = j.Entry, j.TLAs, j.ExtVars, j.Libs
	}
	set.Render.KustomizeHelm = s.Source.EnableHelm
	if h := s.Source.Helm; h != nil {
		set.Render.Helm = *h
	}
	if p := s.Policies; p != nil {
		set.Policy.Off = p.Skip
		set.Policy.Dirs = p.Dirs
	}
	set.Policy.Settings = s.Policies.settings()
	return set
}

// Request is the engine request of one reconcile of a sync, reading src:
// its settings, its clusters as the daemon reaches them, the daemon's
// apply memory, and the daemon's own objects, which the sync may not write. It has no hooks; Reconcile adds those. An error means the
// sync's clusters could not be chosen.
func (d *Daemon) Request(ctx context.Context, s SyncConfig, src reconcile.Source) (reconcile.Request, error) {
	req := reconcile.Request{Name: s.Name, Source: src, Settings: s.Settings(), Memory: d.memory, Protected: d.protectedNow()}
	if s.ManagesDaemon && s.Resource == nil {
		req.Protected = slices.DeleteFunc(req.Protected, func(p reconcile.Protected) bool { return p.Kind == "" && p.Name == "" })
	}
	// An inventory another sync owns is never adopted: two syncs whose
	// names and sources happen to meet must not prune each other. A Sync
	// resource adopts nothing: its inventory is its own namespace's.
	var adopt []string
	for _, name := range req.Settings.Inventory.Adopt {
		if !d.ownsInventory(name) && s.Resource == nil {
			adopt = append(adopt, name)
		}
	}
	req.Settings.Inventory.Adopt = adopt
	req.Settings.Render.Charts = d.charts
	for i, r := range s.Source.ChartRepositories {
		auth, err := d.readAuth(ctx, r.Auth)
		if err != nil {
			return req, fmt.Errorf("sync %s: source.chartRepositories[%d].auth: %w", s.Name, i, err)
		}
		req.Settings.Render.ChartRepositories = append(req.Settings.Render.ChartRepositories, chartdeps.Repository{URL: r.URL, Auth: auth})
	}
	if dec := s.Source.Decryption; dec != nil {
		keys, err := d.ageKeys(ctx, dec)
		if err != nil {
			return req, fmt.Errorf("sync %s: source.decryption: %w", s.Name, err)
		}
		req.Settings.Render.SOPS.AgeKeys = keys
	}
	var err error
	req.Clusters, err = d.requestClusters(ctx, s)
	return req, err
}

// requestClusters are a sync's clusters as the engine reaches them.
func (d *Daemon) requestClusters(ctx context.Context, s SyncConfig) ([]reconcile.Cluster, error) {
	configs, err := d.clustersOf(s)
	if err != nil {
		return nil, fmt.Errorf("sync %s: %w", s.Name, err)
	}
	var out []reconcile.Cluster
	for _, c := range configs {
		t, err := d.target(ctx, c)
		if err == nil {
			// A Sync with a ServiceAccount acts as it: the API server's
			// RBAC decides what it may write and prune.
			t, err = d.impersonated(t, s)
		}
		out = append(out, reconcile.Cluster{Name: c.Name, Labels: c.Labels, Target: t, Unavailable: err})
	}
	return out, nil
}

// ownsInventory reports whether a sync the daemon serves has an inventory
// of this name.
func (d *Daemon) ownsInventory(name string) bool {
	for _, s := range d.syncs() {
		if s.Settings().InventoryOf(s.Name).Name == name {
			return true
		}
	}
	return false
}

// protectedNow are the daemon's own objects as they are now: those of the
// configuration, and the inventories and credential Secrets of the Sync
// resources it serves.
func (d *Daemon) protectedNow() []reconcile.Protected {
	out := append([]reconcile.Protected(nil), d.protected...)
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.resourceSyncs {
		out = append(out, s.protected()...)
	}
	return out
}

// protected are the objects of one sync that no synced repository may
// write: its inventory and the Secrets its credentials are in.
func (s SyncConfig) protected() []reconcile.Protected {
	inv := s.Settings().InventoryOf(s.Name)
	out := []reconcile.Protected{reconcile.ProtectedSecret(inv.Namespace, inv.Name, "the inventory of sync "+s.Name)}
	secret := func(ref *SecretRef, what string) {
		if ref == nil {
			return
		}
		ns := ref.Namespace
		if ns == "" {
			ns = HomeNamespace
		}
		out = append(out, reconcile.ProtectedSecret(ns, ref.Name, what+" of sync "+s.Name))
	}
	if a := s.Source.Auth; a != nil {
		secret(a.SecretRef, "the Git credentials")
	}
	if v := s.Source.Verify; v != nil {
		secret(v.SecretRef, "the verification keys")
	}
	if dec := s.Source.Decryption; dec != nil {
		secret(dec.SecretRef, "the decryption keys")
	}
	for _, r := range s.Source.ChartRepositories {
		if r.Auth != nil {
			secret(r.Auth.SecretRef, "the chart repository credentials")
		}
	}
	if s.Resource != nil && s.Resource.KubeConfig != nil {
		kc := s.Resource.KubeConfig
		secret(&SecretRef{Namespace: kc.Namespace, Name: kc.Name}, "the kubeconfig")
	}
	for _, n := range s.Notify {
		if n.SecretRef != nil {
			secret(&SecretRef{Namespace: n.SecretRef.Namespace, Name: n.SecretRef.Name}, "the notification token")
		}
	}
	return out
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

// protected are the objects of the daemon that no synced repository may
// write: every sync's inventory, the Secrets the configuration names for
// credentials, kubeconfigs and webhooks, the suspensions and the Lease.
func (c *Config) protected() []reconcile.Protected {
	var out []reconcile.Protected
	secret := func(ref *SecretKeyRef, why string) {
		if ref == nil {
			return
		}
		ns := ref.Namespace
		if ns == "" {
			ns = HomeNamespace
		}
		out = append(out, reconcile.ProtectedSecret(ns, ref.Name, why))
	}
	for _, s := range c.Syncs {
		out = append(out, s.protected()...)
	}
	// The daemon's namespace holds its configuration, its Deployment and
	// every credential the configuration names.
	out = append(out, reconcile.ProtectedNamespace(HomeNamespace, "the daemon's own namespace (its configuration, workload and credentials)"))
	for _, cl := range c.Clusters {
		secret(cl.Kubeconfig.SecretRef, "the kubeconfig of cluster "+cl.Name)
	}
	for _, r := range c.Webhooks.Receivers {
		secret(r.SecretRef, "the secret of webhook receiver "+r.Name)
	}
	out = append(out, reconcile.Protected{Kind: "ConfigMap", Namespace: HomeNamespace, Name: SuspendedConfigMap, Why: "the daemon's suspensions"})
	ns, name := c.LeaderElection.Namespace, c.LeaderElection.Name
	if ns == "" {
		ns = HomeNamespace
	}
	if name == "" {
		name = "gitk8s-daemon"
	}
	out = append(out, reconcile.Protected{Group: "coordination.k8s.io", Kind: "Lease", Namespace: ns, Name: name, Why: "the daemon's leader Lease"})
	return out
}
