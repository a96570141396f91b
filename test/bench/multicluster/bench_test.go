package multicluster

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitk8s/gitk8s/internal/testenv"
	"github.com/gitk8s/gitk8s/test/bench"
)

var env *testenv.Env

// TestMain starts four clusters only when benchmarks run.
func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.bench"); f == nil || f.Value.String() == "" {
		os.Exit(m.Run())
	}
	testenv.Main(m, &env, 4)
}

// BenchmarkThreeClusters applies the same workload to one cluster, then to
// three at once, and reports the ratio (target ≤ 1.5).
func BenchmarkThreeClusters(b *testing.B) {
	root, err := testenv.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	work := b.TempDir()
	gitk8s := filepath.Join(work, "gitk8s")
	if out, err := exec.Command("go", "build", "-o", gitk8s, filepath.Join(root, "cmd", "gitk8s")).CombinedOutput(); err != nil {
		b.Fatalf("build gitk8s: %v\n%s", err, out)
	}
	workload := filepath.Join(work, "workload")
	bench.WriteWorkload(b, workload, 0)
	cache := "XDG_CACHE_HOME=" + filepath.Join(work, "cache")
	one := []string{"apply", workload, "--kubeconfig", env.Kubeconfig, "--context", env.Contexts[0]}
	three := []string{"apply", workload, "--kubeconfig", env.Kubeconfig, "--context", env.Contexts[1], "--context", env.Contexts[2], "--context", env.Contexts[3]}
	for b.Loop() {
		cold1 := bench.Measure(b, gitk8s, one, cache)
		bench.MustCode(b, "cold apply, one cluster", cold1, 0)
		cold3 := bench.Measure(b, gitk8s, three, cache)
		bench.MustCode(b, "cold apply, three clusters", cold3, 0)
		// Let the controllers finish creating the 800 pods, which load the
		// same two cores, before timing the no-ops.
		time.Sleep(20 * time.Second)
		noop1 := bench.Measure(b, gitk8s, one, cache)
		bench.MustCode(b, "no-op, one cluster", noop1, 0)
		noop3 := bench.Measure(b, gitk8s, three, cache)
		bench.MustCode(b, "no-op, three clusters", noop3, 0)
		fmt.Printf("\n%-22s %12s %14s %7s\n", "1,000 objects", "one cluster", "three clusters", "ratio")
		for _, r := range []struct {
			name string
			a, c bench.Measured
		}{{"cold apply", cold1, cold3}, {"no-op re-apply", noop1, noop3}} {
			ratio := r.c.Elapsed.Seconds() / r.a.Elapsed.Seconds()
			fmt.Printf("%-22s %11.2fs %13.2fs %7.2f\n", r.name, r.a.Elapsed.Seconds(), r.c.Elapsed.Seconds(), ratio)
			b.ReportMetric(ratio, strings.ReplaceAll(r.name, " ", "-")+"-3-clusters-ratio")
		}
	}
}
