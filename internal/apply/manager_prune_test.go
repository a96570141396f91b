package apply_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/controlplane"
	"github.com/gitk8s/gitk8s/internal/render"
)

// TestPrune: members no longer rendered are deleted when asked to, within
// the guards.
func TestPrune(t *testing.T) {
	claim := func(ns string) string {
		return fmt.Sprintf("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data, namespace: %s}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n", ns)
	}
	tests := []struct {
		name string
		// kept stay rendered, removed are rendered only by the first apply.
		kept, removed func(ns string) []string
		// prune and allow are Options.Prune and AllowDestructivePrune.
		prune, allow bool
		// want is the action of each removed object ("" for no entry);
		// refused, whether the guards refuse; gone, whether the removed
		// objects are deleted.
		want          apply.Action
		refused, gone bool
	}{
		{
			name:    "removed member is pruned",
			kept:    threeConfigMaps,
			removed: func(ns string) []string { return []string{configMap(ns, "gone", "v")} },
			prune:   true, want: apply.Pruned, gone: true,
		},
		{
			name:    "without Prune nothing is deleted",
			kept:    threeConfigMaps,
			removed: func(ns string) []string { return []string{configMap(ns, "gone", "v")} },
			prune:   false, want: "",
		},
		{
			name: "prune disabled keeps it",
			kept: threeConfigMaps,
			removed: func(ns string) []string {
				return []string{withAnnotation(configMap(ns, "held", "v"), apply.AnnotationPrune, "disabled")}
			},
			prune: true, want: apply.Kept,
		},
		{
			name:    "PersistentVolumeClaim is refused",
			kept:    threeConfigMaps,
			removed: func(ns string) []string { return []string{claim(ns)} },
			prune:   true, want: apply.Skipped, refused: true,
		},
		{
			name:    "PersistentVolumeClaim is pruned when allowed",
			kept:    threeConfigMaps,
			removed: func(ns string) []string { return []string{claim(ns)} },
			prune:   true, allow: true, want: apply.Pruned, gone: true,
		},
		{
			name: "Namespace is refused",
			kept: threeConfigMaps,
			removed: func(ns string) []string {
				return []string{fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata: {name: %s-extra}\n", ns)}
			},
			prune: true, want: apply.Skipped, refused: true,
		},
		{
			name:    "more than the share is refused",
			kept:    func(ns string) []string { return []string{configMap(ns, "a", "v")} },
			removed: func(ns string) []string { return []string{configMap(ns, "b", "v"), configMap(ns, "c", "v")} },
			prune:   true, want: apply.Skipped, refused: true,
		},
		{
			name:    "more than the share is pruned when allowed",
			kept:    func(ns string) []string { return []string{configMap(ns, "a", "v")} },
			removed: func(ns string) []string { return []string{configMap(ns, "b", "v"), configMap(ns, "c", "v")} },
			prune:   true, allow: true, want: apply.Pruned, gone: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := env.Namespace(t)
			kept, removed := decode(t, tc.kept(ns)...), decode(t, tc.removed(ns)...)
			for _, o := range removed {
				if o.Object.GetKind() == "Namespace" {
					clusterScoped(t, namespacesGVR, o.Object.GetName())
				}
			}
			opts := options(ns)
			first := mustApply(t, opts, append(append([]*render.Object(nil), kept...), removed...))

			opts.Prune, opts.AllowDestructivePrune = tc.prune, tc.allow
			cs := run(t, opts, kept)
			if got := cs.PruneRefused != nil; got != tc.refused {
				t.Errorf("prune refused: %v, want refused %t", cs.PruneRefused, tc.refused)
			}
			if tc.refused && !cs.Failed() {
				t.Errorf("a refused prune does not fail the change set")
			}
			got := actions(cs)
			for _, o := range kept {
				if got[o.Ref()] != apply.Unchanged {
					t.Errorf("%s is %s, want unchanged", o.Ref(), got[o.Ref()])
				}
			}
			for _, o := range removed {
				if got[o.Ref()] != tc.want {
					t.Errorf("%s is %q, want %q", o.Ref(), got[o.Ref()], tc.want)
				}
				e := entry(t, first, o.Ref())
				if exists := live(t, e.GVR, e.ID.Namespace, e.ID.Name) != nil; exists == tc.gone {
					t.Errorf("%s exists: %t, want gone: %t", o.Ref(), exists, tc.gone)
				}
			}
		})
	}
}

// threeConfigMaps are the members of an inventory that stay rendered.
func threeConfigMaps(ns string) []string {
	return []string{configMap(ns, "a", "v"), configMap(ns, "b", "v"), configMap(ns, "c", "v")}
}

// pruneFailure is an apply with Prune that fails.
type pruneFailure struct {
	name string
	// extra is rendered next to the kept objects in the second apply.
	extra func(ns string) []string
	// modify sets what makes the apply fail.
	modify func(*apply.Options)
	// wrote is whether the apply writes anything before it fails.
	wrote bool
}

var pruneFailures = []pruneFailure{
	{
		name: "plan fails",
		extra: func(ns string) []string {
			return []string{"apiVersion: v1\nkind: Service\nmetadata: {name: bad, namespace: " + ns + "}\nspec: {type: Nope, ports: [{port: 80}]}\n"}
		},
	},
	{
		name: "BeforeWrite refuses",
		modify: func(o *apply.Options) {
			o.BeforeWrite = func(context.Context) error { return errors.New("policy says no") }
		},
	},
	{
		name: "wave not healthy",
		extra: func(ns string) []string {
			return []string{fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: stuck, namespace: %s, annotations: {gitk8s.io/wave: "-1"}}
spec:
  replicas: 1
  selector: {matchLabels: {app: stuck}}
  template:
    metadata: {labels: {app: stuck, %s: "true"}}
    spec:
      containers: [{name: app, image: nginx}]
`, ns, controlplane.NeverReadyLabel)}
		},
		modify: func(o *apply.Options) { o.WaveTimeout = 3 * time.Second },
		wrote:  true,
	},
}

// fail applies four ConfigMaps, then the failure without the ConfigMap
// "gone", with Prune.
func (f pruneFailure) fail(t *testing.T, ns string) *apply.ChangeSet {
	t.Helper()
	opts := options(ns)
	opts.Prune = true
	mustApply(t, opts, decode(t, append(threeConfigMaps(ns), configMap(ns, "gone", "v"))...))
	docs := threeConfigMaps(ns)
	if f.extra != nil {
		docs = append(docs, f.extra(ns)...)
	}
	if f.modify != nil {
		f.modify(&opts)
	}
	cs := run(t, opts, decode(t, docs...))
	if !cs.Failed() {
		t.Fatalf("apply did not fail: %v", actions(cs))
	}
	return cs
}

// TestNoPruneAfterFailure: when anything fails, before or after the first
// write, nothing is pruned.
func TestNoPruneAfterFailure(t *testing.T) {
	for _, tc := range pruneFailures {
		t.Run(tc.name, func(t *testing.T) {
			ns := env.Namespace(t)
			tc.fail(t, ns)
			if liveData(t, ns, "gone") == nil {
				t.Errorf("ConfigMap gone was pruned after a failure")
			}
		})
	}
}

// TestFailedApplyReportsNoPrune: when an apply fails, the change set
// reports the members it did not prune as skipped, not pruned, and claims
// no change it did not make.
func TestFailedApplyReportsNoPrune(t *testing.T) {
	for _, tc := range pruneFailures {
		t.Run(tc.name, func(t *testing.T) {
			ns := env.Namespace(t)
			cs := tc.fail(t, ns)
			if a := actions(cs)["ConfigMap/"+ns+"/gone"]; a != apply.Skipped {
				t.Errorf("ConfigMap gone, which was not pruned, is reported %q, want %q", a, apply.Skipped)
			}
			if cs.HasChanges() != tc.wrote {
				t.Errorf("change set has changes: %t, want %t: %v", cs.HasChanges(), tc.wrote, actions(cs))
			}
		})
	}
}
