// Package apply applies a bundle of rendered objects to one cluster with
// server-side apply (field manager "gitk8s") and reports what happened as a
// ChangeSet, one entry per object.
//
// An apply is planned before anything is written: every object is dry-run
// applied, and if any dry-run fails nothing is written. Some objects can
// only be dry-run once another object of the same bundle exists — their
// Namespace, their CustomResourceDefinition, the ServiceAccount of a bare
// Pod, the role of a binding — so those prerequisites, once they passed their
// own dry-run, are created first and what needs them is planned right
// after, before any other write. Objects are then applied wave by wave
// (gitk8s.io/wave), each wave healthy before the next, and by kind inside a
// wave so that what a workload needs exists before it. Members of the
// inventory (an ApplySet) that are no longer rendered are pruned, within
// guards, only when everything else succeeded.
//
// Objects the memory shows nobody changed since they were applied cost no
// request; objects whose dry-run shows no change are not written.
//
//	m := apply.NewManager(target, apply.DefaultOptions())
//	cs, err := m.Apply(ctx, bundle.Objects)
//	for _, e := range cs.Entries {
//		fmt.Println(e.Ref, e.Action, e.Err)
//	}
package apply
