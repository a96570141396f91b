package apiversions

import (
	"os"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"
)

func TestLookup(t *testing.T) {
	r, ok := Lookup(schema.GroupVersionKind{Group: "extensions", Version: "v1beta1", Kind: "Deployment"})
	if !ok || r.To != "apps/v1" || !strings.Contains(r.Message(), "needs spec.selector") {
		t.Errorf("extensions/v1beta1 Deployment: %+v", r)
	}
	if _, ok := Lookup(schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}); ok {
		t.Error("apps/v1 Deployment reported removed")
	}
	r, ok = Lookup(schema.GroupVersionKind{Group: "settings.k8s.io", Version: "v1alpha1", Kind: "PodPreset"})
	if !ok || r.To != "" || !strings.Contains(r.Message(), "settings.k8s.io/v1alpha1 PodPreset was removed in Kubernetes 1.20 and has no replacement: put the env") {
		t.Errorf("settings.k8s.io/v1alpha1 PodPreset: %+v", r)
	}
	for _, r := range All() {
		if r.RemovedIn == "" || (r.To == "" && r.Needs == "") {
			t.Errorf("incomplete entry %+v", r)
		}
	}
}

func TestMigrateCourseManifests(t *testing.T) {
	in, err := os.ReadFile("testdata/course-2018.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, changes, err := Migrate(in)
	if err != nil {
		t.Fatal(err)
	}
	text := string(out)
	for _, want := range []string{
		"# The guestbook frontend, as a 2018 course wrote it.",
		"replicas: 3 # three is enough for the demo",
		"apiVersion: apps/v1",
		"apiVersion: networking.k8s.io/v1",
		"apiVersion: autoscaling/v2",
		"apiVersion: batch/v1",
		"apiVersion: policy/v1beta1", // PodSecurityPolicy has no replacement: left alone
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	docs := strings.Split(text, "\n---\n")
	var objs []map[string]any
	for _, d := range docs {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(d), &m); err != nil {
			t.Fatal(err)
		}
		objs = append(objs, m)
	}
	dig := func(m any, path ...any) any {
		for _, p := range path {
			switch k := p.(type) {
			case string:
				m = m.(map[string]any)[k]
			case int:
				m = m.([]any)[k]
			}
		}
		return m
	}
	if got := dig(objs[0], "spec", "selector", "matchLabels", "tier"); got != "frontend" {
		t.Errorf("Deployment selector: %v", dig(objs[0], "spec"))
	}
	if got := dig(objs[1], "spec", "defaultBackend", "service", "port", "number"); got != float64(80) {
		t.Errorf("Ingress default backend: %v", dig(objs[1], "spec"))
	}
	path0 := dig(objs[1], "spec", "rules", 0, "http", "paths", 0)
	if dig(path0, "backend", "service", "port", "name") != "http" || dig(path0, "pathType") != "ImplementationSpecific" {
		t.Errorf("Ingress path: %v", path0)
	}
	if dig(objs[2], "spec", "metrics", 0, "resource", "target", "averageUtilization") != float64(50) ||
		dig(objs[2], "spec", "metrics", 1, "pods", "metric", "name") != "packets-per-second" ||
		dig(objs[2], "spec", "metrics", 1, "pods", "target", "averageValue") != "1k" {
		t.Errorf("HPA metrics: %v", dig(objs[2], "spec", "metrics"))
	}

	var human []string
	for _, c := range changes {
		human = append(human, c.Human...)
	}
	joined := strings.Join(human, "\n")
	if !strings.Contains(joined, "PodSecurityPolicy was removed in Kubernetes 1.25 and has no replacement") || !strings.Contains(joined, "Prefix or Exact") {
		t.Errorf("human decisions: %v", human)
	}
	if len(changes) != 5 {
		t.Errorf("%d changes, want 5 (the Service is current)", len(changes))
	}

	// Migrating the result again changes nothing.
	again, changes2, err := Migrate(out)
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != text || len(changes2) != 1 {
		t.Errorf("second migration changed the file or found %d objects", len(changes2))
	}
}

func TestMigrateLeavesCurrentFilesAlone(t *testing.T) {
	in := []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n    name: odd-indent   # kept\n")
	out, changes, err := Migrate(in)
	if err != nil || string(out) != string(in) || len(changes) != 0 {
		t.Errorf("out %q, changes %v, err %v", out, changes, err)
	}
}
