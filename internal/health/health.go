package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/cli-utils/pkg/object"

	"github.com/gitk8s/gitk8s/internal/cluster"
)

// Resource is an object to watch: its identity and where it is served.
type Resource struct {
	ID         object.ObjMetadata
	GVR        schema.GroupVersionResource
	Namespaced bool
}

// ObjectStatus is the health of one object.
type ObjectStatus struct {
	Resource Resource
	// Status is kstatus's verdict, made strict (see package doc).
	Status status.Status
	// Message is kstatus's reason, or why the strict reading differs.
	Message string
}

// Healthy reports whether the object counts as healthy.
func (s ObjectStatus) Healthy() bool { return s.Status == status.CurrentStatus }

// Result is the health of a set of objects.
type Result struct {
	Objects []ObjectStatus
}

// Healthy reports whether every object is healthy.
func (r Result) Healthy() bool {
	for _, o := range r.Objects {
		if !o.Healthy() {
			return false
		}
	}
	return true
}

// Unhealthy returns the objects that are not healthy.
func (r Result) Unhealthy() []ObjectStatus {
	var out []ObjectStatus
	for _, o := range r.Objects {
		if !o.Healthy() {
			out = append(out, o)
		}
	}
	return out
}

// Options tune Wait.
type Options struct {
	// Timeout is how long to wait in all.
	Timeout time.Duration
	// Interval is the time between polls.
	Interval time.Duration
	// Concurrency bounds reads in flight.
	Concurrency int
}

// Wait polls the objects until all are healthy, every unhealthy one has
// failed for good, or the timeout passes, and returns the last reading. The
// error is for a cancelled context or an unreachable cluster; unhealthy
// objects are in the Result.
func Wait(ctx context.Context, target *cluster.Target, resources []Resource, opts Options) (Result, error) {
	if opts.Interval <= 0 {
		opts.Interval = 500 * time.Millisecond
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 16
	}
	deadline := time.Now().Add(opts.Timeout)
	statuses := make([]ObjectStatus, len(resources))
	for i, r := range resources {
		statuses[i] = ObjectStatus{Resource: r, Status: status.UnknownStatus, Message: "not read yet"}
	}
	for {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(opts.Concurrency)
		for i := range statuses {
			if statuses[i].Status == status.CurrentStatus {
				continue // healthy objects are not read again
			}
			g.Go(func() error {
				var err error
				statuses[i], err = read(gctx, target, statuses[i].Resource)
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return Result{Objects: statuses}, err
		}
		if err := ctx.Err(); err != nil {
			return Result{Objects: statuses}, err
		}
		if settled(statuses) || time.Now().After(deadline) {
			return Result{Objects: statuses}, nil
		}
		select {
		case <-ctx.Done():
			return Result{Objects: statuses}, ctx.Err()
		case <-time.After(opts.Interval):
		}
	}
}

// Check reads every object once.
func Check(ctx context.Context, target *cluster.Target, resources []Resource) Result {
	res, _ := Wait(ctx, target, resources, Options{})
	return res
}

// settled is true when no object can still become healthy by waiting.
func settled(statuses []ObjectStatus) bool {
	for _, s := range statuses {
		if s.Status != status.CurrentStatus && s.Status != status.FailedStatus && s.Status != status.NotFoundStatus {
			return false
		}
	}
	return true
}

// read reads one object's status. A cluster that cannot be reached is an
// error, not an unhealthy object.
func read(ctx context.Context, target *cluster.Target, r Resource) (ObjectStatus, error) {
	ri := target.Dynamic.Resource(r.GVR)
	var u *unstructured.Unstructured
	var err error
	if r.Namespaced {
		u, err = ri.Namespace(r.ID.Namespace).Get(ctx, r.ID.Name, metav1.GetOptions{})
	} else {
		u, err = ri.Get(ctx, r.ID.Name, metav1.GetOptions{})
	}
	var netErr net.Error
	var urlErr *url.Error
	switch {
	case apierrors.IsNotFound(err):
		return ObjectStatus{Resource: r, Status: status.NotFoundStatus, Message: "not found in the cluster"}, nil
	case err != nil && (errors.As(err, &netErr) || errors.As(err, &urlErr)):
		return ObjectStatus{Resource: r, Status: status.UnknownStatus, Message: "cluster unreachable"}, fmt.Errorf("cluster %s (%s) unreachable: %w", target.Name, target.Server, err)
	case err != nil:
		return ObjectStatus{Resource: r, Status: status.UnknownStatus, Message: fmt.Sprintf("cannot read: %v", err)}, nil
	}
	st, msg := Compute(u)
	return ObjectStatus{Resource: r, Status: st, Message: msg}, nil
}

// Compute is kstatus's status of one object, read strictly.
func Compute(u *unstructured.Unstructured) (status.Status, string) {
	res, err := status.Compute(u)
	if err != nil {
		return status.UnknownStatus, fmt.Sprintf("status cannot be computed: %v", err)
	}
	if res.Status != status.CurrentStatus {
		return res.Status, res.Message
	}
	if u.GroupVersionKind().GroupKind() == (schema.GroupKind{Group: "batch", Kind: "Job"}) && !jobComplete(u) {
		return status.InProgressStatus, "Job has not completed yet"
	}
	return res.Status, res.Message
}

func jobComplete(u *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Complete" && m["status"] == "True" {
			return true
		}
	}
	return false
}
