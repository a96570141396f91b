package apply_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/controlplane"
)

// refs are the Refs of the change set's entries, in order.
func refs(cs *apply.ChangeSet) []string {
	var out []string
	for _, e := range cs.Entries {
		out = append(out, e.Ref)
	}
	return out
}

// widgetCRD defines the namespaced kind Widget in group.
func widgetCRD(group string) string {
	return fmt.Sprintf(`apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.%[1]s}
spec:
  group: %[1]s
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
`, group)
}

// TestNamespaceAndCRDFirst: a bundle written backwards, a custom resource
// first and its Namespace and CRD last, is applied Namespace, CRD, then the
// rest, and the custom resource is created.
func TestNamespaceAndCRDFirst(t *testing.T) {
	ns := env.Namespace(t)
	extra := ns + "-app"
	group := ns + ".example.test"
	clusterScoped(t, namespacesGVR, extra)
	clusterScoped(t, crdsGVR, "widgets."+group)
	objs := decode(t,
		fmt.Sprintf("apiVersion: %s/v1\nkind: Widget\nmetadata: {name: w, namespace: %s}\nspec: {size: 3}\n", group, extra),
		configMap(extra, "settings", "v"),
		widgetCRD(group),
		fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n", extra),
	)

	mark := env.MarkAudit(t, "")
	cs := mustApply(t, apply.DefaultOptions(), objs)
	wantRefs := []string{"Namespace/" + extra, "CustomResourceDefinition/widgets." + group, "ConfigMap/" + extra + "/settings", "Widget/" + extra + "/w"}
	if d := cmp.Diff(wantRefs, refs(cs)); d != "" {
		t.Errorf("change set order (-want +got):\n%s", d)
	}
	for _, e := range cs.Entries {
		if e.Action != apply.Created {
			t.Errorf("%s is %s, want created", e.Ref, e.Action)
		}
	}
	// The audit log files a Namespace under itself.
	wantWrites := []string{"namespaces " + extra + "/" + extra, "customresourcedefinitions /widgets." + group, "configmaps " + extra + "/settings", "widgets " + extra + "/w"}
	if d := cmp.Diff(wantWrites, writes(t, mark)); d != "" {
		t.Errorf("writes in the audit log (-want +got):\n%s", d)
	}
	w := live(t, schema.GroupVersionResource{Group: group, Version: "v1", Resource: "widgets"}, extra, "w")
	if w == nil {
		t.Fatal("Widget w was not created")
	}
	if size, _, _ := unstructured.NestedInt64(w.Object, "spec", "size"); size != 3 {
		t.Errorf("Widget w has size %d, want 3", size)
	}
}

// TestNamespaceAndCRDFirstWhateverTheirWave: a Namespace and a CRD of a
// later wave than a ConfigMap, and needed by nothing else of the bundle,
// still come first, ordered by their own waves, and the cluster sees them
// written in the order the change set lists them.
func TestNamespaceAndCRDFirstWhateverTheirWave(t *testing.T) {
	ns := env.Namespace(t)
	extra := ns + "-later"
	group := ns + ".example.test"
	clusterScoped(t, namespacesGVR, extra)
	clusterScoped(t, crdsGVR, "widgets."+group)
	objs := decode(t,
		configMap(ns, "settings", "v"),
		withAnnotation(fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n", extra), apply.AnnotationWave, "2"),
		strings.Replace(widgetCRD(group), "metadata: {", "metadata: {annotations: {gitk8s.io/wave: \"1\"}, ", 1),
	)

	mark := env.MarkAudit(t, "")
	cs := mustApply(t, apply.DefaultOptions(), objs)
	wantRefs := []string{"CustomResourceDefinition/widgets." + group, "Namespace/" + extra, "ConfigMap/" + ns + "/settings"}
	if d := cmp.Diff(wantRefs, refs(cs)); d != "" {
		t.Errorf("change set order (-want +got):\n%s", d)
	}
	wantWrites := []string{"customresourcedefinitions /widgets." + group, "namespaces " + extra + "/" + extra, "configmaps " + ns + "/settings"}
	if d := cmp.Diff(wantWrites, writes(t, mark)); d != "" {
		t.Errorf("writes in the audit log (-want +got):\n%s", d)
	}
}

// TestWavesInOrder: waves are written lowest first, and inside a wave by
// kind, whatever the order of the files.
func TestWavesInOrder(t *testing.T) {
	ns := env.Namespace(t)
	objs := decode(t,
		withAnnotation(configMap(ns, "late", "v"), apply.AnnotationWave, "2"),
		fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: %s}\nspec: {ports: [{port: 80}]}\n", ns),
		withAnnotation(configMap(ns, "second", "v"), apply.AnnotationWave, "1"),
		configMap(ns, "default", "v"),
		withAnnotation(configMap(ns, "first", "v"), apply.AnnotationWave, "-1"),
		secret(ns, "creds", "p4ssword"),
	)

	mark := env.MarkAudit(t, "")
	cs := mustApply(t, apply.DefaultOptions(), objs)
	wantWrites := []string{
		"configmaps " + ns + "/first",
		"secrets " + ns + "/creds", "configmaps " + ns + "/default", "services " + ns + "/web",
		"configmaps " + ns + "/second",
		"configmaps " + ns + "/late",
	}
	if d := cmp.Diff(wantWrites, writes(t, mark)); d != "" {
		t.Errorf("writes in the audit log (-want +got):\n%s", d)
	}
	waves := map[string]int{}
	for _, e := range cs.Entries {
		waves[e.Ref] = e.Wave
	}
	wantWaves := map[string]int{
		"ConfigMap/" + ns + "/first": -1, "Secret/" + ns + "/creds": 0, "ConfigMap/" + ns + "/default": 0,
		"Service/" + ns + "/web": 0, "ConfigMap/" + ns + "/second": 1, "ConfigMap/" + ns + "/late": 2,
	}
	if d := cmp.Diff(wantWaves, waves); d != "" {
		t.Errorf("waves (-want +got):\n%s", d)
	}
	wantRefs := []string{
		"ConfigMap/" + ns + "/first", "Secret/" + ns + "/creds", "ConfigMap/" + ns + "/default",
		"Service/" + ns + "/web", "ConfigMap/" + ns + "/second", "ConfigMap/" + ns + "/late",
	}
	if d := cmp.Diff(wantRefs, refs(cs)); d != "" {
		t.Errorf("change set order (-want +got):\n%s", d)
	}
}

// TestUnhealthyWaveStopsLaterWaves: a wave that does not become healthy is
// reported and the waves after it are not written.
func TestUnhealthyWaveStopsLaterWaves(t *testing.T) {
	ns := env.Namespace(t)
	objs := decode(t,
		fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: stuck, namespace: %s}
spec:
  replicas: 1
  selector: {matchLabels: {app: stuck}}
  template:
    metadata: {labels: {app: stuck, %s: "true"}}
    spec:
      containers: [{name: app, image: nginx}]
`, ns, controlplane.NeverReadyLabel),
		withAnnotation(configMap(ns, "later", "v"), apply.AnnotationWave, "1"),
	)
	opts := apply.DefaultOptions()
	opts.WaveTimeout = 3 * time.Second
	cs := run(t, opts, objs)

	if cs.UnhealthyWave == nil || *cs.UnhealthyWave != 0 {
		t.Fatalf("unhealthy wave %v, want 0 (%v)", cs.UnhealthyWave, actions(cs))
	}
	stuck := entry(t, cs, "Deployment/"+ns+"/stuck")
	if stuck.Action != apply.Created || stuck.Health == "Current" || stuck.HealthMessage == "" {
		t.Errorf("stuck is %s with health %q (%q), want created and not current", stuck.Action, stuck.Health, stuck.HealthMessage)
	}
	if a := entry(t, cs, "ConfigMap/"+ns+"/later").Action; a != apply.Skipped {
		t.Errorf("later is %s, want skipped", a)
	}
	if got := liveData(t, ns, "later"); got != nil {
		t.Errorf("wave 1 was written after wave 0 failed its gate: %v", got)
	}
}
