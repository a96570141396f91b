package apply

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/cli-utils/pkg/object"

	"github.com/gitk8s/gitk8s/internal/render"
)

// Action is what an apply did, or would do, to one object.
type Action string

// The actions of a change set.
const (
	Created    Action = "created"
	Configured Action = "configured"
	Unchanged  Action = "unchanged"
	// Recreated objects were deleted and created again because a field
	// they change cannot be updated in place and they carry
	// gitk8s.io/recreate: "true".
	Recreated Action = "recreated"
	// Pruned objects were deleted (or, in a plan, would be) because they
	// are in the inventory but no longer rendered.
	Pruned Action = "pruned"
	// Kept objects are no longer rendered but carry gitk8s.io/prune: disabled.
	Kept   Action = "kept"
	Failed Action = "failed"
	// Skipped objects were not applied, or not pruned, because something
	// else failed first.
	Skipped Action = "skipped"
)

// Changes reports whether the action changes the cluster.
func (a Action) Changes() bool {
	return a == Created || a == Configured || a == Recreated || a == Pruned
}

// Conflict is a field another field manager owned that this apply takes
// over (or, without force, refuses to).
type Conflict struct {
	// Field is the field path, such as .spec.replicas.
	Field string
	// Message is the API server's account, naming the other manager.
	Message string
}

// ChangeSetEntry is the result for one object.
type ChangeSetEntry struct {
	// ID is the object's group, kind, namespace and name, after the default
	// namespace was filled in.
	ID object.ObjMetadata
	// Ref names the object for people (Kind/namespace/name).
	Ref string
	// Source is the file and line the object came from; empty for pruned objects.
	Source render.Source
	// Wave is the object's wave (annotation gitk8s.io/wave).
	Wave int
	// Action is what happened, or in a plan, what would.
	Action Action
	// Err is why the object failed, naming the object and file.
	Err error
	// Diff is the unified diff from the live object to the planned one,
	// normalized and with Secret values masked; empty when unchanged.
	Diff string
	// Conflicts are the fields taken over from other managers.
	Conflicts []Conflict
	// Immutable names the fields that made a recreate necessary.
	Immutable []string
	// Health is the object's kstatus status once a health gate read it.
	Health status.Status
	// HealthMessage is kstatus's reason.
	HealthMessage string

	// GVR is the resource the object maps to; empty when it could not be mapped.
	GVR schema.GroupVersionResource
	// Namespaced tells whether the resource lives in a namespace.
	Namespaced bool
	// Applied is the object as the API server returned it from the
	// (dry-run) apply; nil when it failed or was not sent.
	Applied *unstructured.Unstructured
}

// ChangeSet is the result of one apply or plan, in apply order, pruned
// objects last.
type ChangeSet struct {
	// Cluster is the target's name.
	Cluster string
	// InventoryID is the ApplySet id; empty without an inventory.
	InventoryID string
	// Entries are the objects.
	Entries []*ChangeSetEntry
	// PruneRefused says why a prune was refused by its guards; the entries
	// it would have deleted are Skipped.
	PruneRefused error
	// UnhealthyWave is set when a health gate failed: later waves were not applied.
	UnhealthyWave *int
	// Blocked is why Options.BeforeWrite stopped the apply before its first
	// write; every object is then Skipped.
	Blocked error
}

// Failed reports whether any object failed, a health gate failed or a
// prune was refused.
func (cs *ChangeSet) Failed() bool {
	if cs.PruneRefused != nil || cs.UnhealthyWave != nil || cs.Blocked != nil {
		return true
	}
	for _, e := range cs.Entries {
		if e.Action == Failed {
			return true
		}
	}
	return false
}

// HasChanges reports whether any entry changes the cluster.
func (cs *ChangeSet) HasChanges() bool {
	for _, e := range cs.Entries {
		if e.Action.Changes() {
			return true
		}
	}
	return false
}

// Count returns how many entries have each action.
func (cs *ChangeSet) Count() map[Action]int {
	n := map[Action]int{}
	for _, e := range cs.Entries {
		n[e.Action]++
	}
	return n
}

// Errors returns the error of every failed entry.
func (cs *ChangeSet) Errors() []error {
	var errs []error
	for _, e := range cs.Entries {
		if e.Err != nil {
			errs = append(errs, e.Err)
		}
	}
	return errs
}
