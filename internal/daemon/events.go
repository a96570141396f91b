package daemon

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/cluster"
	"github.com/gitk8s/gitk8s/internal/reconcile"
)

// Reasons of the Normal events on a sync's ApplySet parent. The Warning
// events use the reasons of the Ready condition: ReasonPlanFailed, ReasonApplyFailed,
// ReasonPruneRefused, ReasonHealthCheckFailed and ReasonPolicyViolation.
const (
	EventApplied = "Applied"
	EventPruned  = "Pruned"
)

// eventBurst is how many events of one type one parent may get in a burst.
// client-go's spam filter allows 25 by default and then one every five
// minutes, which a sync that fails and recovers a few times would exhaust.
const eventBurst = 100

// maxEventMessage bounds an event's message: it names objects and counts
// them, it does not quote manifests.
const maxEventMessage = 1024

// maxNamesInEvent bounds how many pruned objects an event names.
const maxNamesInEvent = 20

// eventRecorder records the events of one cluster, on the API server of
// that cluster.
type eventRecorder struct {
	// target is the connection the events go through.
	target      *cluster.Target
	broadcaster record.EventBroadcaster
	recorder    record.EventRecorder
}

func newEventRecorder(t *cluster.Target) (*eventRecorder, error) {
	client, err := kubernetes.NewForConfig(t.Config)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: events: %w", t.Name, err)
	}
	b := record.NewBroadcaster(record.WithCorrelatorOptions(record.CorrelatorOptions{BurstSize: eventBurst}))
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	return &eventRecorder{target: t, broadcaster: b, recorder: b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "gitk8s"})}, nil
}

// Close stops the drift watches and the sending of events; events still
// queued may be lost.
func (d *Daemon) Close() {
	d.notify.cancel()
	// Drift watches started outside a term (a Reconcile called on its
	// own) end here too.
	d.stopDriftWatches(func() {
		for _, w := range d.drifts {
			w.cancel()
		}
	})
	d.eventsMu.Lock()
	defer d.eventsMu.Unlock()
	for _, r := range d.events {
		r.broadcaster.Shutdown()
	}
}

// recorderFor returns the event recorder of a cluster's current
// connection. A cluster whose kubeconfig comes from a Secret gets a new
// connection when the Secret changes, and its recorder follows.
func (d *Daemon) recorderFor(t *cluster.Target) *eventRecorder {
	d.eventsMu.Lock()
	defer d.eventsMu.Unlock()
	r := d.events[t.Name]
	if r != nil && r.target == t {
		return r
	}
	fresh, err := newEventRecorder(t)
	if err != nil {
		d.log.Warn("no events for this cluster", "cluster", t.Name, "error", err)
		return nil
	}
	if r != nil {
		r.broadcaster.Shutdown()
	}
	d.events[t.Name] = fresh
	return fresh
}

var secretsGVR = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}

// parentRef refers to a sync's ApplySet parent (a Secret) in one cluster.
// kubectl describe finds events by the UID, so it is read from the
// cluster; a parent not written yet (a sync blocked before its first apply) is referred to by
// name only, which kubectl get events still shows.
func parentRef(ctx context.Context, t *cluster.Target, inventory apply.InventoryOptions) *corev1.ObjectReference {
	ref := &corev1.ObjectReference{APIVersion: "v1", Kind: "Secret", Namespace: inventory.Namespace, Name: inventory.Name}
	if m, err := t.Metadata.Resource(secretsGVR).Namespace(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{}); err == nil {
		ref.UID, ref.ResourceVersion = m.UID, m.ResourceVersion
	}
	return ref
}

// announce records one cluster's part of a reconcile as events on the
// sync's ApplySet parent in that cluster. The engine masked the result's
// texts with the reconcile's Masker, so they never hold a Secret value of
// the bundle.
func (d *Daemon) announce(ctx context.Context, inventory apply.InventoryOptions, rev string, t *cluster.Target, r *reconcile.ClusterResult) {
	if r.Reason == reconcile.ClusterUnavailable {
		return // an unreachable cluster cannot store the event either
	}
	// Events are the daemon's word, written as the daemon, also for a
	// Sync that acts as its ServiceAccount.
	own := t
	if t.Original != nil {
		own = t.Original
	}
	rec := d.recorderFor(own)
	if rec == nil {
		return
	}
	var warning string
	switch r.Reason {
	case reconcile.PlanFailed, reconcile.ApplyFailed, reconcile.PruneRefused, reconcile.HealthCheckFailed, reconcile.PolicyViolation, reconcile.HookFailed:
		warning = string(r.Reason)
	}
	if warning == "" && (r.Stopped || r.ChangeSet == nil) {
		return
	}
	ref := parentRef(ctx, t, inventory)
	at := "revision " + shortRevision(rev) + ": "
	if warning != "" {
		msg := warning
		if r.Err != nil {
			msg = strings.ReplaceAll(r.Err.Error(), "\n", "; ")
		}
		if unhealthy := unhealthyOf(r); r.Reason == reconcile.HealthCheckFailed && len(unhealthy) > 0 {
			msg += ": " + nameList(unhealthy)
		}
		rec.recorder.Event(ref, corev1.EventTypeWarning, warning, shorten(at+msg))
		return
	}
	if pruned := prunedOf(r); len(pruned) > 0 {
		rec.recorder.Event(ref, corev1.EventTypeNormal, EventPruned, shorten(at+"pruned "+nameList(pruned)))
	}
	counts := map[string]int{}
	for a, n := range r.Counts() {
		counts[string(a)] = n
	}
	rec.recorder.Event(ref, corev1.EventTypeNormal, EventApplied, shorten(at+countList(counts)))
}

// actionOrder is the order counts are listed in.
var actionOrder = []apply.Action{apply.Created, apply.Configured, apply.Recreated, apply.Unchanged, apply.Pruned, apply.Kept, apply.Skipped, apply.Failed}

// countList writes counts as "created 2, configured 1, unchanged 5".
func countList(counts map[string]int) string {
	var parts []string
	for _, a := range actionOrder {
		if n := counts[string(a)]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", a, n))
		}
	}
	if len(parts) == 0 {
		return "no objects"
	}
	return strings.Join(parts, ", ")
}

// nameList names objects (or other things), the first maxNamesInEvent of them.
func nameList(names []string) string {
	names = append([]string(nil), names...)
	sort.Strings(names)
	if len(names) <= maxNamesInEvent {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:maxNamesInEvent], ", "), len(names)-maxNamesInEvent)
}

func shortRevision(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

// shorten cuts a message to maxEventMessage bytes, on a rune boundary.
func shorten(msg string) string {
	if len(msg) <= maxEventMessage {
		return msg
	}
	cut := maxEventMessage - len(" …")
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + " …"
}
