package apply

import (
	"context"
	"fmt"
	"sort"
	"time"

	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/gitk8s/gitk8s/internal/cluster"
	"github.com/gitk8s/gitk8s/internal/health"
	"github.com/gitk8s/gitk8s/internal/render"
)

// writeWaves writes the objects not written yet, wave by wave and, inside a
// wave, kind group by kind group. Each wave but the last must pass a health
// gate before the next starts; the last is gated when Options.Wait is set.
func (r *run) writeWaves(ctx context.Context) error {
	waves := map[int][]*item{}
	for _, it := range r.items {
		if it.entry.Action != Failed {
			waves[it.entry.Wave] = append(waves[it.entry.Wave], it)
		}
	}
	order := make([]int, 0, len(waves))
	for w := range waves {
		order = append(order, w)
	}
	sort.Ints(order)
	// Namespaces and CRDs come first whatever their wave, as the change
	// set lists them: what the other objects need exists before them.
	foundation := filter(r.items, func(it *item) bool {
		return it.entry.Action != Failed && !it.written && phaseOf(it.entry.ID.GroupKind) == phaseFoundation
	})
	sort.SliceStable(foundation, func(i, j int) bool { return lessItem(foundation[i], foundation[j]) })
	var groups [][]*item
	for i, it := range foundation {
		if i == 0 || it.rank != foundation[i-1].rank || it.entry.Wave != foundation[i-1].entry.Wave {
			groups = append(groups, nil)
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], it)
	}
	for _, group := range groups {
		if err := r.write(ctx, group); err != nil {
			return err
		}
		if r.cs.Failed() {
			return nil
		}
	}
	for i, w := range order {
		for _, group := range byRank(filter(waves[w], func(it *item) bool { return !it.written })) {
			if err := r.write(ctx, group); err != nil {
				return err
			}
			if r.cs.Failed() {
				return nil
			}
		}
		last := i == len(order)-1
		timeout := r.opts.Wait
		if !last && timeout == 0 {
			timeout = r.opts.WaveTimeout
		}
		if timeout == 0 {
			continue
		}
		healthy, err := r.gate(ctx, waves[w], timeout)
		if err != nil {
			return err
		}
		if !healthy {
			wave := w
			r.cs.UnhealthyWave = &wave
			return nil
		}
	}
	return nil
}

// gate waits until the items are healthy and records each one's health.
func (r *run) gate(ctx context.Context, items []*item, timeout time.Duration) (bool, error) {
	resources := make([]health.Resource, 0, len(items))
	byID := map[string]*item{}
	for _, it := range items {
		resources = append(resources, health.Resource{ID: it.entry.ID, GVR: it.entry.GVR, Namespaced: it.entry.Namespaced})
		byID[it.entry.ID.String()] = it
	}
	res, err := health.Wait(ctx, r.target, resources, health.Options{Timeout: timeout, Concurrency: r.opts.Concurrency})
	if err != nil {
		return false, err
	}
	for _, s := range res.Objects {
		it := byID[s.Resource.ID.String()]
		it.entry.Health = s.Status
		if !s.Healthy() {
			it.entry.HealthMessage = s.Message
		}
	}
	return res.Healthy(), nil
}

// write applies the items that the plan says change, in parallel, then
// waits for any CRD among them to be Established. The inventory parent is
// brought up to date before the first write of a run.
func (r *run) write(ctx context.Context, items []*item) error {
	if !r.cleared && r.opts.BeforeWrite != nil {
		if err := r.opts.BeforeWrite(ctx); err != nil {
			r.cs.Blocked = err
			return nil
		}
	}
	r.cleared = true
	if err := r.ensureParent(ctx); err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.opts.Concurrency)
	for _, it := range items {
		if it.entry.Action == Unchanged || it.entry.Action == Failed {
			it.written = true
			continue
		}
		g.Go(func() error {
			if it.recreate {
				if err := r.deleteAndWait(gctx, it); err != nil {
					if cluster.IsUnavailable(err) {
						return err
					}
					r.fail(it, fmt.Errorf("recreate: %w", err))
					it.written = true
					return nil
				}
			}
			result, err := r.serverSideApply(gctx, r.resourceFor(it), it, false, r.opts.ForceConflicts)
			it.written = true
			if err != nil {
				if cluster.IsUnavailable(err) {
					return fmt.Errorf("cluster %s: apply %s: %w", r.target.Name, it.entry.Ref, err)
				}
				r.fail(it, fmt.Errorf("apply failed: %w", err))
				return nil
			}
			it.entry.Applied = result
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, it := range items {
		if it.entry.ID.GroupKind == crdGK && it.entry.Action != Failed {
			if err := r.waitEstablished(ctx, it); err != nil {
				r.fail(it, err)
			}
		}
	}
	return nil
}

// ensureParent makes the inventory list every kind and namespace this run
// may write to, before the first write, so that an interrupted apply
// leaves no member the inventory cannot find.
func (r *run) ensureParent(ctx context.Context) error {
	if r.inv == nil || r.parentWritten {
		return nil
	}
	kinds := map[schema.GroupKind]bool{}
	namespaces := map[string]bool{}
	for gk := range r.inv.groupKinds {
		kinds[gk] = true
	}
	for ns := range r.inv.namespaces {
		namespaces[ns] = true
	}
	changed := !r.inv.exists || len(r.adopted) > 0
	for _, it := range r.items {
		if it.entry.Action == Failed {
			continue
		}
		if !kinds[it.entry.ID.GroupKind] {
			kinds[it.entry.ID.GroupKind], changed = true, true
		}
		if ns := it.entry.ID.Namespace; ns != "" && !namespaces[ns] {
			namespaces[ns], changed = true, true
		}
	}
	if changed {
		if err := r.writeInventory(ctx, r.inv, kinds, namespaces); err != nil {
			return err
		}
	}
	r.parentWritten = true
	return nil
}

func (m *Manager) serverSideApply(ctx context.Context, ri dynamic.ResourceInterface, it *item, dryRun, force bool) (*unstructured.Unstructured, error) {
	opts := metav1.PatchOptions{FieldManager: m.opts.FieldManager, Force: &force}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	return ri.Patch(ctx, it.obj.GetName(), types.ApplyPatchType, it.data, opts)
}

// deleteAndWait deletes the object and waits until it is gone.
func (r *run) deleteAndWait(ctx context.Context, it *item) error {
	ri := r.resourceFor(it)
	policy := metav1.DeletePropagationBackground
	err := ri.Delete(ctx, it.obj.GetName(), metav1.DeleteOptions{PropagationPolicy: &policy})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return waitGone(ctx, ri, it.obj.GetName(), r.opts.PruneTimeout)
}

// waitGone polls until the object is not found.
func waitGone(ctx context.Context, ri dynamic.ResourceInterface, name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		live, err := ri.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil && ctx.Err() == nil {
			return err
		}
		select {
		case <-ctx.Done():
			if live != nil && len(live.GetFinalizers()) > 0 {
				return fmt.Errorf("still present after %s, held by finalizers %v", timeout, live.GetFinalizers())
			}
			return fmt.Errorf("still present after %s", timeout)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitEstablished waits until a CRD's Established condition is True.
func (m *Manager) waitEstablished(ctx context.Context, it *item) error {
	ctx, cancel := context.WithTimeout(ctx, m.opts.CRDTimeout)
	defer cancel()
	ri := m.resourceFor(it)
	for {
		crd, err := ri.Get(ctx, it.obj.GetName(), metav1.GetOptions{})
		if err == nil && conditionTrue(crd, "Established") {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not Established after %s: the API server did not accept its names or schema", m.opts.CRDTimeout)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (m *Manager) resourceFor(it *item) dynamic.ResourceInterface {
	r := m.target.Dynamic.Resource(it.entry.GVR)
	if it.entry.Namespaced {
		return r.Namespace(it.obj.GetNamespace())
	}
	return r
}

// fail marks the item failed with an error that starts with its source and
// name. The API server may quote a Secret's values when it refuses the
// Secret, and an admission webhook or a custom resource's validation may
// quote them for any object, so every error has every known value masked.
func (m *Manager) fail(it *item, err error) {
	it.entry.Action = Failed
	ref := it.entry.Ref
	if ref == "" {
		ref = render.RefOf(it.obj)
	}
	it.entry.Err = &render.Error{Source: it.entry.Source, Object: ref, Err: m.opts.Masker.RedactError(err)}
}

func conditionTrue(u *unstructured.Unstructured, condType string) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == condType && m["status"] == "True" {
			return true
		}
	}
	return false
}

func filter(items []*item, keep func(*item) bool) []*item {
	var out []*item
	for _, it := range items {
		if keep(it) {
			out = append(out, it)
		}
	}
	return out
}

// byRank groups items by kind rank, lowest first, keeping their order.
func byRank(items []*item) [][]*item {
	sorted := make([]*item, len(items))
	copy(sorted, items)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].rank < sorted[j].rank })
	var groups [][]*item
	for i, it := range sorted {
		if i == 0 || it.rank != sorted[i-1].rank {
			groups = append(groups, nil)
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], it)
	}
	return groups
}
