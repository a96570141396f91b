package apply

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/gitk8s/gitk8s/internal/cluster"
	"github.com/gitk8s/gitk8s/internal/diff"
	"github.com/gitk8s/gitk8s/internal/render"
)

// Manager applies bundles to one cluster.
type Manager struct {
	target *cluster.Target
	opts   Options
}

// NewManager returns a Manager for target.
func NewManager(target *cluster.Target, opts Options) *Manager {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 1
	}
	if opts.FieldManager == "" {
		opts.FieldManager = FieldManager
	}
	if opts.Inventory.Name != "" && opts.Inventory.Namespace == "" {
		opts.Inventory.Namespace = DefaultInventoryNamespace
	}
	if opts.Masker == nil {
		opts.Masker = diff.NewMasker()
	}
	return &Manager{target: target, opts: opts}
}

// item is one object on its way through an apply.
type item struct {
	entry *ChangeSetEntry
	obj   *unstructured.Unstructured // a copy: namespace filled in, inventory label set
	rank  int
	// data is the JSON sent; hash identifies it (see Remembered).
	data []byte
	hash string
	// unmapped objects are of a kind that a CRD of the same bundle defines
	// and the cluster does not serve yet.
	unmapped bool
	// waitsOn are objects of the same bundle that must exist before the API
	// server can dry-run this one: its Namespace, its CRD, the
	// ServiceAccount a bare Pod runs as.
	waitsOn []*item
	// needsDefaultServiceAccount is set on a bare Pod without a
	// serviceAccountName in a Namespace this apply creates: admission needs
	// the "default" ServiceAccount, which a controller creates shortly after
	// the Namespace.
	needsDefaultServiceAccount bool
	// recreate is set when the plan found that the object must be deleted
	// and created again.
	recreate bool
	// planned is set once the dry-run ran (or the memory made it
	// unnecessary); written once the object was applied for real or
	// needed no write.
	planned, written bool
}

// blocked reports whether the item still waits for a prerequisite.
func (it *item) blocked() bool {
	for _, p := range it.waitsOn {
		if !p.written || p.entry.Action == Failed {
			return true
		}
	}
	return false
}

// run is the state of one Apply.
type run struct {
	*Manager
	items []*item
	cs    *ChangeSet
	// inv and members are nil without an inventory.
	inv     *inventory
	members map[string]*member
	// remembered is what the memory knew before this run.
	remembered map[string]Remembered
	// parentWritten is set once the inventory lists every kind and
	// namespace this run may write to.
	parentWritten bool
	// cleared is set once Options.BeforeWrite allowed writing.
	cleared bool
	// prunes are the inventory members no longer rendered.
	prunes []*pruneItem
	// adopted are the earlier inventories this run takes over.
	adopted []*adoptedInventory
}

// Apply plans and applies objects, then prunes when asked to.
//
// Per-object failures are entries of the change set; the error is for what
// stops the whole apply, such as an unreachable cluster. When any object
// fails to plan, nothing more is written: the only objects written before
// every object is planned are the prerequisites (Namespaces, CRDs,
// ServiceAccounts of bare Pods, roles of bindings) without which the API server cannot dry-run
// the objects that need them. Nothing is pruned after any failure.
func (m *Manager) Apply(ctx context.Context, objects []*render.Object) (*ChangeSet, error) {
	if _, err := m.target.Discovery.ServerVersion(); err != nil {
		return nil, fmt.Errorf("cluster %s (%s) unreachable: %w", m.target.Name, m.target.Server, err)
	}
	r := &run{Manager: m, cs: &ChangeSet{Cluster: m.target.Name}, remembered: map[string]Remembered{}}
	for _, o := range objects {
		m.opts.Masker.Learn(o.Object)
	}
	if m.opts.Inventory.Name != "" {
		inv, err := m.readInventory(ctx)
		if err != nil {
			return nil, err
		}
		r.inv = inv
		r.cs.InventoryID = inv.id
		kinds := map[schema.GroupKind]bool{}
		for gk := range inv.groupKinds {
			kinds[gk] = true
		}
		for _, o := range objects {
			kinds[o.Object.GroupVersionKind().GroupKind()] = true
		}
		if err := r.readAdopted(ctx, kinds); err != nil {
			return nil, err
		}
		if r.members, err = m.listMembers(ctx, inv, kinds); err != nil {
			return nil, err
		}
		r.mergeAdopted()
		if m.opts.Memory != nil {
			if r.remembered, err = m.opts.Memory.Load(r.memoryKey()); err != nil {
				return nil, fmt.Errorf("cluster %s: load applied-state memory: %w", m.target.Name, err)
			}
		}
	}
	items, err := m.prepare(ctx, objects, r.members)
	if err != nil {
		return nil, err
	}
	r.items = items
	sorted := append([]*item(nil), items...)
	sort.SliceStable(sorted, func(i, j int) bool { return lessItem(sorted[i], sorted[j]) })
	for _, it := range sorted {
		r.cs.Entries = append(r.cs.Entries, it.entry)
	}

	if err := r.planAll(ctx); err != nil {
		return r.cs, err
	}
	r.planPrune()
	if r.cs.Failed() && r.cs.PruneRefused == nil {
		r.skipUnwritten()
		return r.cs, r.save()
	}
	if m.opts.DryRun {
		return r.cs, nil
	}
	if err := r.writeWaves(ctx); err != nil {
		return r.cs, err
	}
	if r.cs.Failed() {
		r.skipUnwritten()
		return r.cs, r.save()
	}
	if m.opts.Prune {
		if err := r.prune(ctx); err != nil {
			return r.cs, err
		}
	}
	if !r.cs.Failed() {
		if err := r.finishAdoption(ctx); err != nil {
			return r.cs, err
		}
	}
	return r.cs, r.save()
}

func (r *run) memoryKey() string {
	return memoryKey(r.target.Server, r.inv.id, r.opts.FieldManager)
}

// save stores what this run applied in the memory.
func (r *run) save() error {
	if r.opts.Memory == nil || r.inv == nil || r.opts.DryRun {
		return nil
	}
	entries := map[string]Remembered{}
	for _, it := range r.items {
		key := it.entry.ID.String()
		switch {
		case it.entry.Action == Failed || it.entry.Action == Skipped:
			continue
		case it.entry.Applied != nil:
			if own := ownershipOf(it.entry.Applied.GetManagedFields(), r.opts.FieldManager); own != "" {
				entries[key] = Remembered{Hash: it.hash, Ownership: own}
			}
		case it.entry.Action == Unchanged:
			if old, ok := r.remembered[key]; ok {
				entries[key] = old
			}
		}
	}
	if err := r.opts.Memory.Save(r.memoryKey(), entries); err != nil {
		return fmt.Errorf("cluster %s: save applied-state memory: %w", r.target.Name, err)
	}
	return nil
}

// skipUnwritten marks every object that was not written (and did not
// fail), and every planned prune, as skipped.
func (r *run) skipUnwritten() {
	for _, it := range r.items {
		if !it.written && it.entry.Action != Failed {
			it.entry.Action = Skipped
		}
	}
	// Nothing is pruned after a failure: members planned for deletion
	// are not deleted.
	for _, p := range r.prunes {
		if !p.gone && p.entry.Action == Pruned {
			p.entry.Action = Skipped
		}
	}
}

// waveOf reads the wave annotation; a bad value is an error of the object.
// Argo CD's sync-wave is read when gitk8s's is missing, so a repository
// moved from Argo CD keeps its order.
func waveOf(u *unstructured.Unstructured) (int, error) {
	key := AnnotationWave
	v, ok := u.GetAnnotations()[key]
	if !ok {
		key = AnnotationArgoWave
		if v, ok = u.GetAnnotations()[key]; !ok {
			return 0, nil
		}
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return 0, fmt.Errorf("annotation %s: %q is not a whole number", key, v)
	}
	return n, nil
}

// lessItem orders items as they are applied: prerequisites (Namespaces,
// CRDs) first whatever their wave, then by wave, then by kind.
func lessItem(a, b *item) bool {
	fa, fb := phaseOf(a.entry.ID.GroupKind) == phaseFoundation, phaseOf(b.entry.ID.GroupKind) == phaseFoundation
	if fa != fb {
		return fa
	}
	if a.entry.Wave != b.entry.Wave {
		return a.entry.Wave < b.entry.Wave
	}
	return a.rank < b.rank
}
