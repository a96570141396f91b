package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/cluster"
	"github.com/gitk8s/gitk8s/internal/reconcile"
)

// ReasonInvalidSpec is the reason of a Sync whose spec the daemon refuses.
const ReasonInvalidSpec = "InvalidSpec"

// impersonationKey names a Target acting as a user.
type impersonationKey struct {
	target *cluster.Target
	user   string
}

// homeDynamic is the dynamic client of the home cluster.
func (d *Daemon) homeDynamic() (dynamic.Interface, error) {
	home := d.cfg.HomeCluster()
	t, ok := d.targets[home]
	if !ok {
		return nil, fmt.Errorf("home cluster %s is not in clusters", home)
	}
	return t.Dynamic, nil
}

// watchSyncResources starts, once, an informer on the Sync resources of the
// home cluster when syncResources.enabled: each Sync added, changed or
// deleted changes the daemon's syncs at once, without a restart. It fails
// when the Sync CRD is not installed.
func (d *Daemon) watchSyncResources(ctx context.Context) error {
	if d.cfg.SyncResources == nil || !d.cfg.SyncResources.Enabled {
		return nil
	}
	var err error
	d.syncResourcesOnce.Do(func() {
		var client dynamic.Interface
		if client, err = d.homeDynamic(); err != nil {
			return
		}
		if _, err = client.Resource(SyncGVR).List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
			if apierrors.IsNotFound(err) {
				err = fmt.Errorf("syncResources.enabled, but cluster %s does not serve %s/%s Sync: install the CRD first: kubectl apply -f deploy/05-crds.yaml", d.cfg.HomeCluster(), SyncGroup, SyncVersion)
			} else {
				err = fmt.Errorf("syncResources: list Syncs in cluster %s: %w", d.cfg.HomeCluster(), err)
			}
			return
		}
		factory := dynamicinformer.NewDynamicSharedInformerFactory(client, 0)
		informer := factory.ForResource(SyncGVR).Informer()
		_ = informer.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
			d.log.Warn("cannot watch Sync resources", "cluster", d.cfg.HomeCluster(), "error", err)
		})
		var reg cache.ResourceEventHandlerRegistration
		reg, err = informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { d.syncResourceChanged(ctx, obj) },
			UpdateFunc: func(_, obj any) { d.syncResourceChanged(ctx, obj) },
			DeleteFunc: func(obj any) {
				if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
					obj = tomb.Obj
				}
				if u, ok := obj.(*unstructured.Unstructured); ok {
					d.removeResourceSync(ResourceSyncName(u.GetNamespace(), u.GetName()))
				}
			},
		})
		if err != nil {
			return
		}
		d.syncResourcesSynced = reg.HasSynced
		factory.Start(ctx.Done())
	})
	return err
}

// acting reports whether this daemon writes: it leads, or is alone.
func (d *Daemon) acting() bool { return d.leader.Load() || !d.cfg.LeaderElection.Enabled }

// waitForSyncResources blocks until the Syncs have been listed once.
func (d *Daemon) waitForSyncResources(ctx context.Context) bool {
	if d.syncResourcesSynced == nil {
		return true
	}
	return cache.WaitForCacheSync(ctx.Done(), d.syncResourcesSynced)
}

// syncResourceChanged takes a Sync as it is now: a valid one is served
// (and triggered when what it asks changed), an invalid one is not, and
// says why in its status.
func (d *Daemon) syncResourceChanged(ctx context.Context, obj any) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok || !d.cfg.SyncResources.serves(u.GetNamespace()) {
		return
	}
	name := ResourceSyncName(u.GetNamespace(), u.GetName())
	s, err := d.cfg.SyncFromResource(u)
	if err != nil {
		d.removeResourceSync(name)
		if s.Resource != nil && s.Resource.Deleting && s.Resource.HasFinalizer {
			// Nothing valid can be pruned; let the Sync go.
			d.log.Warn("deleted Sync with an invalid spec: what it applied is left in place", "sync", name, "error", err)
			if d.acting() {
				d.removeFinalizer(ctx, s.Resource)
			}
			return
		}
		d.log.Warn("Sync refused", "sync", name, "error", err)
		if d.acting() && s.Resource != nil && !s.Resource.Deleting {
			d.writeInvalidStatus(ctx, s, err)
		}
		return
	}
	clusters, _ := d.cfg.clusterNamesOf(s)
	d.mu.Lock()
	old, existed := d.resourceSyncs[name]
	d.resourceSyncs[name] = s
	st := d.status[name]
	if st == nil {
		st = &SyncStatus{Name: name, Resource: s.Resource.Namespace + "/" + s.Resource.Name}
		d.status[name] = st
	}
	st.Clusters = clusters
	sus, listed := d.suspensionsNow[name]
	switch {
	case s.Suspend:
		st.Suspended, st.SuspendedReason, st.SuspendedBy, st.SuspendedAt = true, ResourceSuspendReason, "", time.Time{}
	case listed:
		st.Suspended, st.SuspendedReason, st.SuspendedBy, st.SuspendedAt = true, sus.Reason, sus.By, sus.At
	default:
		st.Suspended, st.SuspendedReason, st.SuspendedBy, st.SuspendedAt = false, "", "", time.Time{}
	}
	d.mu.Unlock()
	if !existed {
		d.log.Info("Sync added", "sync", name, "generation", s.Resource.Generation)
		select {
		case d.syncsChanged <- struct{}{}:
		default:
		}
	}
	switch {
	case !existed, old.Resource.Generation != s.Resource.Generation, old.Resource.Deleting != s.Resource.Deleting:
		d.wake(name)
	case old.Resource.RequestedAt != s.Resource.RequestedAt:
		// A requested reconcile applies even when the revision is the one
		// applied, as a drift heal does.
		d.driftSeen.Store(name, true)
		d.wake(name)
	}
}

// removeResourceSync stops serving a Sync: its loop ends at its next wake,
// its drift watches stop.
func (d *Daemon) removeResourceSync(name string) {
	d.mu.Lock()
	_, existed := d.resourceSyncs[name]
	delete(d.resourceSyncs, name)
	delete(d.status, name)
	d.mu.Unlock()
	if existed {
		d.log.Info("Sync removed", "sync", name)
		d.stopDriftOf(name)
		d.metrics.appliedRev.DeletePartialMatch(map[string]string{"sync": name})
	}
	d.wake(name)
}

// writeInvalidStatus says in a Sync's status that its spec is refused.
func (d *Daemon) writeInvalidStatus(ctx context.Context, s SyncConfig, err error) {
	now := time.Now()
	st := SyncStatus{Name: s.Name, ObservedGeneration: s.Resource.Generation}
	msg := err.Error()
	st.setCondition(Condition{Type: "Ready", Status: "False", Reason: ReasonInvalidSpec, Message: msg, LastTransitionTime: now})
	st.setCondition(Condition{Type: "Stalled", Status: "True", Reason: ReasonInvalidSpec, Message: msg, LastTransitionTime: now})
	st.setCondition(Condition{Type: "Reconciling", Status: "False", Reason: ReasonInvalidSpec, LastTransitionTime: now})
	d.applyResourceStatus(ctx, s.Resource, resourceStatus(s, st, ""))
}

// writeStatus writes what the daemon knows of a sync into its Sync
// resource's status; a sync of the configuration file has none.
func (d *Daemon) writeStatus(ctx context.Context, s SyncConfig) {
	if s.Resource == nil {
		return
	}
	st := d.statusOf(s.Name)
	d.applyResourceStatus(ctx, s.Resource, resourceStatus(s, st, st.LastHandledReconcileAt))
}

// maxConditionMessage is the API server's bound on a condition's message.
const maxConditionMessage = 32768

// applyResourceStatus writes a Sync's status with server-side apply on the
// status subresource, so fields the daemon no longer sets go away.
func (d *Daemon) applyResourceStatus(ctx context.Context, r *ResourceRef, status SyncResourceStatus) {
	for i, c := range status.Conditions {
		if len(c.Message) > maxConditionMessage {
			status.Conditions[i].Message = c.Message[:maxConditionMessage-3] + "..."
		}
	}
	client, err := d.homeDynamic()
	if err != nil {
		return
	}
	body, err := json.Marshal(map[string]any{
		"apiVersion": SyncGroup + "/" + SyncVersion, "kind": "Sync",
		"metadata": map[string]any{"name": r.Name, "namespace": r.Namespace},
		"status":   status,
	})
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	force := true
	_, err = client.Resource(SyncGVR).Namespace(r.Namespace).Patch(ctx, r.Name, types.ApplyPatchType, body,
		metav1.PatchOptions{FieldManager: apply.FieldManager, Force: &force}, "status")
	if err != nil && !apierrors.IsNotFound(err) {
		d.log.Warn("cannot write the Sync's status", "sync", ResourceSyncName(r.Namespace, r.Name), "error", err)
	}
}

// addFinalizer puts SyncFinalizer on a Sync, so that deleting it waits for
// the daemon to prune what it applied.
func (d *Daemon) addFinalizer(ctx context.Context, r *ResourceRef) error {
	return d.editFinalizers(ctx, r, func(f []string) []string {
		if slices.Contains(f, SyncFinalizer) {
			return f
		}
		return append(f, SyncFinalizer)
	})
}

// removeFinalizer lets a deleted Sync go.
func (d *Daemon) removeFinalizer(ctx context.Context, r *ResourceRef) {
	err := d.editFinalizers(ctx, r, func(f []string) []string {
		return slices.DeleteFunc(f, func(s string) bool { return s == SyncFinalizer })
	})
	if err != nil {
		d.log.Warn("cannot remove the Sync's finalizer", "sync", ResourceSyncName(r.Namespace, r.Name), "error", err)
	}
}

// editFinalizers changes a Sync's finalizers, read fresh, retrying on
// conflicts.
func (d *Daemon) editFinalizers(ctx context.Context, r *ResourceRef, edit func([]string) []string) error {
	client, err := d.homeDynamic()
	if err != nil {
		return err
	}
	syncs := client.Resource(SyncGVR).Namespace(r.Namespace)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		u, err := syncs.Get(ctx, r.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if u.GetUID() != r.UID {
			return nil // another Sync of that name now
		}
		before := u.GetFinalizers()
		after := edit(slices.Clone(before))
		if slices.Equal(before, after) {
			return nil
		}
		u.SetFinalizers(after)
		_, err = syncs.Update(ctx, u, metav1.UpdateOptions{FieldManager: apply.FieldManager})
		return err
	})
}

// finalize ends a deleted Sync: it prunes what the Sync applied (or, with
// deletionPolicy Orphan or while suspended, leaves it), deletes the
// inventory, and removes the finalizer. A prune the guards refuse, or one
// that fails, keeps the finalizer and says why in the status; the loop
// retries with backoff.
func (d *Daemon) finalize(ctx context.Context, s SyncConfig) error {
	log := d.log.With("sync", s.Name)
	if !s.Resource.HasFinalizer {
		return nil
	}
	orphan := s.Resource.DeletionPolicy == DeletionOrphan || d.suspended(s.Name)
	// Only the clusters are needed: nothing is rendered, and no
	// credential of the source is read.
	req := reconcile.Request{Name: s.Name, Settings: s.Settings()}
	var err error
	if req.Clusters, err = d.requestClusters(ctx, s); err != nil {
		d.record(s.Name, "", ReasonPlanFailed, err, nil)
		d.writeStatus(ctx, s)
		return err
	}
	d.stopDriftOf(s.Name)
	res := reconcile.Uninstall(ctx, req, orphan)
	if res.Err != nil {
		log.Warn("deleted Sync not finalized", "reason", res.Reason, "error", res.Err)
		err := fmt.Errorf("the Sync is deleted but what it applied could not be pruned (set spec.deletionPolicy: Orphan to leave it): %w", res.Err)
		d.record(s.Name, "", string(res.Reason), err, nil)
		d.writeStatus(ctx, s)
		return res.Err
	}
	pruned := 0
	for _, c := range res.Clusters {
		pruned += len(prunedOf(&c))
	}
	log.Info("deleted Sync finalized", "pruned", pruned, "orphaned", orphan)
	d.removeFinalizer(ctx, s.Resource)
	return nil
}

// impersonated is the Target a sync's requests go through: t itself, or t
// acting as the sync's ServiceAccount.
func (d *Daemon) impersonated(t *cluster.Target, s SyncConfig) (*cluster.Target, error) {
	user := s.Impersonates()
	if t == nil || user == "" {
		return t, nil
	}
	key := impersonationKey{target: t, user: user}
	d.impersonatingMu.Lock()
	defer d.impersonatingMu.Unlock()
	if it, ok := d.impersonating[key]; ok {
		return it, nil
	}
	it, err := t.Impersonating(user)
	if err != nil {
		return nil, err
	}
	d.impersonating[key] = it
	return it, nil
}
