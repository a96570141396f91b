// Package bench compares gitk8s with kubectl on a course-shaped workload of
// 1,000 objects, on the real local control plane, in one run: `make bench`.
//
// Each tool gets a cluster of its own (two API servers of one control plane,
// used one after the other), so both start from the same empty state.
package bench

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitk8s/gitk8s/internal/render"
	"github.com/gitk8s/gitk8s/internal/testenv"
)

var env *testenv.Env

// TestMain starts two clusters only when benchmarks run: `go test ./...`
// runs none here and needs no control plane.
func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.bench"); f == nil || f.Value.String() == "" {
		os.Exit(m.Run())
	}
	testenv.Main(m, &env, 2)
}

// Workload size: namespaces × 20 objects.
const namespaces = 50

// writeWorkload writes one file per namespace, each with 20 objects:
// Namespace, ResourceQuota, LimitRange, ServiceAccount, Role, RoleBinding,
// 2 ConfigMaps, 2 Secrets, 3 Deployments, 3 Services, Ingress, HPA,
// StatefulSet and CronJob. version changes the data of both ConfigMaps of
// the first changed namespaces: 100 changed objects over 50 namespaces.
func writeWorkload(t testing.TB, dir string, changed int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range namespaces {
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

// measured is one timed run of a command.
type measured struct {
	elapsed time.Duration
	maxRSS  int64 // kilobytes
	code    int
	output  string
}

func measure(t testing.TB, name string, args []string, extraEnv ...string) measured {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), extraEnv...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	m := measured{elapsed: time.Since(start), output: string(out)}
	if cmd.ProcessState != nil {
		m.code = cmd.ProcessState.ExitCode()
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			m.maxRSS = ru.Maxrss
		}
	} else if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return m
}

func mustCode(t testing.TB, what string, m measured, codes ...int) {
	t.Helper()
	for _, c := range codes {
		if m.code == c {
			return
		}
	}
	out := m.output
	if len(out) > 3000 {
		out = out[len(out)-3000:]
	}
	t.Fatalf("%s: exit %d\n%s", what, m.code, out)
}

// BenchmarkCourseWorkload measures cold apply, no-op re-apply and a diff
// with 100 changed objects, for gitk8s and for kubectl, and reports the
// ratios (gitk8s time / kubectl time) and gitk8s's peak RSS.
func BenchmarkCourseWorkload(b *testing.B) {
	root, err := testenv.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	work := b.TempDir()
	gitk8s := filepath.Join(work, "gitk8s")
	if out, err := exec.Command("go", "build", "-o", gitk8s, filepath.Join(root, "cmd", "gitk8s")).CombinedOutput(); err != nil {
		b.Fatalf("build gitk8s: %v\n%s", err, out)
	}
	kubectlBin := env.Kubectl()
	workload := filepath.Join(work, "workload")
	writeWorkload(b, workload, 0)
	cache := "XDG_CACHE_HOME=" + filepath.Join(work, "cache")
	kubectlCtx, gitk8sCtx := env.Contexts[0], env.Contexts[1]

	kubectlApply := []string{"--kubeconfig", env.Kubeconfig, "--context", kubectlCtx, "apply", "--server-side", "-f", workload}
	gitk8sApply := []string{"apply", workload, "--kubeconfig", env.Kubeconfig, "--context", gitk8sCtx}

	for b.Loop() {
		kCold := measure(b, kubectlBin, kubectlApply)
		mustCode(b, "kubectl cold apply", kCold, 0)
		gCold := measure(b, gitk8s, gitk8sApply, cache)
		mustCode(b, "gitk8s cold apply", gCold, 0)

		kNoop := measure(b, kubectlBin, kubectlApply)
		mustCode(b, "kubectl no-op apply", kNoop, 0)
		gNoop := measure(b, gitk8s, gitk8sApply, cache)
		mustCode(b, "gitk8s no-op apply", gNoop, 0)
		if !strings.Contains(gNoop.output, "1000 unchanged") {
			b.Fatalf("gitk8s no-op apply changed something:\n%s", gNoop.output[max(0, len(gNoop.output)-500):])
		}

		writeWorkload(b, workload, namespaces) // both ConfigMaps of every namespace: 100 objects
		kDiff := measure(b, kubectlBin, []string{"--kubeconfig", env.Kubeconfig, "--context", kubectlCtx, "diff", "--server-side", "-f", workload})
		mustCode(b, "kubectl diff", kDiff, 1)
		gDiff := measure(b, gitk8s, []string{"diff", workload, "--kubeconfig", env.Kubeconfig, "--context", gitk8sCtx, "--color", "never"}, cache)
		mustCode(b, "gitk8s diff", gDiff, 1)
		if !strings.Contains(gDiff.output, "100 to configure, 900 unchanged") {
			b.Fatalf("gitk8s diff did not find the 100 changes:\n%s", gDiff.output[max(0, len(gDiff.output)-500):])
		}
		writeWorkload(b, workload, 0)

		rows := []struct {
			name string
			k, g measured
		}{{"cold apply", kCold, gCold}, {"no-op re-apply", kNoop, gNoop}, {"diff, 100 changed", kDiff, gDiff}}
		fmt.Printf("\n%-20s %12s %12s %8s %14s\n", "1,000 objects", "kubectl", "gitk8s", "ratio", "gitk8s max RSS")
		peak := int64(0)
		for _, r := range rows {
			ratio := r.g.elapsed.Seconds() / r.k.elapsed.Seconds()
			fmt.Printf("%-20s %11.2fs %11.2fs %8.3f %11.1f MB\n", r.name, r.k.elapsed.Seconds(), r.g.elapsed.Seconds(), ratio, float64(r.g.maxRSS)/1024)
			b.ReportMetric(ratio, strings.ReplaceAll(strings.Split(r.name, ",")[0], " ", "-")+"-ratio")
			peak = max(peak, r.g.maxRSS)
		}
		b.ReportMetric(float64(peak)/1024, "peak-RSS-MB")
	}
}

// TestWorkloadHasAThousandObjects checks the workload is what the
// benchmark says it is.
func TestWorkloadHasAThousandObjects(t *testing.T) {
	dir := t.TempDir()
	if out := os.Getenv("GITK8S_BENCH_WORKLOAD"); out != "" {
		dir = out // keep it, to run the tools on it by hand
	}
	writeWorkload(t, dir, 0)
	bundle, err := render.Render(render.Options{Root: dir})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(bundle.Objects); n != 20*namespaces {
		t.Errorf("%d objects, want %d", n, 20*namespaces)
	}
}

// BenchmarkKustomizeRender renders a 1,000-object kustomize overlay with
// gitk8s and with `kubectl kustomize`, five times each, and reports the
// ratio of the medians.
func BenchmarkKustomizeRender(b *testing.B) {
	root, err := testenv.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	work := b.TempDir()
	gitk8s := filepath.Join(work, "gitk8s")
	if out, err := exec.Command("go", "build", "-o", gitk8s, filepath.Join(root, "cmd", "gitk8s")).CombinedOutput(); err != nil {
		b.Fatalf("build gitk8s: %v\n%s", err, out)
	}
	repo := filepath.Join(work, "repo")
	writeWorkload(b, filepath.Join(repo, "base"), 0)
	var resources strings.Builder
	resources.WriteString("resources:\n")
	for i := range namespaces {
		fmt.Fprintf(&resources, "- bench-%02d.yaml\n", i)
	}
	files := map[string]string{
		"base/kustomization.yaml": resources.String(),
		"overlay/kustomization.yaml": `resources:
- ../base
namePrefix: prod-
labels:
- pairs: {env: prod}
images:
- name: nginx
  newTag: "1.27.1"
patches:
- target: {kind: Deployment}
  patch: |-
    - op: replace
      path: /spec/replicas
      value: 2
configMapGenerator:
- name: overlay-settings
  literals: [MODE=prod]
`,
	}
	for name, content := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(repo, name)), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(repo, name), []byte(content), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	median := func(name string, args ...string) time.Duration {
		var times []time.Duration
		for range 5 {
			m := measure(b, name, args)
			mustCode(b, name, m, 0)
			times = append(times, m.elapsed)
		}
		for i := range times {
			for j := i + 1; j < len(times); j++ {
				if times[j] < times[i] {
					times[i], times[j] = times[j], times[i]
				}
			}
		}
		return times[len(times)/2]
	}
	for b.Loop() {
		k := median(env.Kubectl(), "kustomize", filepath.Join(repo, "overlay"))
		g := median(gitk8s, "render", repo, "--path", "overlay")
		ratio := g.Seconds() / k.Seconds()
		fmt.Printf("\n%-32s %10s %10s %7s\n", "kustomize overlay, 1,001 objects", "kubectl", "gitk8s", "ratio")
		fmt.Printf("%-32s %9.3fs %9.3fs %7.3f\n", "render (median of 5)", k.Seconds(), g.Seconds(), ratio)
		b.ReportMetric(ratio, "kustomize-render-ratio")
	}
}
