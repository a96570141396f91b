// Package apply applies a bundle of rendered objects to one cluster with
// server-side apply (field manager "gitk8s") and reports what happened as a
// ChangeSet, one entry per object.
//
// An apply is planned before anything is written: every object is dry-run
// applied, and if any dry-run fails nothing is written. Objects whose
// Namespace or CustomResourceDefinition the same bundle creates can only be
// dry-run once those exist, so the Namespaces and CRDs that passed their own
// dry-run are created first and the rest is planned right after, before any
// other write. Objects are applied in order: Namespaces and CRDs (waiting
// until each CRD is Established), then cluster-scoped RBAC, then the rest,
// grouped by kind so that what a workload needs exists before it.
//
// Objects whose dry-run shows no change are not written at all.
//
//	m := apply.NewManager(target, apply.DefaultOptions())
//	cs, err := m.Apply(ctx, bundle.Objects)
//	for _, e := range cs.Entries {
//		fmt.Println(e.Ref, e.Action, e.Err)
//	}
package apply
