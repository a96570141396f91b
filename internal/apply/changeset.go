package apply

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
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
	Failed     Action = "failed"
	// Skipped objects were planned but not applied because another object
	// of the same apply failed first.
	Skipped Action = "skipped"
)

// ChangeSetEntry is the result for one object.
type ChangeSetEntry struct {
	// ID is the object's group, kind, namespace and name, after the default
	// namespace was filled in.
	ID object.ObjMetadata
	// Ref names the object for people (Kind/namespace/name).
	Ref string
	// Source is the file and line the object came from.
	Source render.Source
	// Action is what happened.
	Action Action
	// Err is why the object failed, naming the object and file.
	Err error

	// GVR is the resource the object maps to; empty when it could not be mapped.
	GVR schema.GroupVersionResource
	// Namespaced tells whether the resource lives in a namespace.
	Namespaced bool
	// Applied is the object as the API server returned it from the (dry-run)
	// apply; nil when it failed.
	Applied *unstructured.Unstructured
}

// ChangeSet is the result of one apply, in apply order.
type ChangeSet struct {
	Entries []*ChangeSetEntry
}

// Failed reports whether any object failed.
func (cs *ChangeSet) Failed() bool {
	for _, e := range cs.Entries {
		if e.Action == Failed {
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
