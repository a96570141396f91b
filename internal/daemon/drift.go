package daemon

import (
	"context"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/cli-utils/pkg/object"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/cluster"
)

// driftWatch watches, metadata only, the objects a sync manages in one
// cluster, and reports a change by someone else: a field gitk8s set that
// was changed, removed or taken over, or an object deleted.
type driftWatch struct {
	mu       sync.Mutex
	watching map[schema.GroupVersionResource]bool
	factory  metadatainformer.SharedInformerFactory
	stop     <-chan struct{}
	// target is the Target watched through; cancel ends the watch.
	target *cluster.Target
	cancel context.CancelFunc
}

// watchDrift makes sure the sync's objects of these resources in this
// cluster are watched. The first event of each object (its initial list)
// only records how gitk8s owns it.
func (d *Daemon) watchDrift(ctx context.Context, syncName string, t *cluster.Target, inventoryID string, resources []schema.GroupVersionResource) {
	d.driftMu.Lock()
	key := syncName + "/" + t.Name
	w, ok := d.drifts[key]
	if ok && w.target != t {
		// The cluster's kubeconfig came from a Secret that changed: the
		// old credentials may be revoked, so watch anew with the new ones.
		w.cancel()
		ok = false
	}
	if !ok {
		wctx, cancel := context.WithCancel(ctx)
		w = &driftWatch{watching: map[schema.GroupVersionResource]bool{}, stop: wctx.Done(), target: t, cancel: cancel,
			factory: metadatainformer.NewFilteredSharedInformerFactory(t.Metadata, 0, metav1.NamespaceAll, func(o *metav1.ListOptions) {
				o.LabelSelector = apply.LabelPartOf + "=" + inventoryID
			})}
		d.drifts[key] = w
	}
	d.driftMu.Unlock()

	memKey := apply.MemoryKey(t.Server, inventoryID, "gitk8s")
	w.mu.Lock()
	defer w.mu.Unlock()
	started := false
	for _, gvr := range resources {
		if w.watching[gvr] {
			continue
		}
		gvk, err := t.Mapper.KindFor(gvr)
		if err != nil {
			continue
		}
		w.watching[gvr] = true
		informer := w.factory.ForResource(gvr).Informer()
		_, _ = informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
			UpdateFunc: func(oldObj, newObj any) {
				o, ok1 := oldObj.(*metav1.PartialObjectMetadata)
				n, ok2 := newObj.(*metav1.PartialObjectMetadata)
				if !ok1 || !ok2 {
					return
				}
				own := apply.OwnershipOf(n.ManagedFields, "gitk8s")
				if own == apply.OwnershipOf(o.ManagedFields, "gitk8s") {
					return // status, or fields gitk8s does not set
				}
				// gitk8s's own writes are the ones its memory recorded.
				entries, _ := d.memory.Load(memKey)
				id := object.ObjMetadata{GroupKind: gvk.GroupKind(), Namespace: n.Namespace, Name: n.Name}.String()
				if rem, ok := entries[id]; ok && rem.Ownership == own {
					return
				}
				d.drifted(syncName, t.Name, n.Namespace+"/"+n.Name)
			},
			DeleteFunc: func(obj any) {
				if m, ok := obj.(*metav1.PartialObjectMetadata); ok && m.DeletionTimestamp == nil && !d.pruning(syncName) {
					d.drifted(syncName, t.Name, m.Namespace+"/"+m.Name)
				}
			},
		})
		started = true
	}
	if started {
		w.factory.Start(w.stop)
	}
}

// drifted notes drift in a sync and reconciles it now (drift: heal) or
// only reports it (drift: report).
func (d *Daemon) drifted(syncName, clusterName, object string) {
	d.log.Info("drift", "sync", syncName, "cluster", clusterName, "object", object)
	d.metrics.drift.WithLabelValues(syncName).Inc()
	d.mu.Lock()
	st := d.status[syncName]
	st.DriftedObjects++
	d.mu.Unlock()
	if d.driftMode(syncName) == DriftReport {
		return
	}
	d.driftSeen.Store(syncName, true)
	d.Trigger(syncName)
}

func (d *Daemon) pruning(syncName string) bool {
	v, ok := d.pruningNow.Load(syncName)
	return ok && v.(bool)
}

func (d *Daemon) driftMode(syncName string) string {
	for _, s := range d.cfg.Syncs {
		if s.Name == syncName && s.Drift != "" {
			return s.Drift
		}
	}
	return DriftHeal
}
