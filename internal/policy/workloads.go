package policy

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/gitk8s/gitk8s/internal/render"
)

// workload is an object that runs pods.
type workload struct {
	obj *render.Object
	// spec is the pod spec (a map inside the object).
	spec map[string]any
	// longRunning is false for Jobs and CronJobs, whose pods end.
	longRunning bool
}

// podSpecPaths says where each kind keeps its pod spec.
var podSpecPaths = map[string][]string{
	"Pod":                   {"spec"},
	"Deployment":            {"spec", "template", "spec"},
	"ReplicaSet":            {"spec", "template", "spec"},
	"ReplicationController": {"spec", "template", "spec"},
	"StatefulSet":           {"spec", "template", "spec"},
	"DaemonSet":             {"spec", "template", "spec"},
	"Job":                   {"spec", "template", "spec"},
	"CronJob":               {"spec", "jobTemplate", "spec", "template", "spec"},
}

func workloads(objects []*render.Object) []workload {
	var out []workload
	for _, o := range objects {
		kind := o.Object.GetKind()
		path, ok := podSpecPaths[kind]
		if !ok {
			continue
		}
		spec, found, _ := unstructured.NestedMap(o.Object.Object, path...)
		if !found {
			continue
		}
		// NestedMap copies; read from the object itself so findings can
		// refer to it, but never write.
		out = append(out, workload{obj: o, spec: spec, longRunning: kind != "Job" && kind != "CronJob"})
	}
	return out
}

// containers returns the pod spec's containers (or initContainers) as maps.
func containers(spec map[string]any, field string) []map[string]any {
	list, _ := spec[field].([]any)
	var out []map[string]any
	for _, c := range list {
		if m, ok := c.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func str(m map[string]any, keys ...string) string {
	v, _, _ := unstructured.NestedString(m, keys...)
	return v
}

func mapAt(m map[string]any, keys ...string) map[string]any {
	v, _, _ := unstructured.NestedMap(m, keys...)
	return v
}
