package daemon

import (
	"time"

	"github.com/gitk8s/gitk8s/internal/reconcile"
)

// Reasons of the Ready condition: the engine's, and Progressing while a
// reconcile runs.
const (
	ReasonSucceeded          = string(reconcile.Succeeded)
	ReasonProgressing        = "Progressing"
	ReasonSourceUnavailable  = string(reconcile.SourceUnavailable)
	ReasonRenderFailed       = string(reconcile.RenderFailed)
	ReasonPolicyViolation    = string(reconcile.PolicyViolation)
	ReasonPlanFailed         = string(reconcile.PlanFailed)
	ReasonApplyFailed        = string(reconcile.ApplyFailed)
	ReasonHealthCheckFailed  = string(reconcile.HealthCheckFailed)
	ReasonHookFailed         = string(reconcile.HookFailed)
	ReasonPruneRefused       = string(reconcile.PruneRefused)
	ReasonClusterUnavailable = string(reconcile.ClusterUnavailable)
)

// Condition is one condition of a sync, as Kubernetes objects have them.
type Condition struct {
	Type               string    `json:"type"`
	Status             string    `json:"status"`
	Reason             string    `json:"reason"`
	Message            string    `json:"message,omitempty"`
	LastTransitionTime time.Time `json:"lastTransitionTime"`
}

// SyncStatus is what the daemon knows of one sync.
type SyncStatus struct {
	Name string `json:"name"`
	// Clusters are the names of the clusters the sync targets.
	Clusters              []string       `json:"clusters,omitempty"`
	LastAppliedRevision   string         `json:"lastAppliedRevision,omitempty"`
	LastAttemptedRevision string         `json:"lastAttemptedRevision,omitempty"`
	LastAttempt           time.Time      `json:"lastAttempt,omitempty"`
	Conditions            []Condition    `json:"conditions,omitempty"`
	Counts                map[string]int `json:"counts,omitempty"`
	Unhealthy             []string       `json:"unhealthy,omitempty"`
	// Federated says where the last reconcile placed each federated object.
	Federated []reconcile.Federated `json:"federated,omitempty"`
	// LastError is the last failure; Secret values in it are masked.
	LastError string `json:"lastError,omitempty"`
	// Suspended syncs do not reconcile: by suspend: true in the
	// configuration, or listed in the SuspendedConfigMap (gitk8s suspend).
	Suspended       bool      `json:"suspended,omitempty"`
	SuspendedReason string    `json:"suspendedReason,omitempty"`
	SuspendedBy     string    `json:"suspendedBy,omitempty"`
	SuspendedAt     time.Time `json:"suspendedAt,omitzero"`
	// DriftedObjects counts changes someone else made to managed objects.
	DriftedObjects int `json:"driftedObjects,omitempty"`
	// ObservedGeneration is the generation of the Sync resource the last
	// reconcile read; 0 for a sync of the configuration file.
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Resource is namespace/name of the Sync resource the sync comes from.
	Resource string `json:"resource,omitempty"`
	// LastHandledReconcileAt is the last gitk8s.io/reconcile-requested-at
	// of the Sync resource that a reconcile served.
	LastHandledReconcileAt string `json:"lastHandledReconcileAt,omitempty"`
}

func (s *SyncStatus) copy() SyncStatus {
	c := *s
	c.Conditions = append([]Condition(nil), s.Conditions...)
	c.Unhealthy = append([]string(nil), s.Unhealthy...)
	c.Clusters = append([]string(nil), s.Clusters...)
	c.Federated = append([]reconcile.Federated(nil), s.Federated...)
	if s.Counts != nil {
		c.Counts = map[string]int{}
		for k, v := range s.Counts {
			c.Counts[k] = v
		}
	}
	return c
}

// Condition returns the condition of a type, or a zero one.
func (s SyncStatus) Condition(t string) Condition {
	for _, c := range s.Conditions {
		if c.Type == t {
			return c
		}
	}
	return Condition{}
}

func (s *SyncStatus) ready() bool {
	return s.Condition("Ready").Status == "True"
}

// setCondition sets a condition, keeping its transition time when its
// status does not change.
func (s *SyncStatus) setCondition(c Condition) {
	for i, old := range s.Conditions {
		if old.Type == c.Type {
			if old.Status == c.Status {
				c.LastTransitionTime = old.LastTransitionTime
			}
			s.Conditions[i] = c
			return
		}
	}
	s.Conditions = append(s.Conditions, c)
}

func (d *Daemon) statusOf(name string) SyncStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	if st := d.status[name]; st != nil {
		return st.copy()
	}
	return SyncStatus{Name: name}
}

// observe notes the generation and reconcile request of a Sync resource a
// reconcile is about to serve.
func (d *Daemon) observe(s SyncConfig) {
	if s.Resource == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if st := d.status[s.Name]; st != nil {
		st.ObservedGeneration = s.Resource.Generation
		if s.Resource.RequestedAt != "" {
			st.LastHandledReconcileAt = s.Resource.RequestedAt
		}
	}
}

func (d *Daemon) setReconciling(name, rev string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.status[name]
	if st == nil {
		return
	}
	st.LastAttemptedRevision = rev
	st.setCondition(Condition{Type: "Reconciling", Status: "True", Reason: ReasonProgressing, Message: "applying " + rev, LastTransitionTime: time.Now()})
}

// record ends a reconcile in the status: Ready with the reason, Stalled
// when it failed, and the counts of the change.
func (d *Daemon) record(name, rev, reason string, err error, result *SyncStatus) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.status[name]
	if st == nil {
		return
	}
	now := time.Now()
	st.LastAttempt = now
	if rev != "" {
		st.LastAttemptedRevision = rev
	}
	st.setCondition(Condition{Type: "Reconciling", Status: "False", Reason: reason, LastTransitionTime: now})
	if result != nil {
		st.Counts, st.Unhealthy, st.Federated = result.Counts, result.Unhealthy, result.Federated
	}
	if err != nil {
		st.LastError = err.Error()
		st.setCondition(Condition{Type: "Ready", Status: "False", Reason: reason, Message: st.LastError, LastTransitionTime: now})
		st.setCondition(Condition{Type: "Stalled", Status: "True", Reason: reason, Message: st.LastError, LastTransitionTime: now})
		return
	}
	st.LastError = ""
	st.LastAppliedRevision = rev
	st.setCondition(Condition{Type: "Ready", Status: "True", Reason: ReasonSucceeded, Message: "applied " + rev, LastTransitionTime: now})
	st.setCondition(Condition{Type: "Stalled", Status: "False", Reason: ReasonSucceeded, LastTransitionTime: now})
}
