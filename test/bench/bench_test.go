// Each run gets clusters of its own (API servers of one control plane, used
// one after the other), so every run starts from the same empty state.

package bench

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitk8s/gitk8s/internal/policy"
	"github.com/gitk8s/gitk8s/internal/render"
	"github.com/gitk8s/gitk8s/internal/testenv"
)

var env *testenv.Env

// BaselineEnv names a source tree of an earlier gitk8s (a git worktree of
// an older commit). When it is set, BenchmarkCourseWorkload measures that
// build too, on a cluster of its own, in the same run.
const BaselineEnv = "GITK8S_BENCH_BASELINE"

// TestMain starts two clusters (three with a baseline) only when
// benchmarks run: `go test ./...` runs none here and needs no control plane.
func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.bench"); f == nil || f.Value.String() == "" {
		os.Exit(m.Run())
	}
	clusters := 2
	if os.Getenv(BaselineEnv) != "" {
		clusters = 3
	}
	testenv.Main(m, &env, clusters)
}

// repeats is how often the no-op and the diff run per gitk8s build.
const repeats = 3

// settleTime is the pause around cold applies.
const settleTime = 20 * time.Second

// median is the measurement with the median time.
func median(ms []Measured) Measured {
	sorted := append([]Measured(nil), ms...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Elapsed < sorted[j].Elapsed })
	return sorted[len(sorted)/2]
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
	WriteWorkload(b, workload, 0)
	// gitk8sRun is one build of gitk8s on a cluster of its own.
	type gitk8sRun struct {
		bin, context, cache string
	}
	runs := []gitk8sRun{{gitk8s, env.Contexts[1], "XDG_CACHE_HOME=" + filepath.Join(work, "cache")}}
	if base := os.Getenv(BaselineEnv); base != "" {
		bin := filepath.Join(work, "gitk8s-baseline")
		build := exec.Command("go", "build", "-o", bin, "./cmd/gitk8s")
		build.Dir = base
		if out, err := build.CombinedOutput(); err != nil {
			b.Fatalf("build the baseline in %s: %v\n%s", base, err, out)
		}
		runs = append(runs, gitk8sRun{bin, env.Contexts[2], "XDG_CACHE_HOME=" + filepath.Join(work, "cache-baseline")})
	}
	kubectlCtx := env.Contexts[0]
	kubectlApply := []string{"--kubeconfig", env.Kubeconfig, "--context", kubectlCtx, "apply", "--server-side", "-f", workload}
	gitk8sApply := func(r gitk8sRun) []string {
		return []string{"apply", workload, "--kubeconfig", env.Kubeconfig, "--context", r.context}
	}
	gitk8sDiff := func(r gitk8sRun) []string {
		return []string{"diff", workload, "--kubeconfig", env.Kubeconfig, "--context", r.context, "--color", "never"}
	}

	// settle lets the controllers finish what the last cold apply started
	// (200 pods per cluster), so that it does not slow the next
	// measurement on another cluster of the same machine.
	settle := func() { time.Sleep(settleTime) }
	for b.Loop() {
		// Each step runs kubectl, then every gitk8s build, one after the
		// other; the no-op and the diff, which change nothing, run
		// `repeats` times per tool, builds alternating, and the medians count.
		kCold := Measure(b, kubectlBin, kubectlApply)
		MustCode(b, "kubectl cold apply", kCold, 0)
		gCold := make([]Measured, len(runs))
		for i, r := range runs {
			settle()
			gCold[i] = Measure(b, r.bin, gitk8sApply(r), r.cache)
			MustCode(b, "gitk8s cold apply", gCold[i], 0)
		}
		settle()

		kNoop := Measure(b, kubectlBin, kubectlApply)
		MustCode(b, "kubectl no-op apply", kNoop, 0)
		gNoops := make([][]Measured, len(runs))
		for range repeats {
			for i, r := range runs {
				m := Measure(b, r.bin, gitk8sApply(r), r.cache)
				MustCode(b, "gitk8s no-op apply", m, 0)
				if !strings.Contains(m.Output, "1000 unchanged") {
					b.Fatalf("gitk8s no-op apply changed something:\n%s", m.Output[max(0, len(m.Output)-500):])
				}
				gNoops[i] = append(gNoops[i], m)
			}
		}

		WriteWorkload(b, workload, Namespaces) // both ConfigMaps of every namespace: 100 objects
		kDiff := Measure(b, kubectlBin, []string{"--kubeconfig", env.Kubeconfig, "--context", kubectlCtx, "diff", "--server-side", "-f", workload})
		MustCode(b, "kubectl diff", kDiff, 1)
		gDiffs := make([][]Measured, len(runs))
		for range repeats {
			for i, r := range runs {
				m := Measure(b, r.bin, gitk8sDiff(r), r.cache)
				MustCode(b, "gitk8s diff", m, 1)
				if !strings.Contains(m.Output, "100 to configure, 900 unchanged") {
					b.Fatalf("gitk8s diff did not find the 100 changes:\n%s", m.Output[max(0, len(m.Output)-500):])
				}
				gDiffs[i] = append(gDiffs[i], m)
			}
		}
		WriteWorkload(b, workload, 0)
		gNoop, gDiff := make([]Measured, len(runs)), make([]Measured, len(runs))
		for i := range runs {
			gNoop[i], gDiff[i] = median(gNoops[i]), median(gDiffs[i])
		}

		rows := []struct {
			name string
			k    Measured
			g    []Measured
		}{{"cold apply", kCold, gCold}, {"no-op re-apply", kNoop, gNoop}, {"diff, 100 changed", kDiff, gDiff}}
		header := fmt.Sprintf("\n%-20s %12s %12s %8s %14s", "1,000 objects", "kubectl", "gitk8s", "ratio", "gitk8s max RSS")
		if len(runs) > 1 {
			header += fmt.Sprintf(" %12s %8s %14s %14s %10s %12s", "baseline", "ratio", "baseline RSS", "gitk8s/baseline", "gitk8s CPU", "baseline CPU")
		}
		fmt.Println(header)
		peak := int64(0)
		for _, r := range rows {
			ratio := r.g[0].Elapsed.Seconds() / r.k.Elapsed.Seconds()
			line := fmt.Sprintf("%-20s %11.2fs %11.2fs %8.3f %11.1f MB", r.name, r.k.Elapsed.Seconds(), r.g[0].Elapsed.Seconds(), ratio, float64(r.g[0].MaxRSS)/1024)
			if len(runs) > 1 {
				base := r.g[1]
				line += fmt.Sprintf(" %11.2fs %8.3f %11.1f MB %14.3f %9.2fs %11.2fs", base.Elapsed.Seconds(), base.Elapsed.Seconds()/r.k.Elapsed.Seconds(),
					float64(base.MaxRSS)/1024, r.g[0].Elapsed.Seconds()/base.Elapsed.Seconds(), r.g[0].CPU.Seconds(), base.CPU.Seconds())
			}
			fmt.Println(line)
			b.ReportMetric(ratio, strings.ReplaceAll(strings.Split(r.name, ",")[0], " ", "-")+"-ratio")
			peak = max(peak, r.g[0].MaxRSS)
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
	WriteWorkload(t, dir, 0)
	bundle, err := render.Render(t.Context(), render.Options{Root: dir})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(bundle.Objects); n != 20*Namespaces {
		t.Errorf("%d objects, want %d", n, 20*Namespaces)
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
	WriteWorkload(b, filepath.Join(repo, "base"), 0)
	var resources strings.Builder
	resources.WriteString("resources:\n")
	for i := range Namespaces {
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
			m := Measure(b, name, args)
			MustCode(b, name, m, 0)
			times = append(times, m.Elapsed)
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

// BenchmarkPolicies runs every built-in rule and gitk8s's own admission
// policies over the 1,000-object workload, offline, and reports the CPU
// time of one evaluation (target < 200 ms).
func BenchmarkPolicies(b *testing.B) {
	dir := b.TempDir()
	WriteWorkload(b, dir, 0)
	bundle, err := render.Render(b.Context(), render.Options{Root: dir})
	if err != nil {
		b.Fatal(err)
	}
	admission, err := policy.LoadAdmission(b.Context(), dir, ".", bundle.Objects) // gitk8s's own admission policies too
	if err != nil {
		b.Fatal(err)
	}
	var before, after syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	runs := 0
	findings := 0
	for b.Loop() {
		findings = len(policy.Evaluate(bundle.Objects, policy.Config{Admission: admission}, nil))
		runs++
	}
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) / time.Duration(runs)
	fmt.Printf("\npolicies over %d objects: %d findings, %.1f ms CPU per evaluation (%d runs)\n", len(bundle.Objects), findings, float64(cpu.Microseconds())/1000, runs)
	b.ReportMetric(float64(cpu.Microseconds())/1000, "cpu-ms/op")
}
