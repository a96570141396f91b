package reconcile

import (
	"context"
	"encoding/json"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/cluster"
)

// AnnotationHooksRevision on a sync's inventory Secret is the revision
// whose hooks all ran there, so that a reconcile of the same revision
// does not run them again. A source without revisions (a plain folder)
// runs its hooks on every apply.
const AnnotationHooksRevision = "gitk8s.io/hooks-revision"

var secretsResource = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}

// hooksRanFor reports whether the hooks of revision already ran in the
// cluster. An unreadable inventory means they did not.
func hooksRanFor(ctx context.Context, t *cluster.Target, inv apply.InventoryOptions, revision string) bool {
	if revision == "" {
		return false
	}
	s, err := t.Dynamic.Resource(secretsResource).Namespace(inv.Namespace).Get(ctx, inv.Name, metav1.GetOptions{})
	return err == nil && s.GetAnnotations()[AnnotationHooksRevision] == revision
}

// recordHooksRan notes on the inventory that revision's hooks ran. It is
// best effort: when it fails, the next reconcile runs them again.
func recordHooksRan(ctx context.Context, t *cluster.Target, inv apply.InventoryOptions, revision string) {
	if revision == "" {
		return
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{AnnotationHooksRevision: revision}}})
	_, _ = t.Dynamic.Resource(secretsResource).Namespace(inv.Namespace).Patch(ctx, inv.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: apply.HooksFieldManager})
}
