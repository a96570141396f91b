package apply

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/gitk8s/gitk8s/internal/cluster"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/cli-utils/pkg/object"
)

// Labels and annotations of the ApplySet specification (KEP-3659), as
// kubectl apply --applyset writes and reads them.
const (
	LabelApplySetID                = "applyset.kubernetes.io/id"
	LabelPartOf                    = "applyset.kubernetes.io/part-of"
	AnnotationTooling              = "applyset.kubernetes.io/tooling"
	AnnotationContainsGroupKinds   = "applyset.kubernetes.io/contains-group-kinds"
	AnnotationAdditionalNamespaces = "applyset.kubernetes.io/additional-namespaces"
)

// Tooling is written to the parent's tooling annotation; set it to
// gitk8s/<version> at build time.
var Tooling = "gitk8s/dev"

var secretsGVR = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}

// ApplySetID is the id of the ApplySet whose parent is the Secret
// namespace/name: "applyset-" + base64url(sha256("name.namespace.Secret.")) + "-v1".
func ApplySetID(name, namespace string) string {
	sum := sha256.Sum256([]byte(strings.Join([]string{name, namespace, "Secret", ""}, ".")))
	return "applyset-" + base64.RawURLEncoding.EncodeToString(sum[:]) + "-v1"
}

// inventory is the ApplySet parent as read from the cluster.
type inventory struct {
	name, namespace, id string
	// exists is false before the first apply.
	exists bool
	// groupKinds and namespaces are where members may live.
	groupKinds map[schema.GroupKind]bool
	namespaces map[string]bool
}

// member is an object labelled as part of the ApplySet.
type member struct {
	id            object.ObjMetadata
	gvr           schema.GroupVersionResource
	namespaced    bool
	ownership     string
	pruneDisabled bool
}

// readInventory reads the parent Secret; a missing one is an empty inventory.
func (m *Manager) readInventory(ctx context.Context) (*inventory, error) {
	return m.readParent(ctx, m.opts.Inventory.Name, m.opts.Inventory.Namespace)
}

// readParent reads the ApplySet parent Secret namespace/name.
func (m *Manager) readParent(ctx context.Context, name, namespace string) (*inventory, error) {
	o := InventoryOptions{Name: name, Namespace: namespace}
	inv := &inventory{name: o.Name, namespace: o.Namespace, id: ApplySetID(o.Name, o.Namespace),
		groupKinds: map[schema.GroupKind]bool{}, namespaces: map[string]bool{}}
	parent, err := m.target.Metadata.Resource(secretsGVR).Namespace(o.Namespace).Get(ctx, o.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return inv, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cluster %s: read inventory Secret/%s/%s: %w", m.target.Name, o.Namespace, o.Name, err)
	}
	if got := parent.GetLabels()[LabelApplySetID]; got != inv.id {
		return nil, fmt.Errorf("cluster %s: Secret/%s/%s exists but is not the ApplySet parent gitk8s expects (label %s is %q, want %q); choose another inventory name", m.target.Name, o.Namespace, o.Name, LabelApplySetID, got, inv.id)
	}
	inv.exists = true
	ann := parent.GetAnnotations()
	for _, s := range splitList(ann[AnnotationContainsGroupKinds]) {
		inv.groupKinds[schema.ParseGroupKind(s)] = true
	}
	for _, ns := range splitList(ann[AnnotationAdditionalNamespaces]) {
		inv.namespaces[ns] = true
	}
	inv.namespaces[o.Namespace] = true
	return inv, nil
}

// listMembers lists, metadata only, every object labelled as part of the
// ApplySet among the given kinds: one request per kind, across namespaces.
func (m *Manager) listMembers(ctx context.Context, inv *inventory, kinds map[schema.GroupKind]bool) (map[string]*member, error) {
	members := map[string]*member{}
	selector := LabelPartOf + "=" + inv.id
	for _, gk := range sortedGroupKinds(kinds) {
		mapping, err := m.target.Mapper.RESTMapping(gk)
		if meta.IsNoMatchError(err) {
			continue // a kind no longer served has no members to find
		}
		if err != nil {
			return nil, fmt.Errorf("cluster %s: map %s: %w", m.target.Name, gk, err)
		}
		namespaced := mapping.Scope.Name() == meta.RESTScopeNameNamespace
		items, err := m.listLabelled(ctx, mapping.Resource, namespaced, inv, selector)
		if err != nil {
			return nil, fmt.Errorf("cluster %s: list inventory members of kind %s: %w", m.target.Name, gk, err)
		}
		for i := range items {
			item := &items[i]
			mb := &member{
				id:            object.ObjMetadata{GroupKind: gk, Namespace: item.Namespace, Name: item.Name},
				gvr:           mapping.Resource,
				namespaced:    namespaced,
				ownership:     ownershipOf(item.ManagedFields, m.opts.FieldManager),
				pruneDisabled: item.Annotations[AnnotationPrune] == "disabled",
			}
			members[mb.id.String()] = mb
		}
	}
	return members, nil
}

// listLabelled lists a resource's objects with the selector: across all
// namespaces in one request, or, when whoever applies may not list across
// namespaces (a team's ServiceAccount), in each namespace the inventory
// records, which are the only ones its members can be in.
func (m *Manager) listLabelled(ctx context.Context, gvr schema.GroupVersionResource, namespaced bool, inv *inventory, selector string) ([]metav1.PartialObjectMetadata, error) {
	if !namespaced || m.target.Impersonated == "" {
		list, err := m.target.Metadata.Resource(gvr).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err == nil {
			return list.Items, nil
		}
		if !namespaced || !apierrors.IsForbidden(err) {
			return nil, err
		}
	}
	var items []metav1.PartialObjectMetadata
	for _, ns := range sortedKeys(inv.namespaces) {
		list, err := m.target.Metadata.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return nil, err
		}
		items = append(items, list.Items...)
	}
	return items, nil
}

// sortedKeys are a set's members in order.
func sortedKeys(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// writeInventory makes the parent Secret list exactly the given kinds and
// namespaces, creating its namespace when needed.
func (m *Manager) writeInventory(ctx context.Context, inv *inventory, kinds map[schema.GroupKind]bool, namespaces map[string]bool) error {
	if err := m.ensureNamespace(ctx, inv.namespace); err != nil {
		return err
	}
	var gks []string
	for _, gk := range sortedGroupKinds(kinds) {
		gks = append(gks, gk.String())
	}
	var nss []string
	for ns := range namespaces {
		if ns != "" && ns != inv.namespace {
			nss = append(nss, ns)
		}
	}
	sort.Strings(nss)
	parent := map[string]any{
		"apiVersion": "v1",
		"kind":       "Secret",
		"type":       "gitk8s.io/inventory",
		"metadata": map[string]any{
			"name":      inv.name,
			"namespace": inv.namespace,
			"labels":    map[string]any{LabelApplySetID: inv.id},
			"annotations": map[string]any{
				AnnotationTooling:              Tooling,
				AnnotationContainsGroupKinds:   strings.Join(gks, ","),
				AnnotationAdditionalNamespaces: strings.Join(nss, ","),
			},
		},
	}
	data, err := json.Marshal(parent)
	if err != nil {
		return err
	}
	force := true
	_, err = m.target.Dynamic.Resource(secretsGVR).Namespace(inv.namespace).Patch(ctx, inv.name, types.ApplyPatchType, data,
		metav1.PatchOptions{FieldManager: m.opts.FieldManager + "-applyset", Force: &force})
	if err != nil {
		return fmt.Errorf("cluster %s: write inventory Secret/%s/%s: %w", m.target.Name, inv.namespace, inv.name, err)
	}
	inv.exists = true
	inv.groupKinds, inv.namespaces = kinds, namespaces
	return nil
}

// ensureNamespace creates the inventory's namespace when it is missing. It
// is not a member of any inventory, so it is never pruned.
func (m *Manager) ensureNamespace(ctx context.Context, name string) error {
	nsGVR := schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	_, err := m.target.Metadata.Resource(nsGVR).Get(ctx, name, metav1.GetOptions{})
	if err == nil {
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("cluster %s: read Namespace/%s: %w", m.target.Name, name, err)
	}
	data := []byte(fmt.Sprintf(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":%q}}`, name))
	force := true
	if _, err := m.target.Dynamic.Resource(nsGVR).Patch(ctx, name, types.ApplyPatchType, data,
		metav1.PatchOptions{FieldManager: m.opts.FieldManager + "-applyset", Force: &force}); err != nil {
		return fmt.Errorf("cluster %s: create inventory Namespace/%s: %w", m.target.Name, name, err)
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func sortedGroupKinds(kinds map[schema.GroupKind]bool) []schema.GroupKind {
	out := make([]schema.GroupKind, 0, len(kinds))
	for gk := range kinds {
		out = append(out, gk)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// Inventory describes one ApplySet parent as found in a cluster.
type Inventory struct {
	Name, Namespace, ID string
	// Tooling is what wrote it (gitk8s/<version>, kubectl/<version>).
	Tooling string
	// Kinds and Namespaces are where its members may live.
	Kinds      []string
	Namespaces []string
}

// ListInventories lists the ApplySet parents (Secrets) in a namespace,
// metadata only, sorted by name.
func ListInventories(ctx context.Context, t *cluster.Target, namespace string) ([]Inventory, error) {
	list, err := t.Metadata.Resource(secretsGVR).Namespace(namespace).List(ctx, metav1.ListOptions{LabelSelector: LabelApplySetID})
	if err != nil {
		return nil, fmt.Errorf("cluster %s: list inventories in %s: %w", t.Name, namespace, err)
	}
	out := make([]Inventory, 0, len(list.Items))
	for _, item := range list.Items {
		ann := item.Annotations
		out = append(out, Inventory{Name: item.Name, Namespace: item.Namespace, ID: item.Labels[LabelApplySetID],
			Tooling: ann[AnnotationTooling], Kinds: splitList(ann[AnnotationContainsGroupKinds]), Namespaces: splitList(ann[AnnotationAdditionalNamespaces])})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
