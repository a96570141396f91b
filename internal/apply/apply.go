package apply

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/cli-utils/pkg/object"

	"github.com/gitk8s/gitk8s/internal/cluster"
	"github.com/gitk8s/gitk8s/internal/render"
)

// Options tune an apply.
type Options struct {
	// FieldManager is the server-side apply field manager.
	FieldManager string
	// Force takes over fields other managers own: what Git says wins.
	Force bool
	// Concurrency bounds requests in flight to the cluster.
	Concurrency int
	// DryRun plans only: nothing is written.
	DryRun bool
	// CRDTimeout bounds the wait for a new CRD to become Established.
	CRDTimeout time.Duration
}

// DefaultOptions are the options gitk8s applies with.
func DefaultOptions() Options {
	return Options{FieldManager: "gitk8s", Force: true, Concurrency: 16, CRDTimeout: time.Minute}
}

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
		opts.FieldManager = "gitk8s"
	}
	return &Manager{target: target, opts: opts}
}

// item is one object on its way through an apply.
type item struct {
	entry *ChangeSetEntry
	obj   *unstructured.Unstructured // a copy, namespace filled in
	rank  int
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
	// planned is set once the dry-run ran; written once the object was
	// applied for real (or needed no write).
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

// Apply plans and applies objects. Per-object failures are entries of the
// change set; the error is for what stops the whole apply, such as an
// unreachable cluster. When any object fails to plan, nothing more is
// written: the only objects written before every object is planned are the
// prerequisites (Namespaces, CRDs, ServiceAccounts of bare Pods) without
// which the API server cannot dry-run the objects that need them.
func (m *Manager) Apply(ctx context.Context, objects []*render.Object) (*ChangeSet, error) {
	if _, err := m.target.Discovery.ServerVersion(); err != nil {
		return nil, fmt.Errorf("cluster %s (%s) unreachable: %w", m.target.Name, m.target.Server, err)
	}
	items, err := m.prepare(ctx, objects)
	if err != nil {
		return nil, err
	}
	cs := changeSetOf(items)
	for {
		plannable := filter(items, func(it *item) bool {
			return !it.planned && it.entry.Action != Failed && !it.blocked()
		})
		if err := m.plan(ctx, plannable); err != nil {
			return cs, err
		}
		if cs.Failed() {
			skip(items)
			return cs, nil
		}
		blocked := filter(items, func(it *item) bool { return !it.planned && it.entry.Action != Failed })
		if len(blocked) == 0 {
			break
		}
		if m.opts.DryRun {
			// What waits for a prerequisite that does not exist cannot be
			// checked by the server; it would be created.
			for _, it := range blocked {
				it.entry.Action = Created
			}
			return cs, nil
		}
		prereqs := prerequisitesOf(blocked)
		if len(prereqs) == 0 {
			return cs, fmt.Errorf("cluster %s: %d objects wait for prerequisites that cannot be planned", m.target.Name, len(blocked))
		}
		for _, group := range byRank(prereqs) {
			if err := m.write(ctx, group); err != nil {
				return cs, err
			}
		}
		if cs.Failed() {
			skip(items)
			return cs, nil
		}
		if err := m.afterPrerequisites(ctx, blocked); err != nil {
			return cs, err
		}
		if cs.Failed() {
			skip(items)
			return cs, nil
		}
	}
	if m.opts.DryRun {
		return cs, nil
	}
	for _, group := range byRank(filter(items, func(it *item) bool { return !it.written })) {
		if err := m.write(ctx, group); err != nil {
			return cs, err
		}
		if cs.Failed() {
			skip(items)
			return cs, nil
		}
	}
	return cs, nil
}

// prerequisitesOf returns the planned, unwritten objects that blocked
// objects wait on.
func prerequisitesOf(blocked []*item) []*item {
	seen := map[*item]bool{}
	var out []*item
	for _, it := range blocked {
		for _, p := range it.waitsOn {
			if p.planned && !p.written && !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	return out
}

// afterPrerequisites makes the cluster ready for the blocked objects once
// their prerequisites are written: new kinds are mapped, and Namespaces
// that bare Pods need have their default ServiceAccount.
func (m *Manager) afterPrerequisites(ctx context.Context, blocked []*item) error {
	remapped := false
	for _, it := range blocked {
		if !it.unmapped || it.blocked() {
			continue
		}
		if !remapped {
			m.target.Mapper.Reset()
			remapped = true
		}
		if err := m.resolve(it, nil); err != nil {
			return err
		}
	}
	for _, it := range blocked {
		if !it.needsDefaultServiceAccount || it.blocked() || it.entry.Action == Failed {
			continue
		}
		if err := m.waitDefaultServiceAccount(ctx, it.obj.GetNamespace()); err != nil {
			m.fail(it, err)
		}
	}
	return nil
}

// prepare copies the objects, maps each to its resource, fills in the
// default namespace and links each object to the prerequisites of the same
// bundle that do not exist in the cluster yet.
func (m *Manager) prepare(ctx context.Context, objects []*render.Object) ([]*item, error) {
	crds := bundleCRDs(objects)
	items := make([]*item, len(objects))
	for i, o := range objects {
		it := &item{
			entry: &ChangeSetEntry{Source: o.Source},
			obj:   o.Object.DeepCopy(),
			rank:  rankOf(o.Object.GroupVersionKind().GroupKind()),
		}
		if err := m.resolve(it, crds); err != nil {
			return nil, err
		}
		items[i] = it
	}

	// The same object twice, once with its namespace written and once
	// without, is only visible now that namespaces are filled in.
	byID := map[string]*item{}
	for _, it := range items {
		key := it.entry.ID.String()
		if first, ok := byID[key]; ok && it.entry.Action != Failed {
			m.fail(it, fmt.Errorf("defined twice, first at %s; keep one definition", first.entry.Source))
			continue
		}
		byID[key] = it
	}
	find := func(gk schema.GroupKind, namespace, name string) *item {
		return byID[object.ObjMetadata{GroupKind: gk, Namespace: namespace, Name: name}.String()]
	}

	// Which prerequisites of the bundle are missing from the cluster.
	missingNamespaces := map[string]*item{}
	missingServiceAccounts := map[string]*item{}
	for _, it := range items {
		if it.entry.Action == Failed {
			continue
		}
		switch it.entry.ID.GroupKind {
		case namespaceGK:
			exists, err := m.exists(ctx, it)
			if err != nil {
				return nil, err
			}
			if !exists {
				missingNamespaces[it.entry.ID.Name] = it
			}
		case podGK:
			key := it.obj.GetNamespace() + "/" + serviceAccountOf(it.obj)
			saItem := find(serviceAccountGK, it.obj.GetNamespace(), serviceAccountOf(it.obj))
			if saItem == nil || missingServiceAccounts[key] != nil {
				continue
			}
			exists, err := m.exists(ctx, saItem)
			if err != nil {
				return nil, err
			}
			if !exists {
				missingServiceAccounts[key] = saItem
			}
		}
	}
	for _, it := range items {
		if it.entry.Namespaced {
			if ns := missingNamespaces[it.entry.ID.Namespace]; ns != nil {
				it.waitsOn = append(it.waitsOn, ns)
			}
		}
		if it.unmapped {
			gk := it.obj.GroupVersionKind().GroupKind()
			for _, crd := range items {
				if crd.entry.ID.GroupKind == crdGK && crdDefines(crd.obj, gk) {
					it.waitsOn = append(it.waitsOn, crd)
				}
			}
		}
		if it.entry.ID.GroupKind == podGK {
			sa := serviceAccountOf(it.obj)
			if saItem := missingServiceAccounts[it.obj.GetNamespace()+"/"+sa]; saItem != nil {
				it.waitsOn = append(it.waitsOn, saItem)
			} else if sa == "default" && missingNamespaces[it.obj.GetNamespace()] != nil {
				it.needsDefaultServiceAccount = true
			}
		}
	}
	return items, nil
}

// exists reports whether the object is in the cluster. Objects whose
// namespace is missing do not exist.
func (m *Manager) exists(ctx context.Context, it *item) (bool, error) {
	_, err := m.resourceFor(it).Get(ctx, it.obj.GetName(), metav1.GetOptions{})
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsNotFound(err):
		return false, nil
	default:
		return false, fmt.Errorf("cluster %s: read %s: %w", m.target.Name, it.entry.Ref, err)
	}
}

// resolve maps the item's kind to a resource. With crds (kinds defined by
// CRDs of the bundle) an unknown kind defined there waits for its CRD;
// without, an unknown kind fails. Only an unreachable cluster is returned
// as an error.
func (m *Manager) resolve(it *item, crds map[schema.GroupKind]bool) error {
	gvk := it.obj.GroupVersionKind()
	mapping, err := m.target.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	switch {
	case err == nil:
		it.entry.GVR = mapping.Resource
		it.entry.Namespaced = mapping.Scope.Name() == meta.RESTScopeNameNamespace
		it.unmapped = false
	case meta.IsNoMatchError(err):
		if namespaced, ok := crds[gvk.GroupKind()]; ok {
			it.unmapped = true
			it.entry.Namespaced = namespaced
		} else {
			m.fail(it, m.unknownKind(gvk))
		}
	default:
		return fmt.Errorf("cluster %s: map %s: %w", m.target.Name, gvk, err)
	}
	if it.entry.Namespaced {
		if it.obj.GetNamespace() == "" {
			it.obj.SetNamespace(m.target.Namespace)
		}
	} else {
		// kubectl drops a namespace written on a cluster-scoped object; so do we.
		it.obj.SetNamespace("")
	}
	it.entry.ID = render.IDOf(it.obj)
	it.entry.Ref = render.RefOf(it.obj)
	return nil
}

// unknownKind explains a kind the cluster does not serve at this
// apiVersion, naming the versions (of any group) where it does serve a kind
// of that name.
func (m *Manager) unknownKind(gvk schema.GroupVersionKind) error {
	var served []string
	_, lists, _ := m.target.Discovery.ServerGroupsAndResources()
	for _, list := range lists {
		for _, r := range list.APIResources {
			if r.Kind == gvk.Kind && !strings.Contains(r.Name, "/") {
				served = append(served, list.GroupVersion)
			}
		}
	}
	if len(served) > 0 {
		sort.Strings(served)
		return fmt.Errorf("apiVersion %s is not served for kind %s by cluster %s; it serves %s %v: change apiVersion", gvk.GroupVersion(), gvk.Kind, m.target.Name, gvk.Kind, served)
	}
	return fmt.Errorf("kind %s (apiVersion %s) is not known to cluster %s: install the CustomResourceDefinition that defines it, add it to the repository, or fix apiVersion and kind", gvk.Kind, gvk.GroupVersion(), m.target.Name)
}

// plan dry-runs every item and sets its action.
func (m *Manager) plan(ctx context.Context, items []*item) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(m.opts.Concurrency)
	for _, it := range items {
		it.planned = true
		g.Go(func() error {
			ri := m.resourceFor(it)
			live, err := ri.Get(ctx, it.obj.GetName(), metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				live, err = nil, nil
			}
			if err != nil {
				if isClusterDown(err) {
					return fmt.Errorf("cluster %s: read %s: %w", m.target.Name, it.entry.Ref, err)
				}
				m.fail(it, fmt.Errorf("read failed: %w", err))
				return nil
			}
			result, err := m.serverSideApply(ctx, ri, it.obj, true)
			if err != nil {
				if isClusterDown(err) {
					return fmt.Errorf("cluster %s: dry-run %s: %w", m.target.Name, it.entry.Ref, err)
				}
				m.fail(it, fmt.Errorf("dry-run failed: %w", err))
				return nil
			}
			it.entry.Applied = result
			switch {
			case live == nil:
				it.entry.Action = Created
			case sameObject(live, result):
				it.entry.Action = Unchanged
			default:
				it.entry.Action = Configured
			}
			return nil
		})
	}
	return g.Wait()
}

// write applies the items that the plan says change, in parallel, then
// waits for any CRD among them to be Established.
func (m *Manager) write(ctx context.Context, items []*item) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(m.opts.Concurrency)
	for _, it := range items {
		if it.entry.Action == Unchanged || it.entry.Action == Failed {
			it.written = true
			continue
		}
		g.Go(func() error {
			result, err := m.serverSideApply(gctx, m.resourceFor(it), it.obj, false)
			it.written = true
			if err != nil {
				if isClusterDown(err) {
					return fmt.Errorf("cluster %s: apply %s: %w", m.target.Name, it.entry.Ref, err)
				}
				m.fail(it, fmt.Errorf("apply failed: %w", err))
				return nil
			}
			it.entry.Applied = result
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, it := range items {
		if it.entry.ID.GroupKind == crdGK && it.entry.Action != Failed {
			if err := m.waitEstablished(ctx, it); err != nil {
				m.fail(it, err)
			}
		}
	}
	return nil
}

func (m *Manager) serverSideApply(ctx context.Context, ri dynamic.ResourceInterface, obj *unstructured.Unstructured, dryRun bool) (*unstructured.Unstructured, error) {
	data, err := obj.MarshalJSON()
	if err != nil {
		return nil, err
	}
	opts := metav1.PatchOptions{FieldManager: m.opts.FieldManager, Force: &m.opts.Force}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	return ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, data, opts)
}

// waitEstablished waits until a CRD's Established condition is True.
func (m *Manager) waitEstablished(ctx context.Context, it *item) error {
	ctx, cancel := context.WithTimeout(ctx, m.opts.CRDTimeout)
	defer cancel()
	ri := m.resourceFor(it)
	for {
		crd, err := ri.Get(ctx, it.obj.GetName(), metav1.GetOptions{})
		if err == nil && conditionTrue(crd, "Established") {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not Established after %s: the API server did not accept its names or schema", m.opts.CRDTimeout)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (m *Manager) resourceFor(it *item) dynamic.ResourceInterface {
	r := m.target.Dynamic.Resource(it.entry.GVR)
	if it.entry.Namespaced {
		return r.Namespace(it.obj.GetNamespace())
	}
	return r
}

// fail marks the item failed with an error that starts with its source and name.
func (m *Manager) fail(it *item, err error) {
	it.entry.Action = Failed
	ref := it.entry.Ref
	if ref == "" {
		ref = render.RefOf(it.obj)
	}
	it.entry.Err = &render.Error{Source: it.entry.Source, Object: ref, Err: err}
}

// skip marks every object that was not written (and did not fail) as skipped.
func skip(items []*item) {
	for _, it := range items {
		if !it.written && it.entry.Action != Failed {
			it.entry.Action = Skipped
		}
	}
}

// sameObject reports whether a dry-run result equals the live object,
// ignoring what changes on every read or write.
func sameObject(live, result *unstructured.Unstructured) bool {
	return equalIgnoringVolatile(live.Object, result.Object)
}

// isClusterDown tells errors that mean the cluster could not be reached
// (rather than that it refused one object) by their type, never their text.
func isClusterDown(err error) bool {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return apierrors.IsServiceUnavailable(err) || apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err)
	}
	return !errors.Is(err, context.Canceled)
}

func conditionTrue(u *unstructured.Unstructured, condType string) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == condType && m["status"] == "True" {
			return true
		}
	}
	return false
}

func changeSetOf(items []*item) *ChangeSet {
	sorted := make([]*item, len(items))
	copy(sorted, items)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].rank < sorted[j].rank })
	cs := &ChangeSet{Entries: make([]*ChangeSetEntry, len(sorted))}
	for i, it := range sorted {
		cs.Entries[i] = it.entry
	}
	return cs
}

func filter(items []*item, keep func(*item) bool) []*item {
	var out []*item
	for _, it := range items {
		if keep(it) {
			out = append(out, it)
		}
	}
	return out
}

// byRank groups items by kind rank, lowest first, keeping their order.
func byRank(items []*item) [][]*item {
	sorted := make([]*item, len(items))
	copy(sorted, items)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].rank < sorted[j].rank })
	var groups [][]*item
	for i, it := range sorted {
		if i == 0 || it.rank != sorted[i-1].rank {
			groups = append(groups, nil)
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], it)
	}
	return groups
}
