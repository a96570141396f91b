package reconcile

import (
	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/diff"
	"github.com/gitk8s/gitk8s/internal/federation"
	"github.com/gitk8s/gitk8s/internal/hook"
	"github.com/gitk8s/gitk8s/internal/policy"
)

// Result is what one run did, or in a dry run would do.
type Result struct {
	// Name is the sync's name.
	Name string
	// Origin and Revision are the snapshot's; Revision is empty for a
	// plain directory or when the source could not be opened.
	Origin, Revision string
	// Objects is how many objects were rendered.
	Objects int
	// Reason sums the run up: the reason of a failure before the clusters
	// (SourceUnavailable, RenderFailed), else ClusterUnavailable when any
	// cluster was unavailable, else the first failing cluster's reason.
	Reason Reason
	// Err is every failure, joined, with Secret values masked.
	Err error
	// Clusters are the per-cluster results, in the request's order; none
	// when the run failed before the clusters.
	Clusters []ClusterResult
	// Hooks are the sync hooks of the revision, whether or not they ran
	// (a dry run runs none), so that a diff can list them.
	Hooks []PlannedHook
	// Placements say where each federated object went.
	Placements []federation.Placement
	// Masker knows every Secret value of the run; drivers mask what they
	// show with it.
	Masker *diff.Masker
}

// ClusterResult is one cluster's part of a run.
type ClusterResult struct {
	// Name is the cluster's.
	Name string
	// Reason is Succeeded or why not.
	Reason Reason
	// Err says what failed, naming the cluster, with Secret values masked.
	Err error
	// ChangeSet is what was done to each object; nil when the cluster was
	// not reached or the apply stopped before its plan.
	ChangeSet *apply.ChangeSet
	// Findings are the policy gate's, including warnings.
	Findings []policy.Finding
	// Warnings are problems that did not stop the run, such as live state
	// the policy gate could not read; masked.
	Warnings []string
	// Hooks are the sync hooks that ran, in order; none in a dry run or
	// when they already ran for this revision.
	Hooks []hook.Outcome
	// Stopped is set when the apply ended on an error of its own (the
	// cluster stopped answering, the inventory could not be read) rather
	// than with a result for every object.
	Stopped bool
}

// Wrote reports whether the cluster's part of the run wrote anything.
func (c *ClusterResult) Wrote() bool { return c.ChangeSet != nil && wrote(c.ChangeSet) }

// Counts are how many objects got each action.
func (c *ClusterResult) Counts() map[apply.Action]int {
	if c.ChangeSet == nil {
		return map[apply.Action]int{}
	}
	return c.ChangeSet.Count()
}

// wrote reports whether an apply wrote anything to the cluster.
func wrote(cs *apply.ChangeSet) bool {
	for a, n := range cs.Count() {
		switch a {
		case apply.Created, apply.Configured, apply.Recreated, apply.Pruned:
			if n > 0 {
				return true
			}
		}
	}
	return false
}

// PlannedHook is one sync hook of a revision.
type PlannedHook struct {
	// Phases are when it runs.
	Phases []hook.Phase
	// Ref names it (with generateName's prefix for a hook without a name).
	Ref string
	// Source is where it was written.
	Source string
}
