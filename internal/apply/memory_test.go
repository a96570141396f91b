package apply_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/gitk8s/gitk8s/internal/apply"
)

// memoryBundle is a bundle with objects of the kinds people edit by hand.
func memoryBundle(ns string) []string {
	return []string{
		fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: labelled, namespace: %s, labels: {team: a}}\ndata: {value: v}\n", ns),
		configMap(ns, "settings", "v"),
		secret(ns, "creds", "p4ssword"),
		fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: %[1]s}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: app, image: nginx}]
`, ns),
	}
}

// TestMemoryNoOpSendsNoDryRun: with a Memory, applying an unchanged bundle
// to an unchanged cluster sends no dry-run and no write; without one every
// object is dry-run.
func TestMemoryNoOpSendsNoDryRun(t *testing.T) {
	tests := []struct {
		name        string
		memory      apply.Memory
		wantDryRuns int
	}{
		{name: "with memory", memory: apply.NewMemoryInProcess(), wantDryRuns: 0},
		{name: "without memory", memory: nil, wantDryRuns: len(memoryBundle(""))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := env.Namespace(t)
			opts := options(ns)
			opts.Memory = tc.memory
			objs := decode(t, memoryBundle(ns)...)
			// Waiting until the Deployment is healthy lets its controllers
			// finish writing status, which a dry-run would otherwise
			// report as a change.
			first := opts
			first.Wait = time.Minute
			mustApply(t, first, objs)

			mark := env.MarkAudit(t, "")
			cs := mustApply(t, opts, objs)
			for _, e := range cs.Entries {
				if e.Action != apply.Unchanged {
					t.Errorf("%s is %s, want unchanged", e.Ref, e.Action)
				}
			}
			if got := dryRuns(t, mark, ns); len(got) != tc.wantDryRuns {
				t.Errorf("%d dry-runs, want %d: %v", len(got), tc.wantDryRuns, got)
			}
			if w := writes(t, mark); len(w) > 0 {
				t.Errorf("an apply with nothing to do wrote %v", w)
			}
		})
	}
}

// TestMemoryReappliesHandEdits: with a Memory, an object someone changed
// by hand is dry-run and applied again, and only that object.
func TestMemoryReappliesHandEdits(t *testing.T) {
	force := true
	tests := []struct {
		name string
		// ref is the object edited, as resource/name in the audit log.
		ref, resource string
		want          apply.Action
		edit          func(t *testing.T, ns string) error
		healed        func(t *testing.T, ns string) bool
	}{
		{
			name: "label changed by another manager", ref: "ConfigMap/%s/labelled", resource: "configmaps/labelled", want: apply.Configured,
			edit: func(t *testing.T, ns string) error {
				patch := fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"labelled","namespace":%q,"labels":{"team":"b"}}}`, ns)
				_, err := kube(t).CoreV1().ConfigMaps(ns).Patch(context.Background(), "labelled", types.ApplyPatchType, []byte(patch),
					metav1.PatchOptions{FieldManager: "someone-else", Force: &force})
				return err
			},
			healed: func(t *testing.T, ns string) bool {
				cm, err := kube(t).CoreV1().ConfigMaps(ns).Get(context.Background(), "labelled", metav1.GetOptions{})
				return err == nil && cm.Labels["team"] == "a"
			},
		},
		{
			name: "scaled", ref: "Deployment/%s/web", resource: "deployments/web", want: apply.Configured,
			edit: func(t *testing.T, ns string) error {
				_, err := kube(t).AppsV1().Deployments(ns).UpdateScale(context.Background(), "web",
					&autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns}, Spec: autoscalingv1.ScaleSpec{Replicas: 4}}, metav1.UpdateOptions{})
				return err
			},
			healed: func(t *testing.T, ns string) bool {
				d, err := kube(t).AppsV1().Deployments(ns).Get(context.Background(), "web", metav1.GetOptions{})
				return err == nil && d.Spec.Replicas != nil && *d.Spec.Replicas == 1
			},
		},
		{
			name: "data edited", ref: "ConfigMap/%s/settings", resource: "configmaps/settings", want: apply.Configured,
			edit: func(t *testing.T, ns string) error {
				_, err := kube(t).CoreV1().ConfigMaps(ns).Patch(context.Background(), "settings", types.MergePatchType, []byte(`{"data":{"value":"edited"}}`), metav1.PatchOptions{})
				return err
			},
			healed: func(t *testing.T, ns string) bool { return liveData(t, ns, "settings")["value"] == "v" },
		},
		{
			name: "Secret deleted", ref: "Secret/%s/creds", resource: "secrets/creds", want: apply.Created,
			edit: func(t *testing.T, ns string) error {
				return kube(t).CoreV1().Secrets(ns).Delete(context.Background(), "creds", metav1.DeleteOptions{})
			},
			healed: func(t *testing.T, ns string) bool {
				s, err := kube(t).CoreV1().Secrets(ns).Get(context.Background(), "creds", metav1.GetOptions{})
				return err == nil && string(s.Data["password"]) == "p4ssword"
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := env.Namespace(t)
			opts := options(ns)
			opts.Memory = apply.NewMemoryInProcess()
			objs := decode(t, memoryBundle(ns)...)
			mustApply(t, opts, objs)
			if err := tc.edit(t, ns); err != nil {
				t.Fatalf("edit: %v", err)
			}

			mark := env.MarkAudit(t, "")
			cs := mustApply(t, opts, objs)
			edited := fmt.Sprintf(tc.ref, ns)
			for _, e := range cs.Entries {
				want := apply.Unchanged
				if e.Ref == edited {
					want = tc.want
				}
				if e.Action != want {
					t.Errorf("%s is %s, want %s", e.Ref, e.Action, want)
				}
			}
			// A field taken over shows up as a conflict first, so an
			// edited object may be dry-run twice; no other object is.
			sent := map[string]bool{}
			for _, r := range dryRuns(t, mark, ns) {
				sent[r] = true
			}
			if d := cmp.Diff(map[string]bool{"patch " + tc.resource: true}, sent); d != "" {
				t.Errorf("objects dry-run (-want +got):\n%s", d)
			}
			if !tc.healed(t, ns) {
				t.Errorf("%s was not set back to what Git says", edited)
			}
		})
	}
}
