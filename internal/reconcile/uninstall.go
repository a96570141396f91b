package reconcile

import (
	"context"
	"errors"
	"fmt"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/cluster"
	"github.com/gitk8s/gitk8s/internal/diff"
)

var secretsGVR = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}

// Uninstall removes what a sync applied, in each of its clusters, when the
// sync itself is deleted. With orphan set the objects stay and only the
// inventory goes. Otherwise every member of the inventory is pruned, in
// reverse apply order and each waited for, under the prune guard of
// destructive kinds (Namespaces, CRDs, volumes and claims need
// Settings.AllowDestructivePrune); the guard on the share of the
// inventory does not hold, since the whole inventory is meant. The
// inventory is deleted only once its members are gone; a cluster where a
// prune was refused or failed keeps it, and the Result says why, so a
// retry finishes the work. Req.Source is not read.
func Uninstall(ctx context.Context, req Request, orphan bool) *Result {
	res := &Result{Name: req.Name, Masker: diff.NewMasker()}
	res.Clusters = make([]ClusterResult, len(req.Clusters))
	inv := req.Settings.InventoryOf(req.Name)
	var wg sync.WaitGroup
	for i, c := range req.Clusters {
		res.Clusters[i].Name = c.Name
		wg.Go(func() {
			out := &res.Clusters[i]
			if c.Target == nil {
				out.Reason, out.Err = ClusterUnavailable, fmt.Errorf("cluster %s: %w", c.Name, c.Unavailable)
				return
			}
			if !orphan {
				opts := req.Settings.applyOptions(req.Name, false, nil)
				opts.Prune, opts.MaxPruneShare, opts.Wait, opts.Masker = true, 1, 0, res.Masker
				opts.Inventory.Adopt = nil
				cs, err := apply.NewManager(c.Target, opts).Apply(ctx, nil)
				out.ChangeSet = cs
				if err != nil || cs == nil {
					out.Stopped = true
					out.Reason, out.Err = ApplyFailed, mask(res.Masker, err)
					if cluster.IsUnavailable(err) {
						out.Reason = ClusterUnavailable
					}
					return
				}
				if cs.PruneRefused != nil {
					out.Reason, out.Err = PruneRefused, mask(res.Masker, fmt.Errorf("cluster %s: %w", c.Name, cs.PruneRefused))
					return
				}
				if cs.Failed() {
					out.Reason, out.Err = ApplyFailed, mask(res.Masker, fmt.Errorf("cluster %s: %w", c.Name, errors.Join(cs.Errors()...)))
					return
				}
			}
			err := c.Target.Dynamic.Resource(secretsGVR).Namespace(inv.Namespace).Delete(ctx, inv.Name, metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				out.Reason, out.Err = ApplyFailed, fmt.Errorf("cluster %s: delete the inventory Secret/%s/%s: %w", c.Name, inv.Namespace, inv.Name, err)
				if cluster.IsUnavailable(err) {
					out.Reason = ClusterUnavailable
				}
				return
			}
			out.Reason = Succeeded
		})
	}
	wg.Wait()
	res.Reason, res.Err = summarize(res.Clusters)
	return res
}
