package hook

import (
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/gitk8s/gitk8s/internal/render"
)

func object(name string, annotations map[string]string) *render.Object {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "batch/v1", "kind": "Job"}}
	u.SetName(name)
	u.SetAnnotations(annotations)
	return &render.Object{Object: u, Source: render.Source{File: name + ".yaml", Line: 1}}
}

func TestSplitReadsEachFamilyOfAnnotations(t *testing.T) {
	objects := []*render.Object{
		object("plain", nil),
		object("ours", map[string]string{Annotation: "PreSync,PostSync", AnnotationDeletePolicy: "HookSucceeded", AnnotationWeight: "2"}),
		object("argo", map[string]string{argoHook: "Sync", argoDeletePolicy: "HookFailed", argoWave: "-3"}),
		object("helm", map[string]string{helmHook: "pre-install,pre-upgrade", helmDeletePolicy: "before-hook-creation,hook-succeeded", helmWeight: "7"}),
		object("skip", map[string]string{argoHook: "Skip"}),
		object("rollback", map[string]string{helmHook: "pre-rollback"}),
	}
	rest, hooks, skipped, err := Split(objects)
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) != 1 || rest[0].Object.GetName() != "plain" {
		t.Errorf("rest %v, want the plain Job only", rest)
	}
	got := map[string]Hook{}
	for _, h := range hooks {
		got[h.Object.Object.GetName()] = *h
	}
	check := func(name string, phases []Phase, weight int, policies []DeletePolicy) {
		t.Helper()
		h, ok := got[name]
		if !ok {
			t.Errorf("%s is not a hook", name)
			return
		}
		if !slices.Equal(h.Phases, phases) || h.Weight != weight || !slices.Equal(h.DeletePolicies, policies) {
			t.Errorf("%s: phases %v weight %d policies %v, want %v %d %v", name, h.Phases, h.Weight, h.DeletePolicies, phases, weight, policies)
		}
	}
	check("ours", []Phase{PreSync, PostSync}, 2, []DeletePolicy{HookSucceeded})
	check("argo", []Phase{Sync}, -3, []DeletePolicy{HookFailed})
	check("helm", []Phase{PreSync}, 7, []DeletePolicy{BeforeHookCreation, HookSucceeded})
	if len(skipped) != 2 || !strings.Contains(skipped[0], "Skip") || !strings.Contains(skipped[1], "pre-rollback") {
		t.Errorf("skipped %v, want the Skip object and the rollback hook", skipped)
	}
}

func TestSplitRefusesUnknownValues(t *testing.T) {
	for _, tc := range []struct {
		annotations map[string]string
		want        string
	}{
		{map[string]string{Annotation: "PreApply"}, `bad.yaml:1: Job/bad: annotation gitk8s.io/hook: "PreApply" is not a phase; use PreSync, Sync, PostSync or SyncFail`},
		{map[string]string{helmHook: "pre-instal"}, `"pre-instal" is not a Helm hook`},
		{map[string]string{Annotation: "Sync", AnnotationDeletePolicy: "Never"}, `"Never" is not a delete policy`},
		{map[string]string{Annotation: "Sync", AnnotationWeight: "high"}, `annotation gitk8s.io/hook-weight: "high" is not a whole number`},
		{map[string]string{Annotation: " "}, "hook annotation is empty"},
	} {
		_, _, _, err := Split([]*render.Object{object("bad", tc.annotations)})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.annotations, err, tc.want)
		}
	}
}

func TestInPhaseOrdersByWeightThenKindThenName(t *testing.T) {
	hooks := []*Hook{
		{Object: object("b", nil), Phases: []Phase{PreSync}, Weight: 1},
		{Object: object("a", nil), Phases: []Phase{PreSync}, Weight: 1},
		{Object: object("z", nil), Phases: []Phase{PreSync}, Weight: -1},
		{Object: object("post", nil), Phases: []Phase{PostSync}},
	}
	var names []string
	for _, h := range InPhase(hooks, PreSync) {
		names = append(names, h.Object.Object.GetName())
	}
	if strings.Join(names, ",") != "z,a,b" {
		t.Errorf("PreSync order %v, want z,a,b", names)
	}
}

func TestFinished(t *testing.T) {
	job := func(cond string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{"kind": "Job", "status": map[string]any{
			"conditions": []any{map[string]any{"type": cond, "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}}}}}
		return u
	}
	if done, err := finished(job("Complete")); !done || err != nil {
		t.Errorf("Complete: %v %v", done, err)
	}
	if done, err := finished(job("Failed")); !done || err == nil || !strings.Contains(err.Error(), "BackoffLimitExceeded") {
		t.Errorf("Failed: %v %v", done, err)
	}
	if done, _ := finished(job("Suspended")); done {
		t.Error("a suspended Job is not finished")
	}
	pod := &unstructured.Unstructured{Object: map[string]any{"kind": "Pod", "status": map[string]any{"phase": "Running"}}}
	if done, _ := finished(pod); done {
		t.Error("a running Pod is not finished")
	}
}
