package daemon

import (
	"context"
	"sort"
	"strings"
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
	watching map[schema.GroupVersionResource]cache.SharedIndexInformer
	factory  metadatainformer.SharedInformerFactory
	stop     <-chan struct{}
}

// unsynced names the resources whose informers have not listed yet.
func (w *driftWatch) unsynced() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for gvr, informer := range w.watching {
		if !informer.HasSynced() {
			out = append(out, gvr.Resource)
		}
	}
	sort.Strings(out)
	return out
}

// driftUnsynced says which drift watches have informers that have not
// synced yet, as "sync/cluster: resources"; empty when all have.
func (d *Daemon) driftUnsynced() []string {
	d.driftMu.Lock()
	keys := make([]string, 0, len(d.drifts))
	watches := make([]*driftWatch, 0, len(d.drifts))
	for k, w := range d.drifts {
		keys = append(keys, k)
		watches = append(watches, w)
	}
	d.driftMu.Unlock()
	var out []string
	for i, w := range watches {
		if r := w.unsynced(); len(r) > 0 {
			out = append(out, keys[i]+": "+strings.Join(r, ","))
		}
	}
	sort.Strings(out)
	return out
}

// watchDrift makes sure the sync's objects of these resources in this
// cluster are watched. The first event of each object (its initial list)
// only records how gitk8s owns it.
func (d *Daemon) watchDrift(ctx context.Context, syncName string, t *cluster.Target, inventoryID string, resources []schema.GroupVersionResource) {
	d.driftMu.Lock()
	key := syncName + "/" + t.Name
	w, ok := d.drifts[key]
	if !ok {
		w = &driftWatch{watching: map[schema.GroupVersionResource]cache.SharedIndexInformer{}, stop: ctx.Done(),
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
		if _, ok := w.watching[gvr]; ok {
			continue
		}
		gvk, err := t.Mapper.KindFor(gvr)
		if err != nil {
			continue
		}
		informer := w.factory.ForResource(gvr).Informer()
		w.watching[gvr] = informer
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
