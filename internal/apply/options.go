package apply

import (
	"context"
	"time"

	"github.com/gitk8s/gitk8s/internal/diff"
)

// Annotations gitk8s reads on the objects it applies.
const (
	// AnnotationWave groups objects into waves applied in order, each
	// healthy before the next starts: gitk8s.io/wave: "1". Default 0.
	AnnotationWave = "gitk8s.io/wave"
	// AnnotationArgoWave is Argo CD's wave annotation, read as an alias
	// of AnnotationWave.
	AnnotationArgoWave = "argocd.argoproj.io/sync-wave"
	// AnnotationPrune set to "disabled" keeps an object when it is no
	// longer rendered.
	AnnotationPrune = "gitk8s.io/prune"
	// AnnotationRecreate set to "true" lets gitk8s delete and re-create an
	// object whose change cannot be applied in place.
	AnnotationRecreate = "gitk8s.io/recreate"
)

// Options tune an apply.
type Options struct {
	// FieldManager is the server-side apply field manager.
	FieldManager string
	// ForceConflicts takes over fields other managers own: what Git says
	// wins, and each field taken is reported. Without it such fields fail
	// the object.
	ForceConflicts bool
	// Concurrency bounds requests in flight to the cluster.
	Concurrency int
	// DryRun plans only: nothing is written.
	DryRun bool
	// CRDTimeout bounds the wait for a new CRD to become Established.
	CRDTimeout time.Duration

	// Inventory names the ApplySet parent; without a name there is no
	// inventory, and so no pruning and no no-op memory.
	Inventory InventoryOptions
	// Prune deletes inventory members that are no longer rendered.
	Prune bool
	// AllowDestructivePrune lets a prune delete Namespaces, CRDs,
	// PersistentVolumes and PersistentVolumeClaims, and more than
	// MaxPruneShare of the inventory.
	AllowDestructivePrune bool
	// MaxPruneShare is the largest share of the inventory one prune may
	// delete without AllowDestructivePrune.
	MaxPruneShare float64
	// PruneTimeout bounds the wait for pruned objects to be gone.
	PruneTimeout time.Duration

	// Wait is the health gate of the last wave; 0 means the last wave is
	// not waited on.
	Wait time.Duration
	// WaveTimeout bounds the health gate between waves when Wait is 0.
	WaveTimeout time.Duration

	// Memory remembers what was applied so that unchanged objects cost
	// nothing; nil disables it.
	Memory Memory
	// Masker masks Secret values in diffs and errors; nil makes one.
	Masker *diff.Masker
	// BeforeWrite, when set, is called once before the first write of an
	// apply; an error stops the apply there: nothing is written (see
	// ChangeSet.Blocked). Checks such as the policy gate run in it, so
	// that they overlap with the reads and dry-runs of the plan.
	BeforeWrite func(context.Context) error
}

// InventoryOptions name the ApplySet parent Secret.
type InventoryOptions struct {
	Name      string
	Namespace string
	// Adopt names earlier parents in the same namespace whose members this
	// inventory takes over. Their members are planned (and pruned) as
	// members of this one; after an apply without failures, those still
	// there are labelled as this inventory's and the earlier parent is
	// deleted.
	Adopt []string
}

// FieldManager is the server-side apply field manager gitk8s writes
// objects as; its inventory parents are written as FieldManager+"-applyset".
const FieldManager = "gitk8s"

// HooksFieldManager is the field manager that notes on an inventory which
// revision's hooks ran there.
const HooksFieldManager = FieldManager + "-hooks"

// DefaultInventoryNamespace holds inventories unless told otherwise.
const DefaultInventoryNamespace = "gitk8s-system"

// DefaultOptions are the options gitk8s applies with.
func DefaultOptions() Options {
	return Options{
		FieldManager:   FieldManager,
		ForceConflicts: true,
		Concurrency:    16,
		CRDTimeout:     time.Minute,
		MaxPruneShare:  0.5,
		PruneTimeout:   time.Minute,
		WaveTimeout:    5 * time.Minute,
	}
}
