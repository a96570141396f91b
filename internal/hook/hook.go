// Package hook finds the sync hooks of a bundle and runs them.
//
// A hook is an object that is not applied with the others but created once
// per revision at a point of the sync: PreSync before anything else is
// written, Sync once the objects are applied, PostSync once they are
// healthy, SyncFail after a failed sync. Hooks are marked with gitk8s's
// annotations, or, unchanged from the repositories they come from, with
// Argo CD's and Helm's. They are never part of the inventory and never
// pruned; their delete policies say when they are removed.
package hook

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/gitk8s/gitk8s/internal/render"
)

// The annotations gitk8s reads. Argo CD's and Helm's are aliases.
const (
	// Annotation names the phases of a hook: "PreSync", "Sync",
	// "PostSync", "SyncFail", comma-separated.
	Annotation = "gitk8s.io/hook"
	// AnnotationDeletePolicy lists when a hook is deleted:
	// "BeforeHookCreation" (the default), "HookSucceeded", "HookFailed".
	AnnotationDeletePolicy = "gitk8s.io/hook-delete-policy"
	// AnnotationWeight orders hooks of one phase, lowest first; the wave
	// annotation (gitk8s.io/wave) is read when it is missing.
	AnnotationWeight = "gitk8s.io/hook-weight"

	argoHook         = "argocd.argoproj.io/hook"
	argoDeletePolicy = "argocd.argoproj.io/hook-delete-policy"
	argoWave         = "argocd.argoproj.io/sync-wave"
	helmHook         = "helm.sh/hook"
	helmDeletePolicy = "helm.sh/hook-delete-policy"
	helmWeight       = "helm.sh/hook-weight"
	gitk8sWave       = "gitk8s.io/wave"
)

// Phase is when a hook runs.
type Phase string

// The phases, in the order of a sync.
const (
	PreSync  Phase = "PreSync"
	Sync     Phase = "Sync"
	PostSync Phase = "PostSync"
	SyncFail Phase = "SyncFail"
)

// DeletePolicy is when a hook is deleted.
type DeletePolicy string

// The delete policies.
const (
	// BeforeHookCreation deletes the hook of an earlier run before it is
	// created again. It is the policy of a hook that names none.
	BeforeHookCreation DeletePolicy = "BeforeHookCreation"
	// HookSucceeded deletes the hook once it succeeded.
	HookSucceeded DeletePolicy = "HookSucceeded"
	// HookFailed deletes the hook once it failed.
	HookFailed DeletePolicy = "HookFailed"
)

// Hook is one hook object of a bundle.
type Hook struct {
	Object *render.Object
	// Phases are the phases it runs in.
	Phases []Phase
	// Weight orders the hooks of a phase.
	Weight int
	// DeletePolicies say when it is deleted.
	DeletePolicies []DeletePolicy
}

// Has reports whether the hook has the delete policy p.
func (h *Hook) Has(p DeletePolicy) bool { return slices.Contains(h.DeletePolicies, p) }

// IsHook reports whether u is marked as a hook by any of the annotations
// gitk8s reads (Helm's test hooks are left out by the chart renderer).
func IsHook(u *unstructured.Unstructured) bool {
	a := u.GetAnnotations()
	_, g := a[Annotation]
	_, ar := a[argoHook]
	_, h := a[helmHook]
	return g || ar || h
}

// Split takes the hooks out of objects. Objects Argo CD marks Skip are
// left out altogether, as Argo CD leaves them out; hooks of phases gitk8s
// has no moment for (Helm's pre-delete and rollback hooks, Argo CD's
// PostDelete) are left out too and reported in skipped. A hook
// annotation with a value gitk8s does not know is an error of the
// object, naming the file.
func Split(objects []*render.Object) (rest []*render.Object, hooks []*Hook, skipped []string, err error) {
	var errs []string
	for _, o := range objects {
		if !IsHook(o.Object) {
			rest = append(rest, o)
			continue
		}
		h, skip, herr := parse(o)
		switch {
		case herr != nil:
			errs = append(errs, fmt.Sprintf("%s: %s: %v", o.Source, o.Ref(), herr))
		case skip != "":
			skipped = append(skipped, fmt.Sprintf("%s (%s)", o.Ref(), skip))
		default:
			hooks = append(hooks, h)
		}
	}
	if len(errs) > 0 {
		return nil, nil, nil, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return rest, hooks, skipped, nil
}

// parse reads one hook's annotations.
func parse(o *render.Object) (*Hook, string, error) {
	a := o.Object.GetAnnotations()
	h := &Hook{Object: o}
	var ignored []string
	addPhase := func(p Phase) {
		if !slices.Contains(h.Phases, p) {
			h.Phases = append(h.Phases, p)
		}
	}
	if v, ok := a[Annotation]; ok {
		for _, p := range list(v) {
			switch Phase(p) {
			case PreSync, Sync, PostSync, SyncFail:
				addPhase(Phase(p))
			default:
				return nil, "", fmt.Errorf("annotation %s: %q is not a phase; use PreSync, Sync, PostSync or SyncFail", Annotation, p)
			}
		}
	} else if v, ok := a[argoHook]; ok {
		for _, p := range list(v) {
			switch p {
			case "PreSync", "Sync", "PostSync", "SyncFail":
				addPhase(Phase(p))
			case "Skip":
				return nil, "argocd.argoproj.io/hook: Skip", nil
			case "PostDelete":
				ignored = append(ignored, p)
			default:
				return nil, "", fmt.Errorf("annotation %s: %q is not a phase; use PreSync, Sync, PostSync, SyncFail or Skip", argoHook, p)
			}
		}
	} else {
		for _, p := range list(a[helmHook]) {
			switch p {
			case "pre-install", "pre-upgrade":
				addPhase(PreSync)
			case "post-install", "post-upgrade":
				addPhase(PostSync)
			case "pre-delete", "post-delete", "pre-rollback", "post-rollback", "test", "test-success":
				ignored = append(ignored, p)
			default:
				return nil, "", fmt.Errorf("annotation %s: %q is not a Helm hook; use pre-install, pre-upgrade, post-install or post-upgrade", helmHook, p)
			}
		}
	}
	if len(h.Phases) == 0 {
		if len(ignored) > 0 {
			return nil, "a " + strings.Join(ignored, ", ") + " hook: gitk8s neither deletes nor rolls back a release", nil
		}
		return nil, "", fmt.Errorf("hook annotation is empty; name the phases it runs in")
	}
	for _, key := range []string{AnnotationDeletePolicy, argoDeletePolicy, helmDeletePolicy} {
		v, ok := a[key]
		if !ok {
			continue
		}
		for _, p := range list(v) {
			switch strings.ToLower(p) {
			case "beforehookcreation", "before-hook-creation":
				h.DeletePolicies = append(h.DeletePolicies, BeforeHookCreation)
			case "hooksucceeded", "hook-succeeded":
				h.DeletePolicies = append(h.DeletePolicies, HookSucceeded)
			case "hookfailed", "hook-failed":
				h.DeletePolicies = append(h.DeletePolicies, HookFailed)
			default:
				return nil, "", fmt.Errorf("annotation %s: %q is not a delete policy; use BeforeHookCreation, HookSucceeded or HookFailed", key, p)
			}
		}
		break
	}
	if len(h.DeletePolicies) == 0 {
		h.DeletePolicies = []DeletePolicy{BeforeHookCreation}
	}
	for _, key := range []string{AnnotationWeight, helmWeight, gitk8sWave, argoWave} {
		v, ok := a[key]
		if !ok {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return nil, "", fmt.Errorf("annotation %s: %q is not a whole number", key, v)
		}
		h.Weight = n
		break
	}
	return h, "", nil
}

func list(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// InPhase are the hooks of phase p, in the order they run: by weight,
// then kind, then name.
func InPhase(hooks []*Hook, p Phase) []*Hook {
	var out []*Hook
	for _, h := range hooks {
		if slices.Contains(h.Phases, p) {
			out = append(out, h)
		}
	}
	slices.SortStableFunc(out, func(a, b *Hook) int {
		if a.Weight != b.Weight {
			return a.Weight - b.Weight
		}
		if c := strings.Compare(a.Object.Object.GetKind(), b.Object.Object.GetKind()); c != 0 {
			return c
		}
		return strings.Compare(name(a.Object.Object), name(b.Object.Object))
	})
	return out
}

func name(u *unstructured.Unstructured) string {
	if n := u.GetName(); n != "" {
		return n
	}
	return u.GetGenerateName()
}
