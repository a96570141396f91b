package apply

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/cli-utils/pkg/object"

	"github.com/gitk8s/gitk8s/internal/apiversions"
	"github.com/gitk8s/gitk8s/internal/cluster"
	"github.com/gitk8s/gitk8s/internal/diff"
	"github.com/gitk8s/gitk8s/internal/render"
)

// prepare copies the objects, maps each to its resource, fills in the
// default namespace, labels it as an inventory member, and links it to the
// prerequisites of the same bundle that do not exist in the cluster yet.
// members (may be nil) are the inventory's live members.
func (m *Manager) prepare(ctx context.Context, objects []*render.Object, members map[string]*member) ([]*item, error) {
	crds := bundleCRDs(objects)
	items := make([]*item, len(objects))
	for i, o := range objects {
		it := &item{
			entry: &ChangeSetEntry{Source: o.Source},
			obj:   o.Object.DeepCopy(),
			rank:  rankOf(o.Object.GroupVersionKind().GroupKind()),
		}
		items[i] = it
		if err := m.resolve(it, crds); err != nil {
			return nil, err
		}
		wave, err := waveOf(it.obj)
		if err != nil {
			m.fail(it, err)
		}
		it.entry.Wave = wave
		if m.opts.Inventory.Name != "" {
			labels := it.obj.GetLabels()
			if labels == nil {
				labels = map[string]string{}
			}
			labels[LabelPartOf] = ApplySetID(m.opts.Inventory.Name, m.opts.Inventory.Namespace)
			it.obj.SetLabels(labels)
		}
		if it.data, err = it.obj.MarshalJSON(); err != nil {
			m.fail(it, err)
		}
		it.hash = hashObject(it.data, m.opts.FieldManager, m.opts.ForceConflicts)
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
	exists := func(it *item) (bool, error) {
		if _, ok := members[it.entry.ID.String()]; ok {
			return true, nil
		}
		return m.exists(ctx, it)
	}

	// Which prerequisites of the bundle are missing from the cluster.
	missingNamespaces := map[string]*item{}
	for _, it := range items {
		if it.entry.Action == Failed || it.entry.ID.GroupKind != namespaceGK {
			continue
		}
		ok, err := exists(it)
		if err != nil {
			return nil, err
		}
		if !ok {
			missingNamespaces[it.entry.ID.Name] = it
		}
	}
	missingServiceAccounts := map[string]*item{}
	for _, it := range items {
		if it.entry.Action == Failed || it.entry.ID.GroupKind != podGK {
			continue
		}
		ns, sa := it.obj.GetNamespace(), serviceAccountOf(it.obj)
		saItem := find(serviceAccountGK, ns, sa)
		if saItem == nil || missingServiceAccounts[ns+"/"+sa] != nil {
			continue
		}
		ok := false
		if missingNamespaces[ns] == nil {
			var err error
			if ok, err = exists(saItem); err != nil {
				return nil, err
			}
		}
		if !ok {
			missingServiceAccounts[ns+"/"+sa] = saItem
		}
	}
	// A binding's role must exist before the API server can check, for a
	// client without the bind verb, that the binding grants nothing the
	// client lacks.
	missingRoles := map[*item]*item{}
	for _, it := range items {
		gk := it.entry.ID.GroupKind
		if it.entry.Action == Failed || (gk != roleBindingGK && gk != clusterRoleBindingGK) {
			continue
		}
		kind, _, _ := unstructured.NestedString(it.obj.Object, "roleRef", "kind")
		name, _, _ := unstructured.NestedString(it.obj.Object, "roleRef", "name")
		roleNS := ""
		if kind == "Role" {
			roleNS = it.obj.GetNamespace()
		}
		role := find(schema.GroupKind{Group: rbacGroup, Kind: kind}, roleNS, name)
		if role == nil || role.entry.Action == Failed {
			continue
		}
		ok := false
		if roleNS == "" || missingNamespaces[roleNS] == nil {
			var err error
			if ok, err = exists(role); err != nil {
				return nil, err
			}
		}
		if !ok {
			missingRoles[it] = role
		}
	}
	for _, it := range items {
		if role := missingRoles[it]; role != nil {
			it.waitsOn = append(it.waitsOn, role)
		}
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

// exists reports whether the object is in the cluster.
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
			// Its scope is unknown: it keeps the namespace it was given,
			// and its entry and error name it alike.
			it.entry.ID = render.IDOf(it.obj)
			it.entry.Ref = render.RefOf(it.obj)
			m.fail(it, m.unknownKind(gvk))
			return nil
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
	if r, ok := apiversions.Lookup(gvk); ok {
		return fmt.Errorf("%s; cluster %s does not serve it", r.Message(), m.target.Name)
	}
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

// planAll plans every object. While some objects wait for prerequisites of
// the same bundle, it writes those prerequisites (and only those) and
// plans again.
func (r *run) planAll(ctx context.Context) error {
	for {
		plannable := filter(r.items, func(it *item) bool {
			return !it.planned && it.entry.Action != Failed && !it.blocked()
		})
		if err := r.plan(ctx, plannable); err != nil {
			return err
		}
		if r.cs.Failed() {
			return nil
		}
		blocked := filter(r.items, func(it *item) bool { return !it.planned && it.entry.Action != Failed })
		if len(blocked) == 0 {
			return nil
		}
		if r.opts.DryRun {
			// What waits for a prerequisite that does not exist cannot be
			// checked by the server; it would be created.
			for _, it := range blocked {
				it.entry.Action = Created
				it.entry.Diff = diff.Unified(it.entry.Ref, nil, it.obj, r.opts.Masker)
			}
			return nil
		}
		prereqs := prerequisitesOf(blocked)
		if len(prereqs) == 0 {
			return fmt.Errorf("cluster %s: %d objects wait for prerequisites that cannot be planned", r.target.Name, len(blocked))
		}
		for _, group := range byRank(prereqs) {
			if err := r.write(ctx, group); err != nil {
				return err
			}
		}
		if r.cs.Failed() {
			return nil
		}
		if err := r.afterPrerequisites(ctx, blocked); err != nil {
			return err
		}
		if r.cs.Failed() {
			return nil
		}
	}
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
func (r *run) afterPrerequisites(ctx context.Context, blocked []*item) error {
	remapped := false
	for _, it := range blocked {
		if !it.unmapped || it.blocked() {
			continue
		}
		if !remapped {
			r.target.Mapper.Reset()
			remapped = true
		}
		if err := r.resolve(it, nil); err != nil {
			return err
		}
	}
	for _, it := range blocked {
		if !it.needsDefaultServiceAccount || it.blocked() || it.entry.Action == Failed {
			continue
		}
		if err := r.waitDefaultServiceAccount(ctx, it.obj.GetNamespace()); err != nil {
			r.fail(it, err)
		}
	}
	return nil
}

// plan decides each item's action. An object the memory shows nobody
// changed since gitk8s applied this same manifest costs no request;
// otherwise it is dry-run applied, and read when it exists.
func (r *run) plan(ctx context.Context, items []*item) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.opts.Concurrency)
	for _, it := range items {
		it.planned = true
		key := it.entry.ID.String()
		if mb, ok := r.members[key]; ok && mb.ownership != "" {
			if rem, ok := r.remembered[key]; ok && rem.Hash == it.hash && rem.Ownership == mb.ownership {
				it.entry.Action = Unchanged
				continue
			}
		}
		g.Go(func() error { return r.planOne(gctx, it) })
	}
	return g.Wait()
}

// planOne dry-runs one object: first without force, so that fields owned
// by other managers show up as conflicts, then with force when allowed.
func (r *run) planOne(ctx context.Context, it *item) error {
	ri := r.resourceFor(it)
	result, err := r.serverSideApply(ctx, ri, it, true, false)
	if apierrors.IsConflict(err) {
		it.entry.Conflicts = conflictsOf(err)
		if !r.opts.ForceConflicts {
			r.fail(it, fmt.Errorf("fields owned by other managers: %s; let Git win with forceConflicts (--force-conflicts on the command line), or remove the fields from the manifest", describeConflicts(it.entry.Conflicts)))
			return nil
		}
		result, err = r.serverSideApply(ctx, ri, it, true, true)
	}
	if apierrors.IsInvalid(err) {
		return r.planInvalid(ctx, it, err)
	}
	if err != nil {
		if cluster.IsUnavailable(err) {
			return fmt.Errorf("cluster %s: dry-run %s: %w", r.target.Name, it.entry.Ref, err)
		}
		r.fail(it, fmt.Errorf("dry-run failed: %w", err))
		return nil
	}
	it.entry.Applied = result
	if result.GetResourceVersion() == "" {
		// A dry-run create: the object does not exist.
		it.entry.Action = Created
		it.entry.Diff = diff.Unified(it.entry.Ref, nil, it.obj, r.opts.Masker)
		return nil
	}
	live, err := ri.Get(ctx, it.obj.GetName(), metav1.GetOptions{})
	if err != nil {
		if cluster.IsUnavailable(err) {
			return fmt.Errorf("cluster %s: read %s: %w", r.target.Name, it.entry.Ref, err)
		}
		r.fail(it, fmt.Errorf("read failed: %w", err))
		return nil
	}
	if equalIgnoringVolatile(live.Object, result.Object) {
		it.entry.Action = Unchanged
		return nil
	}
	it.entry.Action = Configured
	it.entry.Diff = diff.Unified(it.entry.Ref, live, result, r.opts.Masker)
	return nil
}

// planInvalid handles a dry-run the API server found invalid. When the
// object would be valid as a new object, what it refuses is changing an
// existing one in place (an immutable field): with gitk8s.io/recreate the
// object is planned for delete and create, without it the fields are
// named. Otherwise the object is simply invalid.
func (r *run) planInvalid(ctx context.Context, it *item, invalid error) error {
	fields := invalidFields(invalid)
	fresh, err := r.validAsNew(ctx, it)
	if err != nil {
		return err
	}
	if !fresh {
		r.fail(it, fmt.Errorf("dry-run failed: %w", invalid))
		return nil
	}
	it.entry.Immutable = fields
	if it.obj.GetAnnotations()[AnnotationRecreate] != "true" {
		r.fail(it, fmt.Errorf("%s cannot be changed on the existing object (%w); delete and re-create it, or annotate it %s: \"true\" to let gitk8s do so", strings.Join(fields, ", "), invalid, AnnotationRecreate))
		return nil
	}
	live, err := r.resourceFor(it).Get(ctx, it.obj.GetName(), metav1.GetOptions{})
	if err != nil {
		r.fail(it, fmt.Errorf("read failed: %w", err))
		return nil
	}
	it.recreate = true
	it.entry.Action = Recreated
	it.entry.Diff = diff.Unified(it.entry.Ref, live, it.obj, r.opts.Masker)
	return nil
}

// validAsNew dry-runs the object under a temporary name, where it is
// created rather than updated.
func (r *run) validAsNew(ctx context.Context, it *item) (bool, error) {
	probe := &item{entry: it.entry, obj: it.obj.DeepCopy()}
	name := it.obj.GetName()
	if len(name) > 40 {
		name = name[:40]
	}
	probe.obj.SetName(strings.TrimRight(name, "-.") + "-gitk8s-probe")
	var err error
	if probe.data, err = probe.obj.MarshalJSON(); err != nil {
		return false, err
	}
	_, err = r.serverSideApply(ctx, r.resourceFor(probe), probe, true, true)
	if err != nil && cluster.IsUnavailable(err) {
		return false, fmt.Errorf("cluster %s: dry-run %s: %w", r.target.Name, it.entry.Ref, err)
	}
	return err == nil, nil
}

// conflictsOf reads the fields of a server-side apply conflict from the
// error's structured causes.
func conflictsOf(err error) []Conflict {
	var out []Conflict
	var status apierrors.APIStatus
	if errors.As(err, &status) && status.Status().Details != nil {
		for _, c := range status.Status().Details.Causes {
			if c.Type == metav1.CauseTypeFieldManagerConflict {
				out = append(out, Conflict{Field: c.Field, Message: c.Message})
			}
		}
	}
	return out
}

func describeConflicts(cs []Conflict) string {
	var parts []string
	for _, c := range cs {
		parts = append(parts, c.Field+" ("+c.Message+")")
	}
	return strings.Join(parts, ", ")
}

// invalidFields are the fields named by an Invalid error's causes.
func invalidFields(err error) []string {
	var out []string
	var status apierrors.APIStatus
	if errors.As(err, &status) && status.Status().Details != nil {
		for _, c := range status.Status().Details.Causes {
			if c.Field != "" {
				out = append(out, c.Field)
			}
		}
	}
	if len(out) == 0 {
		out = []string{"a field"}
	}
	return out
}
