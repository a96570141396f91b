package apply

import (
	"context"
	"fmt"
	"sort"

	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/gitk8s/gitk8s/internal/cluster"
	"github.com/gitk8s/gitk8s/internal/render"
)

// pruneItem is an inventory member that is no longer rendered.
type pruneItem struct {
	member *member
	entry  *ChangeSetEntry
	// gone is set once its deletion is confirmed.
	gone bool
}

// destructiveKinds are never pruned without AllowDestructivePrune: deleting
// them deletes data or everything inside them.
var destructiveKinds = map[schema.GroupKind]bool{
	namespaceGK:                     true,
	crdGK:                           true,
	{Kind: "PersistentVolume"}:      true,
	{Kind: "PersistentVolumeClaim"}: true,
}

// planPrune finds the inventory members that are no longer rendered and
// applies the prune guards. It only runs when pruning is asked for.
func (r *run) planPrune() {
	if r.inv == nil || !r.opts.Prune {
		return
	}
	rendered := map[string]bool{}
	for _, it := range r.items {
		rendered[it.entry.ID.String()] = true
	}
	var candidates []*pruneItem
	for key, mb := range r.members {
		if rendered[key] {
			continue
		}
		p := &pruneItem{member: mb, entry: &ChangeSetEntry{
			ID: mb.id, Ref: render.Ref(mb.id.GroupKind, mb.id.Namespace, mb.id.Name),
			GVR: mb.gvr, Namespaced: mb.namespaced, Action: Pruned,
		}}
		if mb.pruneDisabled {
			p.entry.Action = Kept
		}
		candidates = append(candidates, p)
	}
	// Delete in reverse apply order: workloads before their Namespace,
	// custom resources before their CRD.
	sort.Slice(candidates, func(i, j int) bool {
		ri, rj := rankOf(candidates[i].member.id.GroupKind), rankOf(candidates[j].member.id.GroupKind)
		if ri != rj {
			return ri > rj
		}
		return candidates[i].entry.Ref < candidates[j].entry.Ref
	})
	r.prunes = candidates
	for _, p := range candidates {
		r.cs.Entries = append(r.cs.Entries, p.entry)
	}

	var deleting []*pruneItem
	var destructive []string
	for _, p := range candidates {
		if p.entry.Action != Pruned {
			continue
		}
		deleting = append(deleting, p)
		if destructiveKinds[p.member.id.GroupKind] {
			destructive = append(destructive, p.entry.Ref)
		}
	}
	if r.opts.AllowDestructivePrune || len(deleting) == 0 {
		return
	}
	var refusal error
	switch {
	case len(destructive) > 0:
		refusal = fmt.Errorf("prune refused: it would delete %v, which deletes data or everything inside; allow destructive prunes for this sync (allowDestructivePrune in a daemon sync, --allow-destructive-prune on the command line), or keep the objects with the annotation %s: disabled", destructive, AnnotationPrune)
	case float64(len(deleting)) > r.opts.MaxPruneShare*float64(len(r.members)):
		refusal = fmt.Errorf("prune refused: it would delete %d of the %d objects in the inventory, more than %.0f%%; if the repository really lost them, allow destructive prunes for this sync (allowDestructivePrune in a daemon sync, --allow-destructive-prune on the command line)", len(deleting), len(r.members), 100*r.opts.MaxPruneShare)
	}
	if refusal != nil {
		r.cs.PruneRefused = refusal
		for _, p := range deleting {
			p.entry.Action = Skipped
		}
	}
}

// prune deletes the planned prune candidates, in order of kind, and waits
// until each is gone. Only then is the inventory narrowed: a member whose
// deletion failed or is still pending stays in it and is retried next time.
func (r *run) prune(ctx context.Context) error {
	var groups [][]*pruneItem
	for i, p := range r.prunes {
		if i == 0 || rankOf(p.member.id.GroupKind) != rankOf(r.prunes[i-1].member.id.GroupKind) {
			groups = append(groups, nil)
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], p)
	}
	for _, group := range groups {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(r.opts.Concurrency)
		for _, p := range group {
			if p.entry.Action != Pruned {
				continue
			}
			g.Go(func() error {
				err := r.deleteMember(gctx, p)
				switch {
				case err == nil:
					p.gone = true
				case cluster.IsUnavailable(err):
					return fmt.Errorf("cluster %s: prune %s: %w", r.target.Name, p.entry.Ref, err)
				default:
					p.entry.Action = Failed
					p.entry.Err = &render.Error{Object: p.entry.Ref, Source: render.Source{File: "(inventory)"},
						Err: fmt.Errorf("prune failed, kept in the inventory to retry: %w", err)}
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
	}
	return r.narrowInventory(ctx)
}

func (r *run) deleteMember(ctx context.Context, p *pruneItem) error {
	var ri dynamic.ResourceInterface = r.target.Dynamic.Resource(p.member.gvr)
	if p.member.namespaced {
		ri = r.target.Dynamic.Resource(p.member.gvr).Namespace(p.member.id.Namespace)
	}
	policy := metav1.DeletePropagationBackground
	err := ri.Delete(ctx, p.member.id.Name, metav1.DeleteOptions{PropagationPolicy: &policy})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	return waitGone(ctx, ri, p.member.id.Name, r.opts.PruneTimeout)
}

// narrowInventory makes the parent list what is rendered plus what could
// not be pruned.
func (r *run) narrowInventory(ctx context.Context) error {
	kinds := map[schema.GroupKind]bool{}
	namespaces := map[string]bool{r.inv.namespace: true}
	for _, it := range r.items {
		kinds[it.entry.ID.GroupKind] = true
		if it.entry.ID.Namespace != "" {
			namespaces[it.entry.ID.Namespace] = true
		}
	}
	for _, p := range r.prunes {
		if p.gone {
			continue
		}
		kinds[p.member.id.GroupKind] = true
		if p.member.id.Namespace != "" {
			namespaces[p.member.id.Namespace] = true
		}
	}
	if sameSet(kinds, r.inv.groupKinds) && sameSet(namespaces, r.inv.namespaces) {
		return nil
	}
	return r.writeInventory(ctx, r.inv, kinds, namespaces)
}

func sameSet[K comparable](a, b map[K]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}
