package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/chartdeps"
	"github.com/gitk8s/gitk8s/internal/cluster"
	"github.com/gitk8s/gitk8s/internal/reconcile"
	"github.com/gitk8s/gitk8s/internal/source"
)

// Options tune a Daemon.
type Options struct {
	// GitCacheDir holds the Git cache (default: the user's cache dir).
	GitCacheDir string
	// Logger receives one line per sync step (default: slog.Default()).
	Logger *slog.Logger
	// Kubeconfig is the kubeconfig file for contexts without a path.
	Kubeconfig string
	// AdvertiseURL is where other replicas reach this daemon's HTTP API
	// (http://POD_IP:9292); a standby forwards webhooks and status
	// requests to the leader's.
	AdvertiseURL string
}

// Daemon runs every sync of a configuration.
type Daemon struct {
	cfg     *Config
	targets map[string]*cluster.Target
	// secrets reads Secrets from the home cluster.
	secrets *secretCache
	// secretTargets are the clusters whose kubeconfig is in a Secret, as
	// last built; clusterOptions are what they are built with.
	secretTargetsMu sync.Mutex
	secretTargets   map[string]secretTarget
	clusterOptions  cluster.Options
	fetcher         *source.Fetcher
	memory          apply.Memory
	// protected are the daemon's own objects, which no sync may write.
	protected []reconcile.Protected
	log       *slog.Logger

	metrics *metrics
	// events records Kubernetes Events, per cluster name.
	eventsMu     sync.Mutex
	events       map[string]*eventRecorder
	started      atomic.Bool
	leader       atomic.Bool
	elector      atomic.Pointer[leaderelection.LeaderElector]
	advertiseURL string
	// runCtx is the context of the current term's drift watches.
	runCtx atomic.Pointer[context.Context]

	driftMu sync.Mutex
	drifts  map[string]*driftWatch
	// sharedWatches are the informers the drift watches share.
	sharedWatches map[sharedKey]*sharedWatch
	driftSeen     sync.Map // sync name → true when drift waits for a reconcile
	pending       sync.Map // sync/cluster → *pendingDrift while it applies

	// suspendOnce starts the watch of the SuspendedConfigMap;
	// suspensionsSynced reports when it has been read once.
	suspendOnce       sync.Once
	suspensionsSynced cache.InformerSynced

	mu       sync.Mutex
	status   map[string]*SyncStatus
	triggers map[string]chan struct{}
	// charts fetches the chart dependencies of every sync.
	charts *chartdeps.Fetcher
	// oci reads the syncs' OCI artifacts.
	oci *source.OCIFetcher

	// notify sends the syncs' commit statuses and alerts.
	notify *notifiers

	// resourceSyncs are the syncs of Sync resources, by sync name (under
	// mu); syncsChanged tells the term one was added.
	resourceSyncs map[string]SyncConfig
	syncsChanged  chan struct{}
	// suspensionsNow are the SuspendedConfigMap's suspensions as last
	// read (under mu).
	suspensionsNow map[string]Suspension
	// syncResourcesOnce starts the watch of Sync resources;
	// syncResourcesSynced reports when it has listed them once.
	syncResourcesOnce   sync.Once
	syncResourcesSynced cache.InformerSynced
	// impersonating are Targets that act as a Sync's ServiceAccount, by
	// cluster Target and user.
	impersonatingMu sync.Mutex
	impersonating   map[impersonationKey]*cluster.Target
}

// New connects to the configured clusters (without contacting them).
func New(cfg *Config, opts Options) (*Daemon, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.GitCacheDir == "" {
		dir, err := source.DefaultCacheDir()
		if err != nil {
			return nil, err
		}
		opts.GitCacheDir = dir
	}
	d := &Daemon{cfg: cfg, targets: map[string]*cluster.Target{}, fetcher: source.NewFetcher(opts.GitCacheDir),
		charts: chartdeps.NewFetcher(filepath.Join(opts.GitCacheDir, "charts")), oci: source.NewOCIFetcher(filepath.Join(opts.GitCacheDir, "oci")),
		memory: apply.NewMemoryInProcess(), log: opts.Logger, status: map[string]*SyncStatus{}, triggers: map[string]chan struct{}{},
		metrics: newMetrics(), drifts: map[string]*driftWatch{}, sharedWatches: map[sharedKey]*sharedWatch{}, advertiseURL: opts.AdvertiseURL, events: map[string]*eventRecorder{},
		secretTargets: map[string]secretTarget{}, clusterOptions: cluster.DefaultOptions(), protected: cfg.protected(),
		resourceSyncs: map[string]SyncConfig{}, notify: newNotifiers(), syncsChanged: make(chan struct{}, 1), impersonating: map[impersonationKey]*cluster.Target{}}
	for _, c := range cfg.Clusters {
		var t *cluster.Target
		var err error
		switch {
		case c.Kubeconfig.SecretRef != nil:
			continue // read from its Secret when it is used
		case c.Kubeconfig.InCluster:
			var rc *rest.Config
			if rc, err = rest.InClusterConfig(); err == nil {
				t, err = cluster.New(c.Name, "default", rc, cluster.DefaultOptions())
			}
		default:
			copts := cluster.DefaultOptions()
			copts.Kubeconfig = opts.Kubeconfig
			t, err = cluster.FromSpec(copts, cluster.Spec{Name: c.Name, Context: c.Kubeconfig.Context, Kubeconfig: c.Kubeconfig.Path, Labels: c.Labels})
		}
		if err != nil {
			return nil, fmt.Errorf("cluster %s: %w", c.Name, err)
		}
		t.Labels = c.Labels
		d.targets[c.Name] = t
	}
	home, ok := d.targets[cfg.HomeCluster()]
	if !ok {
		return nil, fmt.Errorf("home cluster %s: not a cluster reached without a Secret", cfg.HomeCluster())
	}
	client, err := kubernetes.NewForConfig(home.Config)
	if err != nil {
		return nil, fmt.Errorf("home cluster %s: %w", cfg.HomeCluster(), err)
	}
	d.secrets = newSecretCache(client.CoreV1())
	for _, s := range cfg.Syncs {
		// Clusters and their labels are fixed for the life of the daemon,
		// and a selector that matches none fails each reconcile instead.
		clusters, _ := cfg.clusterNamesOf(s)
		d.status[s.Name] = &SyncStatus{Name: s.Name, Clusters: clusters, Suspended: s.Suspend}
		if s.Suspend {
			d.status[s.Name].SuspendedReason = ConfigSuspendReason
		}
		d.triggers[s.Name] = make(chan struct{}, 1)
	}
	return d, nil
}

// Trigger asks a sync to reconcile now; it reports whether the sync exists.
func (d *Daemon) Trigger(name string) bool {
	if _, ok := d.syncConfig(name); !ok {
		return false
	}
	d.wake(name)
	return true
}

// wake sends a sync's loop a trigger, whether or not the sync still
// exists (a loop of a removed sync wakes to end).
func (d *Daemon) wake(name string) {
	select {
	case d.triggerOf(name) <- struct{}{}:
	default: // one is pending already
	}
}

// triggerOf is the channel that wakes a sync's loop; it lives as long as
// the daemon, so that a sync removed and added again keeps one loop.
func (d *Daemon) triggerOf(name string) chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	ch, ok := d.triggers[name]
	if !ok {
		ch = make(chan struct{}, 1)
		d.triggers[name] = ch
	}
	return ch
}

// syncs are every sync the daemon serves now: the configuration's, then
// those of Sync resources, by name.
func (d *Daemon) syncs() []SyncConfig {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := append([]SyncConfig(nil), d.cfg.Syncs...)
	start := len(out)
	for _, s := range d.resourceSyncs {
		out = append(out, s)
	}
	sort.Slice(out[start:], func(i, j int) bool { return out[start+i].Name < out[start+j].Name })
	return out
}

// syncConfig is the sync of this name as it is now.
func (d *Daemon) syncConfig(name string) (SyncConfig, bool) {
	if s, ok := d.cfg.Sync(name); ok {
		return s, true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s, ok := d.resourceSyncs[name]
	return s, ok
}

// Status returns every sync's status, by name.
func (d *Daemon) Status() []SyncStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]SyncStatus, 0, len(d.status))
	for _, s := range d.status {
		out = append(out, s.copy())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Run reconciles every sync on its interval, and when triggered, until ctx
// ends; reconciles in flight then get ShutdownGrace to finish. It first
// reads which syncs are suspended (SuspendedConfigMap in the home cluster)
// and reconciles nothing until it has; with syncResources.enabled it also
// lists the Sync resources first, and follows them while it runs.
func (d *Daemon) Run(ctx context.Context) error {
	if err := d.watchSuspensions(ctx); err != nil {
		return err
	}
	if err := d.watchSyncResources(ctx); err != nil {
		return err
	}
	if !d.waitForSuspensions(ctx) || !d.waitForSyncResources(ctx) {
		return nil
	}
	d.started.Store(true)
	d.run(ctx, context.Background())
	return nil
}

// ShutdownGrace is how long reconciles in flight may go on after the
// daemon is asked to stop.
var ShutdownGrace = 30 * time.Second

// run is one term of work. The loops take work until work ends; a
// reconcile in flight then gets ShutdownGrace to finish, unless abort ends
// first (leadership lost), which cancels it at once. run returns when no
// reconcile of the term is left, and its drift watches have stopped.
func (d *Daemon) run(work, abort context.Context) {
	limit := d.cfg.Concurrency
	if limit <= 0 {
		limit = 4
	}
	slots := make(chan struct{}, limit)
	watches, stopWatches := context.WithCancel(work)
	d.runCtx.Store(&watches)
	defer d.stopDriftWatches(stopWatches)
	// A term starts without drift watches: the first reconcile of each
	// sync goes through the apply (a no-op costs one metadata list per
	// kind) even when Git has not moved, which starts them, and heals what
	// changed while no term ran.
	var wg sync.WaitGroup
	var loopsMu sync.Mutex
	looping := map[string]bool{}
	startLoops := func() {
		loopsMu.Lock()
		defer loopsMu.Unlock()
		for _, s := range d.syncs() {
			if looping[s.Name] {
				continue
			}
			looping[s.Name] = true
			d.driftSeen.Store(s.Name, true)
			wg.Go(func() {
				d.loop(work, abort, s.Name, slots)
				loopsMu.Lock()
				delete(looping, s.Name)
				loopsMu.Unlock()
			})
		}
	}
	startLoops()
	// Syncs added while the term runs (Sync resources) get loops of their
	// own; a loop ends when its sync is removed.
	wg.Go(func() {
		for {
			select {
			case <-work.Done():
				return
			case <-d.syncsChanged:
				startLoops()
			}
		}
	})
	wg.Wait()
}

// loop is one sync's schedule: an interval with jitter, triggers, and
// exponential backoff after failures.
func (d *Daemon) loop(work, abort context.Context, name string, slots chan struct{}) {
	trigger := d.triggerOf(name)
	failures := 0
	next := time.Duration(0)
	var lastStart time.Time
	for {
		select {
		case <-work.Done():
			return
		case <-time.After(next):
		case <-trigger:
			// Triggers that come in a burst (a storm of pushes, many objects
			// drifting) are coalesced: a triggered reconcile starts at most
			// once per triggerSpacing, and serves every trigger that came
			// meanwhile, since it asks the remote only when it starts.
			if wait := triggerSpacing - time.Since(lastStart); wait > 0 {
				select {
				case <-work.Done():
					return
				case <-time.After(wait):
				}
				select {
				case <-trigger:
				default:
				}
			}
		}
		// The sync as it is now: a Sync resource may have changed, or gone.
		s, ok := d.syncConfig(name)
		if !ok {
			return
		}
		interval := s.Source.Interval.Duration
		if interval == 0 {
			interval = time.Minute
		}
		// A suspended sync's ticks, triggers and drift heals do nothing;
		// resuming triggers it. A deleted Sync is finalized even so.
		if d.suspended(s.Name) && !s.deleting() {
			next = interval
			continue
		}
		select {
		case slots <- struct{}{}:
		case <-work.Done():
			return
		}
		// It may have been suspended (or changed) while it waited for a slot.
		if s, ok = d.syncConfig(name); !ok {
			<-slots
			return
		}
		if d.suspended(s.Name) && !s.deleting() {
			<-slots
			next = interval
			continue
		}
		// A reconcile in flight when the daemon is asked to stop gets a grace
		// period to finish; then it is cancelled, which leaves every object
		// and the inventory consistent (an inventory is narrowed only after
		// deletions are confirmed). When leadership is lost it is cancelled
		// at once: another daemon may be applying already.
		rctx, cancel := context.WithCancel(context.WithoutCancel(work))
		graceOver := context.AfterFunc(work, func() {
			select {
			case <-rctx.Done():
			case <-time.After(ShutdownGrace):
				cancel()
			}
		})
		aborted := context.AfterFunc(abort, cancel)
		lastStart = time.Now()
		err := d.Reconcile(rctx, s)
		graceOver()
		aborted()
		cancel()
		<-slots
		if err != nil {
			failures++
			next = backoff(failures, interval)
			continue
		}
		failures = 0
		next = jitter(interval)
	}
}

// triggerSpacing is the least time between the starts of two reconciles
// of one sync when the second is triggered (by a push or by drift).
var triggerSpacing = time.Second

// backoff is the wait after the n-th failure in a row: 2 s doubling up to
// the sync's interval or 5 min, whichever is shorter, with ±10% jitter. A
// failing sync is never retried less often than a healthy one is checked.
func backoff(n int, interval time.Duration) time.Duration {
	return jitter(min(time.Duration(1<<min(n, 9))*time.Second, 5*time.Minute, interval))
}

// jitter spreads d by ±10% so that syncs with one interval do not march
// in step.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration((rand.Float64()*0.2-0.1)*float64(d))
}

// resolve asks the sync's source which revision it is at — a Git remote
// one ref advertisement, an OCI registry one manifest HEAD — and returns
// it with the fetch of that very revision.
func (d *Daemon) resolve(ctx context.Context, s SyncConfig) (string, func(context.Context) (*source.Snapshot, error), error) {
	if source.IsOCI(s.Source.URL) {
		ref, err := source.ParseOCI(s.Source.URL, s.Source.Ref.Tag, s.Source.Ref.SemVer)
		if err != nil {
			return "", nil, err
		}
		opts := source.OCIOptions{PlainHTTP: s.Source.Insecure, Timeout: s.Source.Timeout.Duration}
		if opts.Auth, err = d.ociAuth(ctx, s); err != nil {
			return "", nil, err
		}
		if v := s.Source.Verify; v != nil {
			if opts.VerifyKeys, err = d.verifyKeys(ctx, v); err != nil {
				return "", nil, err
			}
		}
		desc, err := d.oci.Resolve(ctx, ref, opts)
		if err != nil {
			return "", nil, err
		}
		pinned := ref
		pinned.Tag, pinned.SemVer, pinned.Digest = "", "", desc.Digest.String()
		return desc.Digest.String(), func(ctx context.Context) (*source.Snapshot, error) {
			snap, _, err := d.oci.Fetch(ctx, pinned, s.Source.Path, opts)
			return snap, err
		}, nil
	}
	ref := source.Ref{Branch: s.Source.Ref.Branch, Tag: s.Source.Ref.Tag, SemVer: s.Source.Ref.SemVer, Commit: s.Source.Ref.Commit}
	remote := source.RemoteOptions{URL: s.Source.URL, Ref: ref, Path: s.Source.Path, Timeout: s.Source.Timeout.Duration}
	var err error
	if remote.Auth, err = d.gitAuth(ctx, s); err != nil {
		return "", nil, err
	}
	rev, err := d.fetcher.Resolve(ctx, remote)
	if err != nil {
		return "", nil, err
	}
	return rev, func(ctx context.Context) (*source.Snapshot, error) {
		snap, _, err := d.fetcher.Fetch(ctx, remote)
		return snap, err
	}, nil
}

// Reconcile runs one sync once. When the remote's revision is the one
// last applied, that is all it costs: one ref advertisement.
func (d *Daemon) Reconcile(ctx context.Context, s SyncConfig) (err error) {
	start := time.Now()
	result := "unchanged"
	defer func() {
		if err != nil {
			result = "failed"
		}
		d.metrics.reconcile.WithLabelValues(s.Name, result).Observe(time.Since(start).Seconds())
	}()
	log := d.log.With("sync", s.Name)
	if s.Resource != nil {
		if s.Resource.Deleting {
			result = "finalized"
			return d.finalize(ctx, s)
		}
		if !s.Resource.HasFinalizer {
			if err := d.addFinalizer(ctx, s.Resource); err != nil {
				log.Warn("cannot add the finalizer", "error", err)
				err = fmt.Errorf("cannot add the finalizer %s, without which deleting the Sync would leave what it applied: %w", SyncFinalizer, err)
				d.record(s.Name, "", ReasonPlanFailed, err, nil)
				d.writeStatus(ctx, s)
				return err
			}
		}
		// The status is written however the reconcile ends.
		defer d.writeStatus(ctx, s)
	}
	specChanged := d.statusOf(s.Name).ObservedGeneration != s.generation()
	d.observe(s)
	resolveStart := time.Now()
	rev, fetch, err := d.resolve(ctx, s)
	d.metrics.gitResolve.Observe(time.Since(resolveStart).Seconds())
	if err != nil {
		log.Warn("source unavailable", "error", err)
		d.record(s.Name, "", ReasonSourceUnavailable, err, nil)
		return err
	}
	_, drift := d.driftSeen.LoadAndDelete(s.Name)
	if st := d.statusOf(s.Name); st.LastAppliedRevision == rev && st.ready() && !drift && !specChanged {
		log.Debug("unchanged", "revision", rev)
		return nil
	}
	log = log.With("revision", rev)
	result = "applied"
	d.setReconciling(s.Name, rev)
	d.writeStatus(ctx, s)
	src := reconcile.SourceFunc(func(ctx context.Context) (*source.Snapshot, error) {
		fetchStart := time.Now()
		snap, err := fetch(ctx)
		d.metrics.gitFetch.Observe(time.Since(fetchStart).Seconds())
		return snap, err
	})
	clusterNames := d.statusOf(s.Name).Clusters
	d.notifyPending(ctx, s, rev, clusterNames)
	notifyAll := func(reason string, err error) {
		for _, c := range clusterNames {
			d.notifyResult(ctx, s, rev, c, reason, err)
		}
	}
	req, err := d.Request(ctx, s, src)
	if err != nil {
		d.record(s.Name, rev, ReasonPlanFailed, err, nil)
		notifyAll(ReasonPlanFailed, err)
		return err
	}
	req.Hooks = d.hooks(ctx, s.Name, req.Settings.InventoryOf(s.Name), rev, log)
	if clusterDone := req.Hooks.ClusterDone; len(s.Notify) > 0 {
		req.Hooks.ClusterDone = func(t *cluster.Target, r *reconcile.ClusterResult) {
			clusterDone(t, r)
			d.notifyResult(ctx, s, rev, r.Name, string(r.Reason), r.Err)
		}
	}
	res := reconcile.Run(ctx, req)
	if res.Reason == reconcile.RenderFailed || res.Reason == reconcile.SourceUnavailable {
		log.Warn("nothing applied", "reason", res.Reason, "error", res.Err)
		d.record(s.Name, rev, string(res.Reason), res.Err, nil)
		notifyAll(string(res.Reason), res.Err)
		return res.Err
	}
	counts := map[string]int{}
	var unhealthy []string
	for _, c := range res.Clusters {
		for a, n := range c.Counts() {
			counts[string(a)] += n
		}
		unhealthy = append(unhealthy, unhealthyOf(&c)...)
	}
	d.record(s.Name, rev, string(res.Reason), res.Err, &SyncStatus{Counts: counts, Unhealthy: unhealthy, Federated: res.FederatedStatus()})
	for action, n := range counts {
		d.metrics.objects.WithLabelValues(s.Name, action).Add(float64(n))
	}
	if res.Err != nil {
		log.Warn("sync failed", "reason", res.Reason, "error", res.Err)
		return res.Err
	}
	d.metrics.appliedRev.DeletePartialMatch(map[string]string{"sync": s.Name})
	d.metrics.appliedRev.WithLabelValues(s.Name, rev).Set(1)
	log.Info("synced", "counts", counts)
	return nil
}

// hooks are what the daemon does while a reconcile runs: log its steps,
// count findings, mark applies for the drift watches, start the watches
// of what was applied, and record events on each cluster's ApplySet
// parent.
func (d *Daemon) hooks(ctx context.Context, syncName string, inventory apply.InventoryOptions, rev string, log *slog.Logger) reconcile.Hooks {
	return reconcile.Hooks{
		Rendered: func(n int) { log.Info("rendered", "objects", n) },
		Applying: func(clusterName string) func() { return d.applying(syncName, clusterName) },
		ClusterDone: func(t *cluster.Target, r *reconcile.ClusterResult) {
			log := log.With("cluster", r.Name)
			for _, w := range r.Warnings {
				log.Warn(w)
			}
			for _, f := range r.Findings {
				d.metrics.policyFindings.WithLabelValues(f.Rule, string(f.Severity)).Inc()
			}
			switch r.Reason {
			case reconcile.ClusterUnavailable:
				log.Warn("cluster unavailable", "error", r.Err)
				return
			case reconcile.PolicyViolation:
				log.Warn("policy violations", "error", r.Err)
			default:
				log.Info("policy gate passed", "warnings", len(r.Findings))
			}
			if t == nil {
				return
			}
			if cs := r.ChangeSet; cs != nil && !r.Stopped && r.Reason != reconcile.PolicyViolation {
				log.Info("applied", "counts", cs.Count())
				if cs.InventoryID != "" {
					d.startDriftWatch(ctx, syncName, t, cs)
				}
			}
			d.announce(ctx, inventory, rev, t, r)
		},
	}
}

// startDriftWatch watches what a cluster's apply wrote: as the daemon, in
// every namespace, for a sync of the configuration file; for a Sync
// resource as its ServiceAccount (when it has one), in its namespace.
func (d *Daemon) startDriftWatch(ctx context.Context, syncName string, t *cluster.Target, cs *apply.ChangeSet) {
	namespace := ""
	if s, ok := d.syncConfig(syncName); ok && s.Resource != nil {
		namespace = s.Resource.Namespace
	}
	d.watchDrift(d.watchContext(ctx), syncName, t, namespace, cs.InventoryID, resourcesOf(cs))
}

// watchContext is the context drift watches of the current term run in.
func (d *Daemon) watchContext(fallback context.Context) context.Context {
	if p := d.runCtx.Load(); p != nil {
		return *p
	}
	return fallback
}

// resourcesOf lists the resources of a change set's objects, once each.
func resourcesOf(cs *apply.ChangeSet) []schema.GroupVersionResource {
	seen := map[schema.GroupVersionResource]bool{}
	var resources []schema.GroupVersionResource
	for _, e := range cs.Entries {
		if e.GVR.Resource != "" && !seen[e.GVR] {
			seen[e.GVR] = true
			resources = append(resources, e.GVR)
		}
	}
	return resources
}

// unhealthyOf names a cluster's objects that are not healthy, with why.
func unhealthyOf(r *reconcile.ClusterResult) []string {
	if r.ChangeSet == nil {
		return nil
	}
	var out []string
	for _, e := range r.ChangeSet.Entries {
		if e.Health != "" && e.Health != "Current" {
			out = append(out, r.Name+": "+e.Ref+": "+e.HealthMessage)
		}
	}
	return out
}

// prunedOf names the objects a cluster's apply deleted.
func prunedOf(r *reconcile.ClusterResult) []string {
	if r.ChangeSet == nil {
		return nil
	}
	var out []string
	for _, e := range r.ChangeSet.Entries {
		if e.Action == apply.Pruned {
			out = append(out, e.Ref)
		}
	}
	return out
}

// clustersOf picks a sync's clusters.
func (d *Daemon) clustersOf(s SyncConfig) ([]ClusterConfig, error) {
	if own, ok := s.ownCluster(); ok {
		return []ClusterConfig{own}, nil
	}
	names, err := d.cfg.clusterNamesOf(s)
	if err != nil {
		return nil, err
	}
	out := make([]ClusterConfig, 0, len(names))
	for _, name := range names {
		for _, c := range d.cfg.Clusters {
			if c.Name == name {
				out = append(out, c)
			}
		}
	}
	return out, nil
}

// clusterNamesOf names a sync's clusters: its list, or those its selector
// matches, in the order of the configuration.
func (c *Config) clusterNamesOf(s SyncConfig) ([]string, error) {
	if len(s.Clusters) > 0 {
		return append([]string(nil), s.Clusters...), nil
	}
	sel, err := metav1.LabelSelectorAsSelector(s.ClusterSelector)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, cl := range c.Clusters {
		if sel.Matches(labels.Set(cl.Labels)) {
			out = append(out, cl.Name)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("clusterSelector %s matches no cluster", sel)
	}
	return out, nil
}
