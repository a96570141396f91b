// Package bench compares gitk8s with kubectl on a course-shaped workload of
// 1,000 objects, on the real local control plane, in one run: `make bench`.
// This file holds what the benchmarks share: the workload and a way to time
// a command with its peak memory.
package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Namespaces is the workload's size: Namespaces × 20 objects.
const Namespaces = 50

// WriteWorkload writes one file per namespace, each with 20 objects:
// Namespace, ResourceQuota, LimitRange, ServiceAccount, Role, RoleBinding,
// 2 ConfigMaps, 2 Secrets, 3 Deployments, 3 Services, Ingress, HPA,
// StatefulSet and CronJob. version changes the data of both ConfigMaps of
// the first changed namespaces: 100 changed objects over 50 namespaces.
func WriteWorkload(t testing.TB, dir string, changed int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range Namespaces {
		ns := fmt.Sprintf("bench-%02d", i)
		version := "1"
		if i < changed {
			version = "2"
		}
		var b strings.Builder
		doc := func(format string, args ...any) {
			fmt.Fprintf(&b, "---\n"+format+"\n", args...)
		}
		doc("apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}", ns)
		doc("apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: quota, namespace: %s}\nspec:\n  hard: {pods: \"50\", requests.cpu: \"20\", requests.memory: 40Gi, limits.cpu: \"40\", limits.memory: 80Gi}", ns)
		doc("apiVersion: v1\nkind: LimitRange\nmetadata: {name: limits, namespace: %s}\nspec:\n  limits:\n  - type: Container\n    default: {cpu: 200m, memory: 256Mi}\n    defaultRequest: {cpu: 100m, memory: 128Mi}", ns)
		doc("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: app, namespace: %s, labels: {app: bench}}", ns)
		doc("apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: reader, namespace: %s}\nrules:\n- {apiGroups: [\"\"], resources: [configmaps], verbs: [get, list]}", ns)
		doc("apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: reader, namespace: %s}\nsubjects: [{kind: ServiceAccount, name: app, namespace: %s}]\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}", ns, ns)
		for c := range 2 {
			doc("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config-%d, namespace: %s}\ndata: {version: \"%s\", greeting: hello}", c, ns, version)
		}
		for s := range 2 {
			doc("apiVersion: v1\nkind: Secret\nmetadata: {name: secret-%d, namespace: %s}\nstringData: {password: bench-password-%d-%d}", s, ns, i, s)
		}
		for d := range 3 {
			doc(`apiVersion: apps/v1
kind: Deployment
metadata: {name: app-%[1]d, namespace: %[2]s}
spec:
  replicas: 1
  selector: {matchLabels: {app: app-%[1]d}}
  template:
    metadata: {labels: {app: app-%[1]d}}
    spec:
      serviceAccountName: app
      containers:
      - name: app
        image: nginx:1.27
        ports: [{containerPort: 80}]
        readinessProbe: {httpGet: {path: /, port: 80}}`, d, ns)
			doc("apiVersion: v1\nkind: Service\nmetadata: {name: app-%d, namespace: %s}\nspec:\n  selector: {app: app-%d}\n  ports: [{port: 80}]", d, ns, d)
		}
		doc(`apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: %s}
spec:
  rules:
  - host: %s.example.test
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: app-0, port: {number: 80}}}}]`, ns, ns)
		doc(`apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: app-0, namespace: %s}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: app-0}
  minReplicas: 1
  maxReplicas: 3
  metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 80}}}]`, ns)
		doc(`apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: %s}
spec:
  serviceName: app-2
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, image: postgres:16}]`, ns)
		doc(`apiVersion: batch/v1
kind: CronJob
metadata: {name: report, namespace: %s}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: report, image: busybox:1.36}]`, ns)
		if err := os.WriteFile(filepath.Join(dir, ns+".yaml"), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Measured is one timed run of a command.
type Measured struct {
	Elapsed time.Duration
	// CPU is the process's user and system time.
	CPU    time.Duration
	MaxRSS int64 // kilobytes
	Code   int
	Output string
}

func Measure(t testing.TB, name string, args []string, extraEnv ...string) Measured {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), extraEnv...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	m := Measured{Elapsed: time.Since(start), Output: string(out)}
	if cmd.ProcessState != nil {
		m.Code = cmd.ProcessState.ExitCode()
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			m.MaxRSS = ru.Maxrss
		}
		m.CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	} else if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return m
}

func MustCode(t testing.TB, what string, m Measured, codes ...int) {
	t.Helper()
	for _, c := range codes {
		if m.Code == c {
			return
		}
	}
	out := m.Output
	if len(out) > 3000 {
		out = out[len(out)-3000:]
	}
	t.Fatalf("%s: exit %d\n%s", what, m.Code, out)
}
