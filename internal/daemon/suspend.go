package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
)

// SuspendedConfigMap is the ConfigMap, in HomeNamespace of the home
// cluster, that lists the suspended syncs: one key per sync, the value a
// Suspension as JSON. gitk8s suspend and resume edit it, and so can
// kubectl: Kubernetes RBAC decides who may suspend.
const SuspendedConfigMap = "gitk8s-suspended"

// Suspension says who suspended a sync, when and why.
type Suspension struct {
	Reason string    `json:"reason,omitempty"`
	By     string    `json:"by,omitempty"`
	At     time.Time `json:"at,omitzero"`
}

// ErrNotSuspended is returned by Resume for a sync the ConfigMap does not
// list.
var ErrNotSuspended = errors.New("not suspended")

// ErrSyncName is returned for a sync name that is not a lowercase DNS
// label, which no sync can have.
var ErrSyncName = errors.New("not a sync's name, which is a lowercase DNS label")

// checkSyncName refuses a name no sync can have, before anything is written.
func checkSyncName(name string) error {
	if msgs := validation.IsDNS1123Label(name); len(msgs) > 0 {
		return fmt.Errorf("sync %q: %w: %s", name, ErrSyncName, strings.Join(msgs, "; "))
	}
	return nil
}

// conflictBackoff spaces the retries of a suspend or resume that lost a
// race with another writer of the ConfigMap.
var conflictBackoff = wait.Backoff{Steps: 10, Duration: 10 * time.Millisecond, Factor: 2, Jitter: 0.5, Cap: 2 * time.Second}

// Suspend lists a sync in the namespace's SuspendedConfigMap, creating it
// when it is missing. The write carries the resourceVersion it read and is
// retried on a conflict, so concurrent suspends all persist. Suspending a
// suspended sync replaces its Suspension.
func Suspend(ctx context.Context, client kubernetes.Interface, namespace, syncName string, s Suspension) error {
	if err := checkSyncName(syncName); err != nil {
		return err
	}
	value, err := json.Marshal(s)
	if err != nil {
		return err
	}
	cms := client.CoreV1().ConfigMaps(namespace)
	err = retry.OnError(conflictBackoff, func(err error) bool {
		return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err)
	}, func() error {
		cm, err := cms.Get(ctx, SuspendedConfigMap, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: SuspendedConfigMap, Namespace: namespace,
				Labels: map[string]string{"app.kubernetes.io/managed-by": "gitk8s"}},
				Data: map[string]string{syncName: string(value)}}
			_, err = cms.Create(ctx, cm, metav1.CreateOptions{FieldManager: "gitk8s-suspend"})
			return err
		}
		if err != nil {
			return err
		}
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[syncName] = string(value)
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{FieldManager: "gitk8s-suspend"})
		return err
	})
	if err != nil {
		return fmt.Errorf("ConfigMap/%s/%s: suspend %s: %w", namespace, SuspendedConfigMap, syncName, err)
	}
	return nil
}

// Resume removes a sync from the namespace's SuspendedConfigMap, with the
// same optimistic concurrency as Suspend. It returns ErrNotSuspended when
// the sync is not listed there. A sync with suspend: true in the daemon's
// configuration stays suspended: only the configuration can resume it.
func Resume(ctx context.Context, client kubernetes.Interface, namespace, syncName string) error {
	if err := checkSyncName(syncName); err != nil {
		return err
	}
	cms := client.CoreV1().ConfigMaps(namespace)
	err := retry.RetryOnConflict(conflictBackoff, func() error {
		cm, err := cms.Get(ctx, SuspendedConfigMap, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return ErrNotSuspended
		}
		if err != nil {
			return err
		}
		if _, ok := cm.Data[syncName]; !ok {
			return ErrNotSuspended
		}
		delete(cm.Data, syncName)
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{FieldManager: "gitk8s-suspend"})
		return err
	})
	if err != nil {
		return fmt.Errorf("ConfigMap/%s/%s: resume %s: %w", namespace, SuspendedConfigMap, syncName, err)
	}
	return nil
}

// Suspensions reads the namespace's SuspendedConfigMap: the suspended
// syncs by name. A missing ConfigMap suspends nothing.
func Suspensions(ctx context.Context, client kubernetes.Interface, namespace string) (map[string]Suspension, error) {
	cm, err := client.CoreV1().ConfigMaps(namespace).Get(ctx, SuspendedConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return map[string]Suspension{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ConfigMap/%s/%s: %w", namespace, SuspendedConfigMap, err)
	}
	return parseSuspensions(cm), nil
}

// parseSuspensions reads a SuspendedConfigMap. A key's presence suspends
// its sync; a value that is not a Suspension's JSON (say, written by hand
// with kubectl edit) is taken as the reason.
func parseSuspensions(cm *corev1.ConfigMap) map[string]Suspension {
	out := map[string]Suspension{}
	if cm == nil {
		return out
	}
	for name, value := range cm.Data {
		var s Suspension
		if err := json.Unmarshal([]byte(value), &s); err != nil {
			s = Suspension{Reason: value}
		}
		out[name] = s
	}
	return out
}

// ConfigSuspendReason is the reason shown for a sync with suspend: true in
// the configuration.
const ConfigSuspendReason = "suspend: true in the daemon's configuration (gitk8s resume does not override it)"

// ResourceSuspendReason is the reason shown for a Sync resource with
// spec.suspend: true.
const ResourceSuspendReason = "spec.suspend: true in the Sync"

// suspendReason says why a sync with suspend set is suspended.
func (s SyncConfig) suspendReason() string {
	if s.Resource != nil {
		return ResourceSuspendReason
	}
	return ConfigSuspendReason
}

// watchSuspensions starts, once, an informer on the home cluster's
// SuspendedConfigMap (that one object, by a field selector), which keeps
// the daemon's suspensions and the syncs' status current and triggers a
// sync when it is resumed. It lives as long as ctx.
func (d *Daemon) watchSuspensions(ctx context.Context) error {
	var err error
	d.suspendOnce.Do(func() {
		home := d.cfg.HomeCluster()
		t, ok := d.targets[home]
		if !ok {
			err = fmt.Errorf("home cluster %s is not in clusters", home)
			return
		}
		var client kubernetes.Interface
		if client, err = kubernetes.NewForConfig(t.Config); err != nil {
			return
		}
		factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(HomeNamespace),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.FieldSelector = fields.OneTermEqualSelector("metadata.name", SuspendedConfigMap).String()
			}))
		informer := factory.Core().V1().ConfigMaps().Informer()
		_ = informer.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
			d.log.Warn("cannot watch the suspended syncs", "configmap", HomeNamespace+"/"+SuspendedConfigMap, "cluster", home, "error", err)
		})
		update := func(obj any) {
			cm, _ := obj.(*corev1.ConfigMap)
			d.setSuspensions(parseSuspensions(cm))
		}
		var reg cache.ResourceEventHandlerRegistration
		reg, err = informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    update,
			UpdateFunc: func(_, obj any) { update(obj) },
			DeleteFunc: func(any) { d.setSuspensions(nil) },
		})
		if err != nil {
			return
		}
		// The registration has synced when this handler has seen the
		// initial list, not only when the informer's store has.
		d.suspensionsSynced = reg.HasSynced
		factory.Start(ctx.Done())
	})
	return err
}

// waitForSuspensions blocks until the suspensions have been read once, so
// that a daemon started during a suspension honours it from its first
// reconcile. It reports false when ctx ends first.
func (d *Daemon) waitForSuspensions(ctx context.Context) bool {
	if d.suspensionsSynced == nil {
		return true
	}
	return cache.WaitForCacheSync(ctx.Done(), d.suspensionsSynced)
}

// setSuspensions records the current suspensions in the syncs' status and
// triggers the syncs that were resumed.
func (d *Daemon) setSuspensions(current map[string]Suspension) {
	var resumed, suspended []string
	syncs := d.syncs()
	d.mu.Lock()
	d.suspensionsNow = current
	for _, s := range syncs {
		st := d.status[s.Name]
		if st == nil {
			continue
		}
		was := st.Suspended
		sus, listed := current[s.Name]
		switch {
		case s.Suspend:
			st.Suspended, st.SuspendedReason, st.SuspendedBy, st.SuspendedAt = true, s.suspendReason(), "", time.Time{}
		case listed:
			st.Suspended, st.SuspendedReason, st.SuspendedBy, st.SuspendedAt = true, sus.Reason, sus.By, sus.At
			if !was {
				suspended = append(suspended, s.Name)
			}
		default:
			st.Suspended, st.SuspendedReason, st.SuspendedBy, st.SuspendedAt = false, "", "", time.Time{}
			if was {
				resumed = append(resumed, s.Name)
			}
		}
	}
	d.mu.Unlock()
	for name, s := range current {
		if _, ok := d.syncConfig(name); !ok {
			d.log.Debug("suspension of an unknown sync", "sync", name, "reason", s.Reason)
		}
	}
	for _, name := range suspended {
		d.log.Info("suspended", "sync", name, "reason", current[name].Reason, "by", current[name].By)
	}
	for _, name := range resumed {
		d.log.Info("resumed", "sync", name)
		d.Trigger(name)
	}
}

// suspended reports whether a sync is suspended now, by the configuration
// or the SuspendedConfigMap.
func (d *Daemon) suspended(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.status[name]
	return st != nil && st.Suspended
}
