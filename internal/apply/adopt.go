package apply

import (
	"context"
	"encoding/json"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
)

// adoptedInventory is an earlier ApplySet parent whose members an apply
// takes over.
type adoptedInventory struct {
	inv     *inventory
	members map[string]*member
}

// readAdopted reads the parents named by Options.Inventory.Adopt that
// exist, widens this run's inventory by their kinds and namespaces, and
// makes their members members of this run.
func (r *run) readAdopted(ctx context.Context, kinds map[schema.GroupKind]bool) error {
	for _, name := range r.opts.Inventory.Adopt {
		if name == "" || name == r.inv.name {
			continue
		}
		old, err := r.readParent(ctx, name, r.inv.namespace)
		if err != nil {
			return err
		}
		if !old.exists {
			continue
		}
		for gk := range old.groupKinds {
			kinds[gk] = true
			r.inv.groupKinds[gk] = true
		}
		for ns := range old.namespaces {
			r.inv.namespaces[ns] = true
		}
		members, err := r.listMembers(ctx, old, kinds)
		if err != nil {
			return err
		}
		r.adopted = append(r.adopted, &adoptedInventory{inv: old, members: members})
	}
	return nil
}

// mergeAdopted adds the adopted parents' members to this run's, after the
// run's own members were listed.
func (r *run) mergeAdopted() {
	for _, a := range r.adopted {
		for key, mb := range a.members {
			if _, ok := r.members[key]; !ok {
				r.members[key] = mb
			}
		}
	}
}

// finishAdoption runs after an apply without failures: every adopted
// member that is still there and was not applied again by this run is
// labelled as a member of this inventory, and then the earlier parent,
// which no longer has members, is deleted. A failure leaves the earlier
// parent in place, to finish next time.
func (r *run) finishAdoption(ctx context.Context) error {
	if len(r.adopted) == 0 {
		return nil
	}
	if err := r.ensureParent(ctx); err != nil {
		return err
	}
	applied := map[string]bool{}
	for _, it := range r.items {
		applied[it.entry.ID.String()] = it.written && it.entry.Action != Failed
	}
	gone := map[string]bool{}
	for _, p := range r.prunes {
		gone[p.member.id.String()] = p.gone
	}
	label, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]string{LabelPartOf: r.inv.id}}})
	if err != nil {
		return err
	}
	for _, a := range r.adopted {
		for key, mb := range a.members {
			if applied[key] || gone[key] {
				continue
			}
			var ri dynamic.ResourceInterface = r.target.Dynamic.Resource(mb.gvr)
			if mb.namespaced {
				ri = r.target.Dynamic.Resource(mb.gvr).Namespace(mb.id.Namespace)
			}
			_, err := ri.Patch(ctx, mb.id.Name, types.MergePatchType, label, metav1.PatchOptions{FieldManager: r.opts.FieldManager + "-applyset"})
			if err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("cluster %s: adopt %s from inventory Secret/%s/%s: %w", r.target.Name, key, a.inv.namespace, a.inv.name, err)
			}
		}
		err := r.target.Dynamic.Resource(secretsGVR).Namespace(a.inv.namespace).Delete(ctx, a.inv.name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("cluster %s: delete adopted inventory Secret/%s/%s: %w", r.target.Name, a.inv.namespace, a.inv.name, err)
		}
	}
	return nil
}
