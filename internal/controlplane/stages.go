package controlplane

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"sigs.k8s.io/yaml"
)

// NeverReadyLabel on a pod keeps it Running but never Ready, so tests can
// make a workload that never becomes healthy.
const NeverReadyLabel = "localcluster.gitk8s.io/never-ready"

// FailsLabel on a pod makes it run and then fail (exit code 1), so tests
// can make a Job that fails.
const FailsLabel = "localcluster.gitk8s.io/fails"

// kwokStageFiles are the Stage files, relative to the kwok module, that make
// fake nodes Ready and keep them so, and take pods through their lifecycle
// quickly (Pending → Running and Ready; Job pods → Succeeded; deleted pods go).
var kwokStageFiles = []string{
	"kustomize/stage/node/fast/node-initialize.yaml",
	"kustomize/stage/node/heartbeat/node-heartbeat.yaml",
	"kustomize/stage/pod/fast/pod-ready.yaml",
	"kustomize/stage/pod/fast/pod-complete.yaml",
	"kustomize/stage/pod/fast/pod-delete.yaml",
}

// neverReadyStage takes a pod carrying NeverReadyLabel from Pending to
// Running with its containers started but not ready.
var neverReadyStage = `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-never-ready
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.metadata.labels["` + NeverReadyLabel + `"]'
      operator: 'Exists'
    - key: '.status.phase'
      operator: 'In'
      values: ['Pending']
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - {type: Initialized, status: "True", lastTransitionTime: {{ $now | Quote }}}
      - {type: Ready, status: "False", reason: ContainersNotReady, lastTransitionTime: {{ $now | Quote }}}
      - {type: ContainersReady, status: "False", reason: ContainersNotReady, lastTransitionTime: {{ $now | Quote }}}
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        started: true
        restartCount: 0
        state:
          running:
            startedAt: {{ $now | Quote }}
      {{ end }}
      phase: Running
      startTime: {{ $now | Quote }}
`

// failStage ends a running pod carrying FailsLabel as Failed, its
// containers terminated with exit code 1.
var failStage = `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-fail
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.metadata.labels["` + FailsLabel + `"]'
      operator: 'Exists'
    - key: '.status.phase'
      operator: 'In'
      values: ['Running']
  next:
    statusTemplate: |
      {{ $now := Now }}
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        restartCount: 0
        started: false
        state:
          terminated:
            exitCode: 1
            finishedAt: {{ $now | Quote }}
            reason: Error
            startedAt: {{ $now | Quote }}
      {{ end }}
      phase: Failed
`

// WriteStages joins kwok's own Stage files from the kwok module at
// kwokModuleDir into out, changed so that pods carrying NeverReadyLabel skip
// the ready stage, and adds the stage that keeps those pods unready.
func WriteStages(kwokModuleDir, out string) error {
	var buf bytes.Buffer
	for _, rel := range kwokStageFiles {
		path := filepath.Join(kwokModuleDir, rel)
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var stage map[string]any
		if err := yaml.Unmarshal(data, &stage); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if name, _ := stage["metadata"].(map[string]any)["name"].(string); name == "pod-ready" || name == "pod-complete" {
			label := NeverReadyLabel
			if name == "pod-complete" {
				label = FailsLabel
			}
			if err := excludeLabel(stage, label); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if data, err = yaml.Marshal(stage); err != nil {
				return err
			}
		}
		buf.Write(data)
		buf.WriteString("\n---\n")
	}
	buf.WriteString(neverReadyStage)
	buf.WriteString("\n---\n")
	buf.WriteString(failStage)
	return os.WriteFile(out, buf.Bytes(), 0o644)
}

// excludeLabel makes a stage skip pods that carry label.
func excludeLabel(stage map[string]any, label string) error {
	spec, _ := stage["spec"].(map[string]any)
	selector, _ := spec["selector"].(map[string]any)
	if selector == nil {
		return fmt.Errorf("stage has no spec.selector")
	}
	exprs, _ := selector["matchExpressions"].([]any)
	selector["matchExpressions"] = append(exprs, map[string]any{
		"key":      `.metadata.labels["` + label + `"]`,
		"operator": "DoesNotExist",
	})
	return nil
}
