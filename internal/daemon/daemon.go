package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/cluster"
	"github.com/gitk8s/gitk8s/internal/diff"
	"github.com/gitk8s/gitk8s/internal/federation"
	"github.com/gitk8s/gitk8s/internal/policy"
	"github.com/gitk8s/gitk8s/internal/render"
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
	log             *slog.Logger

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

	driftMu   sync.Mutex
	drifts    map[string]*driftWatch
	driftSeen sync.Map // sync name → true when drift waits for a reconcile
	pending   sync.Map // sync/cluster → *pendingDrift while it applies

	// suspendOnce starts the watch of the SuspendedConfigMap;
	// suspensionsSynced reports when it has been read once.
	suspendOnce       sync.Once
	suspensionsSynced cache.InformerSynced

	mu       sync.Mutex
	status   map[string]*SyncStatus
	triggers map[string]chan struct{}
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
		memory: apply.NewMemoryInProcess(), log: opts.Logger, status: map[string]*SyncStatus{}, triggers: map[string]chan struct{}{},
		metrics: newMetrics(), drifts: map[string]*driftWatch{}, advertiseURL: opts.AdvertiseURL, events: map[string]*eventRecorder{},
		secretTargets: map[string]secretTarget{}, clusterOptions: cluster.DefaultOptions()}
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
	ch, ok := d.triggers[name]
	if !ok {
		return false
	}
	select {
	case ch <- struct{}{}:
	default: // one is pending already
	}
	return true
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
// and reconciles nothing until it has.
func (d *Daemon) Run(ctx context.Context) error {
	if err := d.watchSuspensions(ctx); err != nil {
		return err
	}
	if !d.waitForSuspensions(ctx) {
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
	for _, s := range d.cfg.Syncs {
		d.driftSeen.Store(s.Name, true)
	}
	var wg sync.WaitGroup
	for _, s := range d.cfg.Syncs {
		wg.Go(func() { d.loop(work, abort, s, slots) })
	}
	wg.Wait()
}

// loop is one sync's schedule: an interval with jitter, triggers, and
// exponential backoff after failures.
func (d *Daemon) loop(work, abort context.Context, s SyncConfig, slots chan struct{}) {
	interval := s.Source.Interval.Duration
	if interval == 0 {
		interval = time.Minute
	}
	failures := 0
	next := time.Duration(0)
	for {
		select {
		case <-work.Done():
			return
		case <-time.After(next):
		case <-d.triggers[s.Name]:
		}
		// A suspended sync's ticks, triggers and drift heals do nothing;
		// resuming triggers it.
		if d.suspended(s.Name) {
			next = interval
			continue
		}
		select {
		case slots <- struct{}{}:
		case <-work.Done():
			return
		}
		// It may have been suspended while it waited for a slot.
		if d.suspended(s.Name) {
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
	ref := source.Ref{Branch: s.Source.Ref.Branch, Tag: s.Source.Ref.Tag, SemVer: s.Source.Ref.SemVer, Commit: s.Source.Ref.Commit}
	remote := source.RemoteOptions{URL: s.Source.URL, Ref: ref, Path: s.Source.Path}
	if remote.Auth, err = d.gitAuth(ctx, s); err != nil {
		log.Warn("source unavailable", "error", err)
		d.record(s.Name, "", ReasonSourceUnavailable, err, nil)
		return err
	}
	resolveStart := time.Now()
	rev, err := d.fetcher.Resolve(ctx, remote)
	d.metrics.gitResolve.Observe(time.Since(resolveStart).Seconds())
	if err != nil {
		log.Warn("source unavailable", "error", err)
		d.record(s.Name, "", ReasonSourceUnavailable, err, nil)
		return err
	}
	_, drift := d.driftSeen.LoadAndDelete(s.Name)
	if st := d.statusOf(s.Name); st.LastAppliedRevision == rev && st.ready() && !drift {
		log.Debug("unchanged", "revision", rev)
		return nil
	}
	log = log.With("revision", rev)
	result = "applied"
	d.setReconciling(s.Name, rev)
	fetchStart := time.Now()
	snap, _, err := d.fetcher.Fetch(ctx, remote)
	d.metrics.gitFetch.Observe(time.Since(fetchStart).Seconds())
	if err != nil {
		d.record(s.Name, rev, ReasonSourceUnavailable, err, nil)
		return err
	}
	defer snap.Close()
	bundle, err := render.Render(render.Options{Root: snap.Root, Path: snap.Path})
	if err != nil {
		log.Warn("render failed", "error", err)
		d.record(s.Name, rev, ReasonRenderFailed, err, nil)
		return err
	}
	log.Info("rendered", "objects", len(bundle.Objects))
	// Every text this reconcile shows people (status, logs, events) passes
	// through one Masker that knows every Secret value of the bundle, the
	// same one the apply masks diffs and the API server's errors with.
	masker := diff.NewMasker()
	for _, o := range bundle.Objects {
		masker.Learn(o.Object)
	}
	clusters, err := d.clustersOf(s)
	if err != nil {
		d.record(s.Name, rev, ReasonPlanFailed, err, nil)
		return err
	}
	objectsFor := map[string][]*render.Object{}
	if federation.HasFederated(bundle.Objects) {
		var members []federation.Cluster
		for _, c := range clusters {
			members = append(members, federation.Cluster{Name: c.Name, Labels: c.Labels, Ready: true})
		}
		res, err := federation.Expand(bundle.Objects, members)
		if err != nil {
			err = redact(masker, err)
			d.record(s.Name, rev, ReasonRenderFailed, err, nil)
			return err
		}
		objectsFor = res.PerCluster
		// Federated Secrets become Secrets only here, with their
		// per-cluster overrides: the Masker learns them before any text
		// (policy findings, errors) is shown.
		for _, objects := range objectsFor {
			for _, o := range objects {
				masker.Learn(o.Object)
			}
		}
	} else {
		for _, c := range clusters {
			objectsFor[c.Name] = bundle.Objects
		}
	}
	var admission *policy.AdmissionPolicies
	if s.Policies != nil && len(s.Policies.Dirs) > 0 {
		admission, err = policy.LoadAdmissionDirs(snap.Root, snap.Path, s.Policies.Dirs, bundle.Objects)
	} else {
		admission, err = policy.LoadAdmission(snap.Root, snap.Path, bundle.Objects)
	}
	if err != nil {
		err = redact(masker, err)
		d.record(s.Name, rev, ReasonRenderFailed, err, nil)
		return err
	}

	results := make([]clusterOutcome, len(clusters))
	var wg sync.WaitGroup
	for i, c := range clusters {
		wg.Go(func() {
			t, err := d.target(ctx, c)
			if err != nil {
				log.Warn("cluster unavailable", "cluster", c.Name, "error", err)
				results[i] = clusterOutcome{reason: ReasonClusterUnavailable, err: err}
				return
			}
			results[i] = d.syncCluster(ctx, s, t, objectsFor[c.Name], admission, masker, log)
			d.announce(ctx, s.Name, rev, t, results[i], masker)
		})
	}
	wg.Wait()
	reason, errs := ReasonSucceeded, []error(nil)
	counts := map[string]int{}
	var unhealthy []string
	for _, r := range results {
		for k, v := range r.counts {
			counts[k] += v
		}
		unhealthy = append(unhealthy, r.unhealthy...)
		if r.err != nil {
			errs = append(errs, r.err)
			if reason == ReasonSucceeded || r.reason == ReasonClusterUnavailable {
				reason = r.reason
			}
		}
	}
	for i, u := range unhealthy {
		unhealthy[i] = masker.Redact(u)
	}
	err = redact(masker, errors.Join(errs...))
	d.record(s.Name, rev, reason, err, &SyncStatus{Counts: counts, Unhealthy: unhealthy})
	for action, n := range counts {
		d.metrics.objects.WithLabelValues(s.Name, action).Add(float64(n))
	}
	if err == nil {
		d.metrics.appliedRev.DeletePartialMatch(map[string]string{"sync": s.Name})
		d.metrics.appliedRev.WithLabelValues(s.Name, rev).Set(1)
	}
	if err != nil {
		log.Warn("sync failed", "reason", reason, "error", err)
		return err
	}
	log.Info("synced", "counts", counts)
	return nil
}

// clusterOutcome is one cluster's part of a reconcile.
type clusterOutcome struct {
	reason    string
	err       error
	counts    map[string]int
	unhealthy []string
	// applied is set when the apply ran to its end without a failure.
	applied bool
	// pruned names the objects the apply deleted.
	pruned []string
}

func (d *Daemon) syncCluster(ctx context.Context, s SyncConfig, t *cluster.Target, objects []*render.Object, admission *policy.AdmissionPolicies, masker *diff.Masker, log *slog.Logger) clusterOutcome {
	log = log.With("cluster", t.Name)
	if h := cluster.Probe(ctx, t); h.State != cluster.Ready {
		return clusterOutcome{reason: ReasonClusterUnavailable, err: fmt.Errorf("cluster %s is %s: %s", t.Name, h.State, h.Reason)}
	}
	target := *t
	if s.Namespace != "" {
		target.Namespace = s.Namespace
	}
	// The configuration was checked at load, so the settings are valid.
	gate, _ := s.Policies.settings().Config()
	gate.Admission = admission
	live := policy.NewLive(ctx, &target)
	findings := policy.EvaluateIn(&policy.Context{Objects: objects, Live: live, DefaultNamespace: target.Namespace}, gate)
	if err := live.Err(); err != nil {
		log.Warn("policy checks could not read the cluster", "error", err)
	}
	for _, f := range findings {
		d.metrics.policyFindings.WithLabelValues(f.Rule, string(f.Severity)).Inc()
	}
	if policy.Blocking(findings) {
		var msgs []string
		for _, f := range findings {
			if f.Severity == policy.Error {
				msgs = append(msgs, fmt.Sprintf("%s:%d: %s: %s: %s", f.File, f.Line, f.Rule, f.Object, f.Message))
			}
		}
		log.Warn("policy violations", "count", len(msgs))
		return clusterOutcome{reason: ReasonPolicyViolation, err: fmt.Errorf("cluster %s: policy violations, nothing applied: %v", t.Name, msgs)}
	}
	log.Info("policy gate passed", "warnings", len(findings))
	opts := apply.DefaultOptions()
	opts.Inventory = apply.InventoryOptions{Name: inventoryName(s.Name), Namespace: apply.DefaultInventoryNamespace}
	opts.Prune = s.Prune
	opts.Wait = s.Wait.Timeout.Duration
	opts.Memory = d.memory
	opts.Masker = masker
	applied := d.applying(s.Name, t.Name)
	cs, err := apply.NewManager(&target, opts).Apply(ctx, objects)
	applied()
	if err != nil {
		return failedApply(t, cs, err)
	}
	log.Info("applied", "counts", cs.Count())
	if cs.InventoryID != "" {
		seen := map[schema.GroupVersionResource]bool{}
		var resources []schema.GroupVersionResource
		for _, e := range cs.Entries {
			if e.GVR.Resource != "" && !seen[e.GVR] {
				seen[e.GVR] = true
				resources = append(resources, e.GVR)
			}
		}
		watchCtx := ctx
		if p := d.runCtx.Load(); p != nil {
			watchCtx = *p
		}
		d.watchDrift(watchCtx, s.Name, t, cs.InventoryID, resources)
	}
	out := clusterOutcome{counts: map[string]int{}}
	for a, n := range cs.Count() {
		out.counts[string(a)] += n
	}
	for _, e := range cs.Entries {
		if e.Health != "" && e.Health != "Current" {
			out.unhealthy = append(out.unhealthy, t.Name+": "+e.Ref+": "+e.HealthMessage)
		}
		if e.Action == apply.Pruned {
			out.pruned = append(out.pruned, e.Ref)
		}
	}
	switch {
	case cs.PruneRefused != nil:
		out.reason, out.err = ReasonPruneRefused, cs.PruneRefused
	case cs.UnhealthyWave != nil:
		out.reason, out.err = ReasonHealthCheckFailed, fmt.Errorf("cluster %s: wave %d is not healthy", t.Name, *cs.UnhealthyWave)
	case cs.Failed():
		out.reason, out.err = ReasonApplyFailed, errors.Join(cs.Errors()...)
		if !wrote(cs) {
			out.reason = ReasonPlanFailed // refused by the dry-run: nothing written
		}
	default:
		out.applied = true
	}
	return out
}

// failedApply is the outcome of an apply that ended in an error: the
// cluster stopped answering (ClusterUnavailable), or the plan failed before
// anything was written (PlanFailed), or after some writes (ApplyFailed,
// with what was done counted).
func failedApply(t *cluster.Target, cs *apply.ChangeSet, err error) clusterOutcome {
	out := clusterOutcome{reason: ReasonPlanFailed, err: fmt.Errorf("cluster %s: %w", t.Name, err), counts: map[string]int{}}
	if cs != nil {
		for a, n := range cs.Count() {
			out.counts[string(a)] += n
		}
		if wrote(cs) {
			out.reason = ReasonApplyFailed
		}
	}
	if utilnet.IsConnectionRefused(err) || utilnet.IsConnectionReset(err) || utilnet.IsProbableEOF(err) || errors.Is(err, context.DeadlineExceeded) {
		out.reason = ReasonClusterUnavailable
	}
	return out
}

// wrote reports whether an apply wrote anything to the cluster.
func wrote(cs *apply.ChangeSet) bool {
	for a, n := range cs.Count() {
		switch a {
		case apply.Created, apply.Configured, apply.Recreated, apply.Pruned:
			if n > 0 {
				return true
			}
		}
	}
	return false
}

// redact masks, in an error's text, every Secret value the Masker knows.
func redact(m *diff.Masker, err error) error {
	if err == nil {
		return nil
	}
	return maskedError{err: err, text: m.Redact(err.Error())}
}

// maskedError is an error whose text had Secret values masked; it unwraps
// to the original, so errors.Is and As still see what happened.
type maskedError struct {
	err  error
	text string
}

func (e maskedError) Error() string { return e.text }
func (e maskedError) Unwrap() error { return e.err }

// clustersOf picks a sync's clusters.
func (d *Daemon) clustersOf(s SyncConfig) ([]ClusterConfig, error) {
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
