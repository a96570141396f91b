package reconcile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/chartdeps"
	"github.com/gitk8s/gitk8s/internal/cluster"
	"github.com/gitk8s/gitk8s/internal/diff"
	"github.com/gitk8s/gitk8s/internal/federation"
	"github.com/gitk8s/gitk8s/internal/hook"
	"github.com/gitk8s/gitk8s/internal/policy"
	"github.com/gitk8s/gitk8s/internal/render"
	"github.com/gitk8s/gitk8s/internal/source"
)

// errPolicyBlocked stops an apply whose objects break an enforced policy.
var errPolicyBlocked = errors.New("policy violations: nothing was applied")

// Run runs one sync once: snapshot, render, federate, policy gate, plan,
// apply, prune, health, for every cluster at once. It never panics on bad
// input and never prunes after a failure; what went wrong is in the
// Result, masked.
func Run(ctx context.Context, req Request) *Result {
	res := &Result{Name: req.Name, Masker: diff.NewMasker()}
	snap, err := req.Source.Open(ctx)
	if err != nil {
		res.Reason, res.Err = SourceUnavailable, err
		return res
	}
	defer snap.Close()
	res.Origin, res.Revision = snap.Origin, snap.Revision
	bundle, err := req.Settings.Render.Render(ctx, renderOptions(ctx, req, snap))
	if err != nil {
		res.Reason, res.Err = RenderFailed, err
		if errors.Is(err, chartdeps.ErrUnavailable) {
			res.Reason = SourceUnavailable
		}
		return res
	}
	res.Objects = len(bundle.Objects)
	if req.Hooks.Rendered != nil {
		req.Hooks.Rendered(len(bundle.Objects))
	}
	// Every text a run returns passes through one Masker that knows every
	// Secret value of the bundle before anything can fail.
	for _, o := range bundle.Objects {
		res.Masker.Learn(o.Object)
	}
	objects, hooks, _, err := hook.Split(bundle.Objects)
	if err != nil {
		res.Reason, res.Err = RenderFailed, mask(res.Masker, err)
		return res
	}
	for _, h := range hooks {
		ref := h.Object.Ref()
		if h.Object.Object.GetName() == "" {
			ref += h.Object.Object.GetGenerateName()
		}
		res.Hooks = append(res.Hooks, PlannedHook{Phases: h.Phases, Ref: ref, Source: h.Object.Source.String()})
	}
	bundle = &render.Bundle{Objects: objects, Skipped: bundle.Skipped}
	gate, err := GateConfig(ctx, req.Settings.Policy, snap, bundle)
	if err != nil {
		res.Reason, res.Err = RenderFailed, mask(res.Masker, err)
		return res
	}
	healths := probe(ctx, req.Clusters)
	objectsFor, placements, err := expand(bundle, req.Clusters, healths, res.Masker)
	if err != nil {
		res.Reason, res.Err = RenderFailed, mask(res.Masker, err)
		return res
	}
	res.Placements = placements

	res.Clusters = make([]ClusterResult, len(req.Clusters))
	var wg sync.WaitGroup
	for i, c := range req.Clusters {
		res.Clusters[i].Name = c.Name
		wg.Go(func() {
			out := &res.Clusters[i]
			if err := unavailable(c, healths[i]); err != nil {
				out.Reason, out.Err = ClusterUnavailable, mask(res.Masker, err)
			} else {
				runCluster(ctx, req, c.Target, objectsFor[c.Name], hooks, snap.Revision, gate, res.Masker, out)
			}
			if req.Hooks.ClusterDone != nil {
				req.Hooks.ClusterDone(c.Target, out)
			}
		})
	}
	wg.Wait()
	res.Reason, res.Err = summarize(res.Clusters)
	return res
}

// renderOptions are the render options of a run. A Helm chart is rendered
// as helm install would render it for the sync's first cluster that
// answers: that cluster's version, the API versions it serves and its
// default namespace, unless the settings name them. With no cluster
// answering, the render's defaults hold (render.DefaultKubeVersion).
func renderOptions(ctx context.Context, req Request, snap *source.Snapshot) render.Options {
	opts := req.Settings.Render.Options(snap)
	if opts.Helm.Namespace == "" {
		opts.Helm.Namespace = req.Settings.Namespace
	}
	if !render.HasChart(opts) {
		return opts
	}
	for _, c := range req.Clusters {
		if c.Target == nil {
			continue
		}
		caps, err := cluster.CapabilitiesOf(ctx, c.Target)
		if err != nil {
			continue
		}
		if opts.Helm.KubeVersion == "" {
			opts.Helm.KubeVersion = caps.KubeVersion
		}
		opts.Helm.APIVersions = append(caps.APIVersions, opts.Helm.APIVersions...)
		if opts.Helm.Namespace == "" {
			opts.Helm.Namespace = c.Target.Namespace
		}
		break
	}
	return opts
}

// GateConfig is the policy gate of a sync over a rendered snapshot, or nil
// when the gate is off: the built-in rules with the settings' modes, and
// the admission policies of gitk8s, of the repository's policy folders and
// of the bundle.
func GateConfig(ctx context.Context, s PolicySettings, snap *source.Snapshot, bundle *render.Bundle) (*policy.Config, error) {
	if s.Off {
		return nil, nil
	}
	cfg, errs := s.Settings.Config()
	if len(errs) > 0 {
		return nil, fmt.Errorf("policies: %w", errors.Join(errs...))
	}
	var admission *policy.AdmissionPolicies
	var err error
	if len(s.Dirs) > 0 {
		admission, err = policy.LoadAdmissionDirs(ctx, snap.Root, snap.Path, s.Dirs, bundle.Objects)
	} else {
		admission, err = policy.LoadAdmission(ctx, snap.Root, snap.Path, bundle.Objects)
	}
	if err != nil {
		return nil, err
	}
	cfg.Admission = admission
	return &cfg, nil
}

// probe asks every reachable cluster's /readyz once, all at once.
func probe(ctx context.Context, clusters []Cluster) []cluster.Health {
	healths := make([]cluster.Health, len(clusters))
	var wg sync.WaitGroup
	for i, c := range clusters {
		if c.Target == nil {
			healths[i] = cluster.Health{State: cluster.Offline, Reason: "not reached"}
			continue
		}
		wg.Go(func() { healths[i] = cluster.Probe(ctx, c.Target) })
	}
	wg.Wait()
	return healths
}

// unavailable says why a cluster cannot be synced, or nil.
func unavailable(c Cluster, h cluster.Health) error {
	switch {
	case c.Target == nil && c.Unavailable != nil:
		return fmt.Errorf("%w; nothing was applied or pruned there", c.Unavailable)
	case c.Target == nil:
		return fmt.Errorf("cluster %s could not be reached; nothing was applied or pruned there", c.Name)
	case h.State != cluster.Ready:
		return fmt.Errorf("cluster %s (%s) is %s: %s; nothing was applied or pruned there", c.Name, c.Target.Server, h.State, h.Reason)
	}
	return nil
}

// expand places the bundle's objects per cluster: KubeFed objects by their
// placements, with replicas only for clusters that are Ready; everything
// else goes to every cluster. The Masker learns the Secrets federation
// makes before any text about them is shown.
func expand(bundle *render.Bundle, clusters []Cluster, healths []cluster.Health, masker *diff.Masker) (map[string][]*render.Object, []federation.Placement, error) {
	objectsFor := map[string][]*render.Object{}
	if !federation.HasFederated(bundle.Objects) {
		for _, c := range clusters {
			objectsFor[c.Name] = bundle.Objects
		}
		return objectsFor, nil, nil
	}
	members := make([]federation.Cluster, len(clusters))
	for i, c := range clusters {
		members[i] = federation.Cluster{Name: c.Name, Labels: c.Labels, Ready: healths[i].State == cluster.Ready}
	}
	res, err := federation.Expand(bundle.Objects, members)
	if err != nil {
		return nil, nil, err
	}
	for _, objects := range res.PerCluster {
		for _, o := range objects {
			masker.Learn(o.Object)
		}
	}
	return res.PerCluster, res.Placements, nil
}

// runCluster is one cluster's part: the policy gate while the plan reads
// and dry-runs, then the apply, which writes only once the gate passed.
func runCluster(ctx context.Context, req Request, t *cluster.Target, objects []*render.Object, hooks []*hook.Hook, revision string, gate *policy.Config, masker *diff.Masker, out *ClusterResult) {
	if req.Settings.ClusterTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, req.Settings.ClusterTimeout)
		defer cancel()
	}
	target := *t
	if req.Settings.Namespace != "" {
		target.Namespace = req.Settings.Namespace
	}
	opts := req.Settings.applyOptions(req.Name, req.DryRun, req.Memory)
	opts.Masker = masker
	// The gate and the protected-object check see the hooks too: a hook
	// is written to the cluster like any object.
	checked := slices.Clip(objects)
	for _, h := range hooks {
		checked = append(checked, h.Object)
	}
	runner := &hook.Runner{Target: &target, Namespace: target.Namespace, Sync: req.Name, Timeout: req.Settings.Wait}
	runHooks := !req.DryRun && len(hooks) > 0 && !hooksRanFor(ctx, &target, opts.Inventory, revision)
	if runHooks && opts.Wait == 0 && len(hook.InPhase(hooks, hook.PostSync)) > 0 {
		// PostSync comes after the last wave is healthy, so a sync with
		// PostSync hooks waits for it even when not told to.
		opts.Wait = defaultPostSyncWait
	}
	var gateDone chan struct{}
	var preSyncErr error
	if gate != nil {
		gateDone = make(chan struct{})
		go func() {
			defer close(gateDone)
			live := policy.NewLive(ctx, &target)
			out.Findings = policy.EvaluateIn(&policy.Context{Objects: checked, Live: live, DefaultNamespace: target.Namespace}, *gate)
			if err := live.Err(); err != nil {
				out.Warnings = append(out.Warnings, masker.Redact(fmt.Sprintf("cluster %s: the policy gate could not read live state, so its rules ran without it: %v", t.Name, err)))
			}
		}()
		opts.BeforeWrite = func(ctx context.Context) error {
			select {
			case <-gateDone:
			case <-ctx.Done():
				return ctx.Err()
			}
			if policy.Blocking(out.Findings) {
				return errPolicyBlocked
			}
			return nil
		}
	}
	if runHooks {
		gateCheck := opts.BeforeWrite
		opts.BeforeWrite = func(ctx context.Context) error {
			if gateCheck != nil {
				if err := gateCheck(ctx); err != nil {
					return err
				}
			}
			outs, err := runner.Run(ctx, hooks, hook.PreSync)
			out.Hooks = append(out.Hooks, outs...)
			preSyncErr = err
			return err
		}
	}
	// Clipped: every cluster's goroutine appends to the request's list, and
	// must not write into spare capacity the others share.
	protected := append(slices.Clip(req.Protected), ProtectedSecret(opts.Inventory.Namespace, opts.Inventory.Name, "the inventory of this sync"))
	if err := refuseProtected(checked, protected, target.Namespace); err != nil {
		if gateDone != nil {
			<-gateDone
		}
		// Stopped before the plan: no object has a result to carry it.
		out.Reason, out.Err, out.Stopped = PlanFailed, mask(masker, fmt.Errorf("cluster %s: %w", t.Name, err)), true
		return
	}
	if req.Hooks.Applying != nil {
		done := req.Hooks.Applying(t.Name)
		defer done()
	}
	cs, err := apply.NewManager(&target, opts).Apply(ctx, objects)
	if gateDone != nil {
		<-gateDone
	}
	maskChangeSet(masker, cs)
	out.ChangeSet = cs
	out.Reason, out.Err = classify(t.Name, cs, err, req.DryRun, out.Findings)
	out.Stopped = err != nil
	if preSyncErr != nil && cs != nil && errors.Is(cs.Blocked, preSyncErr) {
		out.Reason, out.Err = HookFailed, fmt.Errorf("cluster %s: %w; nothing else was written", t.Name, preSyncErr)
	}
	if runHooks {
		runLaterHooks(ctx, runner, hooks, &target, opts.Inventory, revision, out)
	}
	out.Err = mask(masker, out.Err)
	for i := range out.Hooks {
		out.Hooks[i].Err = mask(masker, out.Hooks[i].Err)
	}
}

// defaultPostSyncWait is how long a sync with PostSync hooks waits for
// its last wave to be healthy when its settings do not say.
const defaultPostSyncWait = 5 * time.Minute

// runLaterHooks runs the Sync and PostSync hooks after a successful
// apply, or the SyncFail hooks after a failed one that wrote or ran
// hooks, and records a revision whose hooks all ran.
func runLaterHooks(ctx context.Context, runner *hook.Runner, hooks []*hook.Hook, t *cluster.Target, inv apply.InventoryOptions, revision string, out *ClusterResult) {
	if out.Reason == Succeeded {
		for _, p := range []hook.Phase{hook.Sync, hook.PostSync} {
			outs, err := runner.Run(ctx, hooks, p)
			out.Hooks = append(out.Hooks, outs...)
			if err != nil {
				out.Reason, out.Err = HookFailed, fmt.Errorf("cluster %s: %w", t.Name, err)
				break
			}
		}
		if out.Reason == Succeeded {
			recordHooksRan(ctx, t, inv, revision)
			return
		}
	}
	switch out.Reason {
	case PolicyViolation, ClusterUnavailable, PlanFailed:
		if out.Reason != PlanFailed || !out.Wrote() {
			return // nothing of this revision was written
		}
	}
	outs, err := runner.Run(ctx, hooks, hook.SyncFail)
	out.Hooks = append(out.Hooks, outs...)
	if err != nil {
		out.Err = errors.Join(out.Err, fmt.Errorf("cluster %s: %w", t.Name, err))
	}
}

// classify turns an apply's outcome into a reason and an error. It is the
// one place that decides what a failure is called.
func classify(clusterName string, cs *apply.ChangeSet, err error, dryRun bool, findings []policy.Finding) (Reason, error) {
	// The apply's own errors name the cluster already.
	if err != nil {
		switch {
		case cluster.IsUnavailable(err):
			return ClusterUnavailable, fmt.Errorf("cluster %s became unreachable during the sync; nothing more was written or pruned there: %w", clusterName, err)
		case !dryRun && cs != nil && wrote(cs):
			return ApplyFailed, err
		}
		return PlanFailed, err
	}
	switch {
	case policy.Blocking(findings) || errors.Is(cs.Blocked, errPolicyBlocked):
		return PolicyViolation, fmt.Errorf("cluster %s: policy violations, nothing applied: %s", clusterName, blockingList(findings))
	case cs.Blocked != nil:
		return PlanFailed, fmt.Errorf("cluster %s: %w", clusterName, cs.Blocked)
	case cs.PruneRefused != nil:
		return PruneRefused, fmt.Errorf("cluster %s: %w", clusterName, cs.PruneRefused)
	case cs.UnhealthyWave != nil:
		return HealthCheckFailed, fmt.Errorf("cluster %s: wave %d is not healthy%s", clusterName, *cs.UnhealthyWave, unhealthyList(cs))
	case cs.Failed():
		err := fmt.Errorf("cluster %s: %w", clusterName, errors.Join(cs.Errors()...))
		if !dryRun && wrote(cs) {
			return ApplyFailed, err
		}
		return PlanFailed, err
	}
	return Succeeded, nil
}

// blockingList names the findings that block, one per line.
func blockingList(findings []policy.Finding) string {
	var msgs []string
	for _, f := range findings {
		if f.Severity == policy.Error {
			where := f.File
			if f.Line > 0 {
				where = fmt.Sprintf("%s:%d", f.File, f.Line)
			}
			msgs = append(msgs, fmt.Sprintf("%s: %s: %s: %s", where, f.Rule, f.Object, f.Message))
		}
	}
	return strings.Join(msgs, "; ")
}

// unhealthyList names the objects that are not healthy.
func unhealthyList(cs *apply.ChangeSet) string {
	var names []string
	for _, e := range cs.Entries {
		if e.Health != "" && e.Health != "Current" {
			names = append(names, e.Ref+" is "+string(e.Health))
		}
	}
	if len(names) == 0 {
		return ""
	}
	return ": " + strings.Join(names, ", ")
}

// summarize is a run's reason and error from its clusters'.
func summarize(clusters []ClusterResult) (Reason, error) {
	reason := Succeeded
	var errs []error
	for _, c := range clusters {
		if !c.Reason.Failed() {
			continue
		}
		errs = append(errs, c.Err)
		if reason == Succeeded || c.Reason == ClusterUnavailable {
			reason = c.Reason
		}
	}
	return reason, errors.Join(errs...)
}

// mask masks, in an error's text, every Secret value the Masker knows.
func mask(m *diff.Masker, err error) error { return m.RedactError(err) }

// maskChangeSet masks every text of a change set once the apply is over,
// when the Masker knows the values of the live Secrets its plan read as
// well as the bundle's: an object's error was masked when it failed, with
// what was known then. Empty texts cost nothing.
func maskChangeSet(m *diff.Masker, cs *apply.ChangeSet) {
	if cs == nil {
		return
	}
	for _, e := range cs.Entries {
		e.Err = m.RedactError(e.Err)
		for i := range e.Conflicts {
			e.Conflicts[i].Message = m.Redact(e.Conflicts[i].Message)
		}
		e.HealthMessage = m.Redact(e.HealthMessage)
	}
	cs.PruneRefused = m.RedactError(cs.PruneRefused)
	cs.Blocked = m.RedactError(cs.Blocked)
}
