package reconcile

// Reason is the outcome of a run, or of one cluster's part of it: one set
// for the CLI's exit codes and the daemon's conditions and events.
type Reason string

// The reasons, in the order a run can reach them.
const (
	// Succeeded: everything was applied (or planned) and, where waited
	// for, is healthy.
	Succeeded Reason = "Succeeded"
	// SourceUnavailable: the snapshot could not be opened or fetched.
	SourceUnavailable Reason = "SourceUnavailable"
	// RenderFailed: the manifests, their admission policies or their
	// federated objects could not be turned into objects.
	RenderFailed Reason = "RenderFailed"
	// ClusterUnavailable: the cluster could not be reached, or stopped
	// answering; nothing more was written or pruned there.
	ClusterUnavailable Reason = "ClusterUnavailable"
	// PolicyViolation: an enforced policy blocked the sync before its
	// first write.
	PolicyViolation Reason = "PolicyViolation"
	// PlanFailed: the API server refused an object's dry-run, or the plan
	// stopped, before anything was written.
	PlanFailed Reason = "PlanFailed"
	// ApplyFailed: an object failed after other writes.
	ApplyFailed Reason = "ApplyFailed"
	// PruneRefused: a prune guard refused the deletions.
	PruneRefused Reason = "PruneRefused"
	// HealthCheckFailed: a wave did not become healthy in time.
	HealthCheckFailed Reason = "HealthCheckFailed"
	// HookFailed: a sync hook failed. A failed PreSync hook stops the
	// sync before anything else is written.
	HookFailed Reason = "HookFailed"
)

// Failed reports whether the reason is a failure.
func (r Reason) Failed() bool { return r != Succeeded && r != "" }
