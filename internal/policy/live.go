package policy

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/gitk8s/gitk8s/internal/cluster"
)

// LiveTarget reads what a cluster holds, for rules that need it, caching
// each read for the run.
type LiveTarget struct {
	Target  *cluster.Target
	Context context.Context

	mu    sync.Mutex
	cache map[string]any
	// errs are the reads that failed for another reason than absence.
	errs []error
}

// NewLive returns a Live over a cluster.
func NewLive(ctx context.Context, t *cluster.Target) *LiveTarget {
	return &LiveTarget{Target: t, Context: ctx, cache: map[string]any{}}
}

// list lists a resource in a namespace, or across namespaces ("").
func (l *LiveTarget) list(resource, namespace string) ([]*unstructured.Unstructured, error) {
	key := "list/" + resource + "/" + namespace
	l.mu.Lock()
	if v, ok := l.cache[key]; ok {
		l.mu.Unlock()
		return v.([]*unstructured.Unstructured), nil
	}
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(l.Context, 30*time.Second)
	defer cancel()
	list, err := l.Target.Dynamic.Resource(schema.GroupVersionResource{Version: "v1", Resource: resource}).Namespace(namespace).List(ctx, metav1.ListOptions{})
	if namespace == "" && apierrors.IsForbidden(err) {
		// Remembered: the run lists namespace by namespace from now on.
		l.mu.Lock()
		l.cache["forbidden/"+resource] = true
		l.mu.Unlock()
		return nil, errListForbidden
	}
	if err != nil {
		return nil, l.failed(fmt.Errorf("list %s: %w", resource, err))
	}
	var out []*unstructured.Unstructured
	for i := range list.Items {
		out = append(out, &list.Items[i])
	}
	l.mu.Lock()
	l.cache[key] = out
	l.mu.Unlock()
	return out, nil
}

// errListForbidden says a list across namespaces was refused.
var errListForbidden = errors.New("list across namespaces forbidden")

// namespaced reports whether lists of a resource go namespace by
// namespace in this run.
func (l *LiveTarget) namespaced(resource string) bool {
	if l.Target.Impersonated != "" {
		return true // a team's account: it lists its namespaces only
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cache["forbidden/"+resource] != nil
}

// Quotas implements Live: one list across namespaces per run.
func (l *LiveTarget) Quotas(namespace string) ([]*unstructured.Unstructured, error) {
	return l.inNamespace("resourcequotas", namespace)
}

// LimitRanges implements Live: one list across namespaces per run.
func (l *LiveTarget) LimitRanges(namespace string) ([]*unstructured.Unstructured, error) {
	return l.inNamespace("limitranges", namespace)
}

// inNamespace lists across namespaces once, or, when whoever applies may
// not (a team's ServiceAccount), in the namespace asked for.
func (l *LiveTarget) inNamespace(resource, namespace string) ([]*unstructured.Unstructured, error) {
	if l.namespaced(resource) {
		return l.list(resource, namespace)
	}
	all, err := l.list(resource, "")
	if errors.Is(err, errListForbidden) {
		return l.list(resource, namespace)
	}
	if err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	for _, u := range all {
		if u.GetNamespace() == namespace {
			out = append(out, u)
		}
	}
	return out, nil
}

// Get implements Live; a kind the cluster does not serve is not there.
func (l *LiveTarget) Get(apiVersion, kind, namespace, name string) (*unstructured.Unstructured, error) {
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return nil, err
	}
	mapping, err := l.Target.Mapper.RESTMapping(gv.WithKind(kind).GroupKind(), gv.Version)
	if err != nil {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(l.Context, 30*time.Second)
	defer cancel()
	ri := l.Target.Dynamic.Resource(mapping.Resource)
	var u *unstructured.Unstructured
	if mapping.Scope.Name() == "namespace" {
		u, err = ri.Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	} else {
		u, err = ri.Get(ctx, name, metav1.GetOptions{})
	}
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, l.failed(fmt.Errorf("%s/%s/%s: %w", kind, namespace, name, err))
	}
	return u, nil
}

// failed records a read that failed and returns its error.
func (l *LiveTarget) failed(err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, err)
	return err
}

// Err joins the reads that failed for another reason than absence. The
// rules treat such a read as unknown rather than failing the whole check,
// so this is the only place a denied or lost read shows.
func (l *LiveTarget) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return errors.Join(l.errs...)
}
