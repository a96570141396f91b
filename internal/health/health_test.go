package health

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

func TestComputeIsStrict(t *testing.T) {
	tests := []struct {
		name string
		obj  string
		want status.Status
	}{{
		name: "running Job is not healthy yet",
		obj: `apiVersion: batch/v1
kind: Job
metadata: {name: j, generation: 1}
spec: {completions: 1}
status: {active: 1, startTime: "2026-01-01T00:00:00Z"}`,
		want: status.InProgressStatus,
	}, {
		name: "completed Job is healthy",
		obj: `apiVersion: batch/v1
kind: Job
metadata: {name: j, generation: 1}
spec: {completions: 1}
status:
  succeeded: 1
  startTime: "2026-01-01T00:00:00Z"
  conditions: [{type: Complete, status: "True"}]`,
		want: status.CurrentStatus,
	}, {
		name: "failed Job",
		obj: `apiVersion: batch/v1
kind: Job
metadata: {name: j, generation: 1}
status:
  failed: 3
  startTime: "2026-01-01T00:00:00Z"
  conditions: [{type: Failed, status: "True", reason: BackoffLimitExceeded}]`,
		want: status.FailedStatus,
	}, {
		name: "Deployment whose new generation is not observed yet",
		obj: `apiVersion: apps/v1
kind: Deployment
metadata: {name: d, generation: 2}
spec: {replicas: 1}
status: {observedGeneration: 1, replicas: 1, readyReplicas: 1, availableReplicas: 1, updatedReplicas: 1}`,
		want: status.InProgressStatus,
	}, {
		name: "Deployment past its progress deadline fails",
		obj: `apiVersion: apps/v1
kind: Deployment
metadata: {name: d, generation: 1}
spec: {replicas: 1}
status:
  observedGeneration: 1
  replicas: 1
  conditions: [{type: Progressing, status: "False", reason: ProgressDeadlineExceeded}]`,
		want: status.FailedStatus,
	}, {
		name: "ConfigMap is healthy",
		obj:  `{apiVersion: v1, kind: ConfigMap, metadata: {name: c}}`,
		want: status.CurrentStatus,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := yaml.YAMLToJSON([]byte(tt.obj))
			if err != nil {
				t.Fatal(err)
			}
			u := &unstructured.Unstructured{}
			if err := u.UnmarshalJSON(data); err != nil {
				t.Fatal(err)
			}
			got, msg := Compute(u)
			if got != tt.want {
				t.Errorf("status %s (%s), want %s", got, msg, tt.want)
			}
		})
	}
}

func TestResultHealthy(t *testing.T) {
	r := Result{Objects: []ObjectStatus{{Status: status.CurrentStatus}, {Status: status.UnknownStatus}}}
	if r.Healthy() {
		t.Error("a result with an Unknown object is healthy")
	}
	if n := len(r.Unhealthy()); n != 1 {
		t.Errorf("%d unhealthy, want 1", n)
	}
}
