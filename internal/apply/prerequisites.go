package apply

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/gitk8s/gitk8s/internal/render"
)

// bundleCRDs returns the kinds the bundle's CRDs define, and whether each is namespaced.
func bundleCRDs(objects []*render.Object) map[schema.GroupKind]bool {
	kinds := map[schema.GroupKind]bool{}
	for _, o := range objects {
		if o.Object.GroupVersionKind().GroupKind() != crdGK {
			continue
		}
		group, _, _ := unstructured.NestedString(o.Object.Object, "spec", "group")
		kind, _, _ := unstructured.NestedString(o.Object.Object, "spec", "names", "kind")
		scope, _, _ := unstructured.NestedString(o.Object.Object, "spec", "scope")
		kinds[schema.GroupKind{Group: group, Kind: kind}] = scope == "Namespaced"
	}
	return kinds
}

// crdDefines reports whether the CRD defines the kind.
func crdDefines(crd *unstructured.Unstructured, gk schema.GroupKind) bool {
	group, _, _ := unstructured.NestedString(crd.Object, "spec", "group")
	kind, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "kind")
	return group == gk.Group && kind == gk.Kind
}

// serviceAccountOf is the ServiceAccount a Pod runs as.
func serviceAccountOf(pod *unstructured.Unstructured) string {
	if sa, _, _ := unstructured.NestedString(pod.Object, "spec", "serviceAccountName"); sa != "" {
		return sa
	}
	return "default"
}

// defaultServiceAccountTimeout bounds the wait for the controller manager
// to create a new Namespace's default ServiceAccount.
const defaultServiceAccountTimeout = 30 * time.Second

// waitDefaultServiceAccount waits until the namespace's "default"
// ServiceAccount exists.
func (m *Manager) waitDefaultServiceAccount(ctx context.Context, namespace string) error {
	ctx, cancel := context.WithTimeout(ctx, defaultServiceAccountTimeout)
	defer cancel()
	sas := m.target.Dynamic.Resource(schema.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"}).Namespace(namespace)
	for {
		_, err := sas.Get(ctx, "default", metav1.GetOptions{})
		if err == nil {
			return nil
		}
		if !apierrors.IsNotFound(err) && ctx.Err() == nil {
			return fmt.Errorf("read ServiceAccount/%s/default: %w", namespace, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ServiceAccount/%s/default did not appear within %s; is kube-controller-manager running?", namespace, defaultServiceAccountTimeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
