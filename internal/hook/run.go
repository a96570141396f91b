package hook

import (
	"context"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/cluster"
	"github.com/gitk8s/gitk8s/internal/render"
)

// LabelSync marks every hook gitk8s creates with the sync it belongs to.
const LabelSync = "gitk8s.io/hook-of"

// Runner runs the hooks of one sync in one cluster.
type Runner struct {
	Target *cluster.Target
	// Namespace is where namespaced hooks without a namespace go.
	Namespace string
	// Sync names the sync; hooks carry it in LabelSync.
	Sync string
	// Timeout bounds each hook; 0 means five minutes.
	Timeout time.Duration
	// Poll is how often a running hook is read; 0 means half a second.
	Poll time.Duration
}

// Outcome is what one hook did.
type Outcome struct {
	Phase Phase
	// Ref names the object created (with its generated name).
	Ref string
	// Source is where the hook was written.
	Source render.Source
	// Succeeded is true when the hook completed; Err says why not.
	Succeeded bool
	Err       error
	// Deleted is true when a delete policy removed the hook afterwards.
	Deleted bool
}

// Run runs the hooks of phase p in order and stops at the first that
// fails. The outcomes are those of the hooks that ran.
func (r *Runner) Run(ctx context.Context, hooks []*Hook, p Phase) ([]Outcome, error) {
	var outs []Outcome
	for _, h := range InPhase(hooks, p) {
		out := r.runOne(ctx, h, p)
		outs = append(outs, out)
		if out.Err != nil {
			return outs, fmt.Errorf("%s hook %s (%s) failed: %w", p, out.Ref, out.Source, out.Err)
		}
	}
	return outs, nil
}

func (r *Runner) runOne(ctx context.Context, h *Hook, p Phase) Outcome {
	u := h.Object.Object.DeepCopy()
	out := Outcome{Phase: p, Ref: render.RefOf(u), Source: h.Object.Source}
	ri, err := r.resource(u)
	if err != nil {
		out.Err = err
		return out
	}
	labels := u.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelSync] = r.Sync
	u.SetLabels(labels)
	if u.GetName() != "" && h.Has(BeforeHookCreation) {
		if err := deleteAndWait(ctx, ri, u.GetName(), r.poll()); err != nil {
			out.Err = fmt.Errorf("deleting the hook of an earlier run: %w", err)
			return out
		}
	}
	created, err := ri.Create(ctx, u, metav1.CreateOptions{FieldManager: apply.FieldManager})
	if apierrors.IsAlreadyExists(err) {
		out.Err = fmt.Errorf("it exists from an earlier run; give it the delete policy BeforeHookCreation, HookSucceeded or HookFailed, or generateName")
		return out
	}
	if err != nil {
		out.Err = err
		return out
	}
	out.Ref = render.RefOf(created)
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out.Err = r.wait(wctx, ri, created)
	if errors.Is(out.Err, context.DeadlineExceeded) && ctx.Err() == nil {
		out.Err = fmt.Errorf("not finished after %s", timeout)
	}
	out.Succeeded = out.Err == nil
	if (out.Succeeded && h.Has(HookSucceeded)) || (!out.Succeeded && h.Has(HookFailed)) {
		bg := metav1.DeletePropagationBackground
		if err := ri.Delete(ctx, created.GetName(), metav1.DeleteOptions{PropagationPolicy: &bg}); err == nil || apierrors.IsNotFound(err) {
			out.Deleted = true
		}
	}
	return out
}

func (r *Runner) poll() time.Duration {
	if r.Poll > 0 {
		return r.Poll
	}
	return 500 * time.Millisecond
}

// resource is the client of the hook's resource, in its namespace.
func (r *Runner) resource(u *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := u.GroupVersionKind()
	m, err := r.Target.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("the cluster does not serve %s: %w", gvk, err)
	}
	if m.Scope.Name() != meta.RESTScopeNameNamespace {
		return r.Target.Dynamic.Resource(m.Resource), nil
	}
	if u.GetNamespace() == "" {
		u.SetNamespace(r.Namespace)
	}
	return r.Target.Dynamic.Resource(m.Resource).Namespace(u.GetNamespace()), nil
}

// wait waits until the hook is done: a Job until it is Complete or
// Failed, a Pod until it Succeeded or Failed; any other object is done
// once it exists.
func (r *Runner) wait(ctx context.Context, ri dynamic.ResourceInterface, created *unstructured.Unstructured) error {
	gvk := created.GroupVersionKind()
	isJob := gvk.Group == "batch" && gvk.Kind == "Job"
	isPod := gvk.Group == "" && gvk.Kind == "Pod"
	if !isJob && !isPod {
		return nil
	}
	t := time.NewTicker(r.poll())
	defer t.Stop()
	for {
		cur, err := ri.Get(ctx, created.GetName(), metav1.GetOptions{})
		if err != nil {
			return err
		}
		if done, err := finished(cur); done {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// finished says whether a Job or Pod is done, and its error if it failed.
func finished(u *unstructured.Unstructured) (bool, error) {
	if u.GetKind() == "Pod" {
		phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
		switch phase {
		case "Succeeded":
			return true, nil
		case "Failed":
			msg, _, _ := unstructured.NestedString(u.Object, "status", "message")
			return true, fmt.Errorf("the Pod failed: %s", msg)
		}
		return false, nil
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["status"] != "True" {
			continue
		}
		switch m["type"] {
		case "Complete":
			return true, nil
		case "Failed":
			return true, fmt.Errorf("the Job failed: %v: %v", m["reason"], m["message"])
		}
	}
	return false, nil
}

// deleteAndWait deletes an object by name and waits until it is gone.
func deleteAndWait(ctx context.Context, ri dynamic.ResourceInterface, name string, poll time.Duration) error {
	bg := metav1.DeletePropagationBackground
	err := ri.Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &bg})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for {
		if _, err := ri.Get(ctx, name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			return nil
		} else if err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}
