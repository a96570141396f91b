package daemon

import (
	"context"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/cli-utils/pkg/object"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/cluster"
)

// sharedWatch is one metadata informer per resource, for one cluster as
// one identity (and, for a team's Sync, in one namespace), over every
// object any ApplySet holds: all the syncs it serves share it, so many
// syncs of one cluster cost one list and one watch per kind, and one cache.
type sharedWatch struct {
	mu        sync.Mutex
	factory   metadatainformer.SharedInformerFactory
	informers map[schema.GroupVersionResource]cache.SharedIndexInformer
	stop      context.CancelFunc
	done      <-chan struct{}
	// users counts the driftWatches on it; the last to go stops it.
	users int
}

// sharedKey names a sharedWatch.
type sharedKey struct {
	target    *cluster.Target
	namespace string
}

// driftWatch is one sync's watch in one cluster: handlers on the shared
// informers that take the events of the sync's own objects (its ApplySet
// id in their part-of label), and report a change by someone else: a
// field gitk8s set that was changed, removed or taken over, or an object
// deleted.
type driftWatch struct {
	mu     sync.Mutex
	shared *sharedWatch
	key    sharedKey
	regs   map[schema.GroupVersionResource]cache.ResourceEventHandlerRegistration
	// since is when each handler was added.
	since map[schema.GroupVersionResource]time.Time
	// target is the Target watched through.
	target *cluster.Target
}

// cancel removes the watch's handlers from the shared informers.
func (w *driftWatch) cancel() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for gvr, reg := range w.regs {
		if informer := w.shared.informers[gvr]; informer != nil {
			_ = informer.RemoveEventHandler(reg)
		}
	}
	w.regs = map[schema.GroupVersionResource]cache.ResourceEventHandlerRegistration{}
}

// watchSyncGrace is how long a drift watch that has not listed its
// objects holds readiness back. One that cannot list for longer (its
// cluster is away, a CRD was deleted) would otherwise keep the leader
// unready for good; its informer goes on trying and logs why.
var watchSyncGrace = time.Minute

// unsynced names the resources whose informers have not listed yet,
// within watchSyncGrace of their start.
func (w *driftWatch) unsynced() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for gvr, reg := range w.regs {
		if !reg.HasSynced() && time.Since(w.since[gvr]) < watchSyncGrace {
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
//
// namespace, when set, limits the watch to one namespace and to namespaced
// kinds: a team's Sync is watched as its ServiceAccount, which may list its
// own namespace only.
func (d *Daemon) watchDrift(ctx context.Context, syncName string, t *cluster.Target, namespace, inventoryID string, resources []schema.GroupVersionResource) {
	d.driftMu.Lock()
	if ctx.Err() != nil { // the term is over: its watches are stopped and forgotten
		d.driftMu.Unlock()
		return
	}
	key := syncName + "/" + t.Name
	w, ok := d.drifts[key]
	if ok && w.target != t {
		// The cluster's kubeconfig came from a Secret that changed: the
		// old credentials may be revoked, so watch anew with the new ones.
		d.releaseLocked(w)
		delete(d.drifts, key)
		ok = false
	}
	if !ok {
		skey := sharedKey{target: t, namespace: namespace}
		shared := d.sharedWatches[skey]
		if shared == nil {
			sctx, stop := context.WithCancel(ctx)
			shared = &sharedWatch{informers: map[schema.GroupVersionResource]cache.SharedIndexInformer{}, stop: stop, done: sctx.Done(),
				factory: metadatainformer.NewFilteredSharedInformerFactory(t.Metadata, 0, namespace, func(o *metav1.ListOptions) {
					o.LabelSelector = apply.LabelPartOf // every ApplySet's members
				})}
			d.sharedWatches[skey] = shared
		}
		shared.users++
		w = &driftWatch{shared: shared, key: skey, regs: map[schema.GroupVersionResource]cache.ResourceEventHandlerRegistration{},
			since: map[schema.GroupVersionResource]time.Time{}, target: t}
		d.drifts[key] = w
	}
	d.driftMu.Unlock()

	memKey := apply.MemoryKey(t.Server, inventoryID, apply.FieldManager)
	w.mu.Lock()
	defer w.mu.Unlock()
	started := false
	ours := func(m *metav1.PartialObjectMetadata) bool { return m.Labels[apply.LabelPartOf] == inventoryID }
	for _, gvr := range resources {
		if _, ok := w.regs[gvr]; ok {
			continue
		}
		gvk, err := t.Mapper.KindFor(gvr)
		if err != nil {
			continue
		}
		if namespace != "" {
			if m, err := t.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil || m.Scope.Name() != meta.RESTScopeNameNamespace {
				continue
			}
		}
		w.shared.mu.Lock()
		informer := w.shared.informers[gvr]
		if informer == nil {
			informer = w.shared.factory.ForResource(gvr).Informer()
			w.shared.informers[gvr] = informer
		}
		w.shared.mu.Unlock()
		w.since[gvr] = time.Now()
		idOf := func(m *metav1.PartialObjectMetadata) string {
			return object.ObjMetadata{GroupKind: gvk.GroupKind(), Namespace: m.Namespace, Name: m.Name}.String()
		}
		// changed: gitk8s's fields of the object as it is now are not the
		// ones its memory recorded after its last write.
		changed := func(m *metav1.PartialObjectMetadata) func() bool {
			return func() bool {
				current, ok := currentOf(informer, m)
				if !ok {
					return false // deleted since: the deletion is judged on its own
				}
				entries, _ := d.memory.Load(memKey)
				rem, managed := entries[idOf(current)]
				return managed && rem.Ownership != apply.OwnershipOf(current.ManagedFields, apply.FieldManager)
			}
		}
		// gone: the object is deleted (or being deleted) while gitk8s still
		// manages it, so it was not gitk8s's prune, nor a re-create.
		gone := func(m *metav1.PartialObjectMetadata) func() bool {
			return func() bool {
				if current, ok := currentOf(informer, m); ok && current.UID != m.UID && current.DeletionTimestamp == nil {
					return false // re-created
				}
				entries, _ := d.memory.Load(memKey)
				_, managed := entries[idOf(m)]
				return managed
			}
		}
		reg, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
			UpdateFunc: func(oldObj, newObj any) {
				o, ok1 := oldObj.(*metav1.PartialObjectMetadata)
				n, ok2 := newObj.(*metav1.PartialObjectMetadata)
				if !ok1 || !ok2 || (!ours(o) && !ours(n)) {
					return
				}
				switch {
				case n.DeletionTimestamp != nil && o.DeletionTimestamp == nil:
					d.judgeDrift(syncName, t.Name, idOf(n), gone(n))
				case apply.OwnershipOf(n.ManagedFields, apply.FieldManager) != apply.OwnershipOf(o.ManagedFields, apply.FieldManager):
					d.judgeDrift(syncName, t.Name, idOf(n), changed(n))
				}
				// else status, or fields gitk8s does not set
			},
			DeleteFunc: func(obj any) {
				if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
					obj = tomb.Obj
				}
				if m, ok := obj.(*metav1.PartialObjectMetadata); ok && ours(m) {
					d.judgeDrift(syncName, t.Name, idOf(m), gone(m))
				}
			},
		})
		if err != nil {
			continue // the informer has stopped: the term is ending
		}
		w.regs[gvr] = reg
		started = true
	}
	if started {
		w.shared.factory.Start(w.shared.done)
	}
}

// releaseLocked removes a watch's handlers and stops its shared informers
// when no other watch uses them; driftMu is held.
func (d *Daemon) releaseLocked(w *driftWatch) {
	w.cancel()
	w.shared.users--
	if w.shared.users > 0 {
		return
	}
	delete(d.sharedWatches, w.key)
	w.shared.stop()
	go w.shared.factory.Shutdown()
}

// currentOf is the object as the informer holds it now.
func currentOf(informer cache.SharedIndexInformer, m *metav1.PartialObjectMetadata) (*metav1.PartialObjectMetadata, bool) {
	key := m.Name
	if m.Namespace != "" {
		key = m.Namespace + "/" + m.Name
	}
	obj, ok, err := informer.GetStore().GetByKey(key)
	if err != nil || !ok {
		return nil, false
	}
	current, ok := obj.(*metav1.PartialObjectMetadata)
	return current, ok
}

// settleAfterApply is how long after an apply the changes seen during it
// are judged: the informer has then seen gitk8s's own last writes.
var settleAfterApply = 500 * time.Millisecond

// pendingDrift holds the changes seen while gitk8s applies a sync to a
// cluster. They are judged once the apply has ended and its memory holds
// what gitk8s wrote, so that gitk8s's own writes are never drift, and a
// change someone made during the apply still is.
type pendingDrift struct {
	mu     sync.Mutex
	checks map[string]func() bool // object id → is it drift
	// judged is set once the checks have run; a change seen after that is
	// judged at once.
	judged bool
}

// applying marks a sync's apply to a cluster; the returned func ends it.
func (d *Daemon) applying(syncName, clusterName string) (done func()) {
	key := syncName + "/" + clusterName
	p := &pendingDrift{checks: map[string]func() bool{}}
	d.pending.Store(key, p)
	return func() {
		time.AfterFunc(settleAfterApply, func() {
			d.pending.CompareAndDelete(key, p)
			p.mu.Lock()
			p.judged = true
			checks := p.checks
			p.mu.Unlock()
			for obj, isDrift := range checks {
				if isDrift() {
					d.drifted(syncName, clusterName, obj)
				}
			}
		})
	}
}

// judgeDrift reports drift when isDrift holds now, or, while gitk8s
// applies the sync to the cluster, once that apply has settled.
func (d *Daemon) judgeDrift(syncName, clusterName, obj string, isDrift func() bool) {
	if v, ok := d.pending.Load(syncName + "/" + clusterName); ok {
		p := v.(*pendingDrift)
		p.mu.Lock()
		if !p.judged {
			p.checks[obj] = isDrift
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
	if isDrift() {
		d.drifted(syncName, clusterName, obj)
	}
}

// drifted notes drift in a sync and reconciles it now (drift: heal) or
// only reports it (drift: report).
func (d *Daemon) drifted(syncName, clusterName, object string) {
	d.log.Info("drift", "sync", syncName, "cluster", clusterName, "object", object)
	d.metrics.drift.WithLabelValues(syncName).Inc()
	d.mu.Lock()
	if st := d.status[syncName]; st != nil {
		st.DriftedObjects++
	}
	d.mu.Unlock()
	if d.driftMode(syncName) == DriftReport {
		return
	}
	d.driftSeen.Store(syncName, true)
	d.Trigger(syncName)
}

// stopDriftWatches ends the term's drift watches and forgets them, so that
// the next term (after a leadership change) starts its own. It returns
// once every informer of the term has ended: none of them goes on calling
// into the daemon after its term.
func (d *Daemon) stopDriftWatches(stop context.CancelFunc) {
	d.driftMu.Lock()
	stop()
	for _, w := range d.drifts {
		w.cancel()
	}
	shared := d.sharedWatches
	d.drifts = map[string]*driftWatch{}
	d.sharedWatches = map[sharedKey]*sharedWatch{}
	d.driftMu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, w := range shared {
			w.stop()
			w.factory.Shutdown()
		}
	}()
	select {
	case <-done:
	case <-time.After(driftStopGrace):
		// A list or watch request to a cluster that stopped answering ends
		// at its request timeout; the term does not wait for that.
		d.log.Warn("drift watches still ending after the term", "after", driftStopGrace)
	}
}

// driftStopGrace is how long the end of a term waits for its drift
// informers to end.
var driftStopGrace = 10 * time.Second

func (d *Daemon) driftMode(syncName string) string {
	if s, ok := d.syncConfig(syncName); ok && s.Drift != "" {
		return s.Drift
	}
	return DriftHeal
}

// stopDriftOf ends the drift watches of one sync, in every cluster: the
// sync was removed, or is being finalized.
func (d *Daemon) stopDriftOf(syncName string) {
	d.driftMu.Lock()
	for key, w := range d.drifts {
		if strings.HasPrefix(key, syncName+"/") {
			d.releaseLocked(w)
			delete(d.drifts, key)
		}
	}
	d.driftMu.Unlock()
	d.driftSeen.Delete(syncName)
}
