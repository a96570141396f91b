package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitk8s/gitk8s/internal/testenv"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// clustersFile maps KubeFed's cluster names onto the three local clusters.
func clustersFile(t *testing.T) string {
	t.Helper()
	content := fmt.Sprintf(`clusters:
- {name: cluster1, context: %s, kubeconfig: %s, labels: {region: eu}}
- {name: cluster2, context: %s, kubeconfig: %s, labels: {region: us}}
- {name: cluster3, context: %s, kubeconfig: %s, labels: {region: eu}}
`, env.Contexts[0], env.Kubeconfig, env.Contexts[1], env.Kubeconfig, env.Contexts[2], env.Kubeconfig)
	path := filepath.Join(t.TempDir(), "clusters.yaml")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestFederationCorpusAcrossClusters applies KubeFed's own sample to three
// clusters: every object reaches the clusters its placement names, with
// its overrides and the replica plan, and nothing reaches the third.
func TestFederationCorpusAcrossClusters(t *testing.T) {
	corpus := filepath.Join("..", "..", "internal", "federation", "testdata", "kubefed", "example")
	files := map[string]string{}
	for _, dir := range []string{"sample1", "scheduling"} {
		entries, err := os.ReadDir(filepath.Join(corpus, dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "federated") {
				data, err := os.ReadFile(filepath.Join(corpus, dir, e.Name()))
				if err != nil {
					t.Fatal(err)
				}
				files[dir+"/"+e.Name()] = string(data)
			}
		}
	}
	dir := testenv.WriteFiles(t, files)
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	var out, errOut bytes.Buffer
	args := []string{"apply", dir, "--clusters", clustersFile(t), "--wait", "90s", "--inventory", "kubefed-sample"}

	// KubeFed's sample binds cluster-admin: the policy gate stops the sync
	// in every cluster before anything is written.
	code := run(context.Background(), args, &out, &errOut)
	if code != exitFailed || !strings.Contains(errOut.String(), "sample1/federatedclusterrolebinding.yaml:1: error rbac-cluster-admin-binding: ClusterRoleBinding/test-clusterrolebinding") ||
		!strings.Contains(errOut.String(), "policy violations: nothing was applied") {
		t.Fatalf("the gate did not stop the sync: exit %d\n%s", code, errOut.String())
	}
	if _, err := env.Client(t, env.Contexts[0]).CoreV1().Namespaces().Get(context.Background(), "test-namespace", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("a blocked sync wrote the namespace (err=%v)", err)
	}

	// This test is about federation: let the binding through as a warning.
	out.Reset()
	errOut.Reset()
	code = run(context.Background(), append(args, "-o", "json", "--policy", "rbac-cluster-admin-binding=warn"), &out, &errOut)
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
	var report applyReport
	if err := json.Unmarshal(out.Bytes(), &report); err != nil {
		t.Fatal(err)
	}
	if len(report.Federated) != 10 {
		t.Errorf("%d federated objects reported, want 10", len(report.Federated))
	}
	for _, f := range report.Federated {
		if !f.Ready || len(f.Clusters) != 2 {
			t.Errorf("%s: ready %v on %d clusters: %+v", f.Object, f.Ready, len(f.Clusters), f.Clusters)
		}
	}

	ctx := context.Background()
	c1, c2, c3 := env.Client(t, env.Contexts[0]), env.Client(t, env.Contexts[1]), env.Client(t, env.Contexts[2])
	d1, err := c1.AppsV1().Deployments("test-namespace").Get(ctx, "test-deployment", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d2, err := c2.AppsV1().Deployments("test-namespace").Get(ctx, "test-deployment", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *d1.Spec.Replicas != 4 || *d2.Spec.Replicas != 6 {
		t.Errorf("replicas %d / %d, want the plan 4 / 6", *d1.Spec.Replicas, *d2.Spec.Replicas)
	}
	if d2.Spec.Template.Spec.Containers[0].Image != "nginx:1.17.0-alpine" || d1.Spec.Template.Spec.Containers[0].Image != "nginx" {
		t.Errorf("images %s / %s", d1.Spec.Template.Spec.Containers[0].Image, d2.Spec.Template.Spec.Containers[0].Image)
	}
	j2, err := c2.BatchV1().Jobs("test-namespace").Get(ctx, "test-job", metav1.GetOptions{})
	if err != nil || *j2.Spec.Parallelism != 2 {
		t.Errorf("cluster2 job: %v %v", j2, err)
	}
	cm2, err := c2.CoreV1().ConfigMaps("test-namespace").Get(ctx, "test-configmap", metav1.GetOptions{})
	if err != nil || cm2.Data["foo"] != "bar" || cm2.Data["A"] != "" {
		t.Errorf("cluster2 configmap: %v %v", cm2.Data, err)
	}
	if s2, err := c2.CoreV1().Secrets("test-namespace").Get(ctx, "test-secret", metav1.GetOptions{}); err != nil || len(s2.Data["A"]) != 0 {
		t.Errorf("cluster2 secret keeps A despite the null override: %v", err)
	}
	if _, err := c1.NetworkingV1().Ingresses("test-namespace").Get(ctx, "test-ingress", metav1.GetOptions{}); err != nil {
		t.Errorf("cluster1 ingress: %v", err)
	}
	if _, err := c3.CoreV1().Namespaces().Get(ctx, "test-namespace", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("cluster3 got the namespace (err=%v)", err)
	}
	if _, err := c3.RbacV1().ClusterRoles().Get(ctx, "test-clusterrole", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("cluster3 got the cluster role (err=%v)", err)
	}
}

// TestUnreachableClusterFailsOnlyItsOwnPart stops one API server in the
// middle of a sync: the other clusters converge, the result names the
// failed one, nothing is pruned there, and it converges once it is back.
func TestUnreachableClusterFailsOnlyItsOwnPart(t *testing.T) {
	ns := "multi-" + env.Namespace(t)
	third := env.Contexts[2]
	files := map[string]string{
		"ns.yaml":   fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n", ns),
		"keep.yaml": configMap(ns, "keep", "v"),
		"gone.yaml": configMap(ns, "gone", "v"),
		"a.yaml":    configMap(ns, "a", "v"), "b.yaml": configMap(ns, "b", "v"),
	}
	s := newSyncDir(t, files)
	all := []string{"--context", env.Contexts[0], "--context", env.Contexts[1], "--context", third}
	s.mustRun("apply", exitOK, all...)

	// A slow first wave gives the test time to cut the third cluster off
	// while the sync runs.
	s.write("slow.yaml", strings.Replace(deployment(ns, "slow", 1, ""), "metadata: {name: slow, namespace: "+ns+"}", "metadata: {name: slow, namespace: "+ns+", annotations: {gitk8s.io/wave: \"0\"}}", 1))
	s.write("keep.yaml", strings.Replace(configMap(ns, "keep", "v2"), "namespace: "+ns, "namespace: "+ns+", annotations: {gitk8s.io/wave: \"1\"}", 1))
	s.remove("gone.yaml")
	type result struct {
		stdout, stderr string
		code           int
	}
	done := make(chan result)
	go func() {
		stdout, stderr, code := s.run("apply", append(all, "--prune", "--wait", "30s", "--cluster-timeout", "60s")...)
		done <- result{stdout, stderr, code}
	}()
	time.Sleep(300 * time.Millisecond)
	if err := env.ControlPlane.StopAPIServer(third); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res.code != exitError {
		t.Errorf("exit %d, want %d for the unreachable cluster\n%s\n%s", res.code, exitError, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stderr, "cluster "+third) || !strings.Contains(res.stderr, "unreachable") && !strings.Contains(res.stderr, "Offline") {
		t.Errorf("the failed cluster is not named:\n%s", res.stderr)
	}
	ctx := context.Background()
	for _, c := range env.Contexts[:2] {
		cm, err := env.Client(t, c).CoreV1().ConfigMaps(ns).Get(ctx, "keep", metav1.GetOptions{})
		if err != nil || cm.Data["value"] != "v2" {
			t.Errorf("%s did not converge: %v %v", c, cm, err)
		}
		if _, err := env.Client(t, c).CoreV1().ConfigMaps(ns).Get(ctx, "gone", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("%s: gone was not pruned (err=%v)", c, err)
		}
	}

	var out, errOut bytes.Buffer
	code := run(ctx, append([]string{"status", "--kubeconfig", env.Kubeconfig}, all...), &out, &errOut)
	if code != exitFailed || !strings.Contains(out.String(), third+"  Offline") || !strings.Contains(out.String(), s.inventory) {
		t.Errorf("status with a cluster down: exit %d\n%s%s", code, out.String(), errOut.String())
	}

	if err := env.ControlPlane.StartAPIServer(ctx, third); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client(t, third).CoreV1().ConfigMaps(ns).Get(ctx, "gone", metav1.GetOptions{}); err != nil {
		t.Errorf("%s: something was pruned in the unreachable cluster (err=%v)", third, err)
	}
	s.mustRun("apply", exitOK, append(all, "--prune", "--wait", "60s")...)
	if _, err := env.Client(t, third).CoreV1().ConfigMaps(ns).Get(ctx, "gone", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("%s did not converge after coming back (err=%v)", third, err)
	}
	for _, c := range env.Contexts {
		_ = env.Client(t, c).CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	}
}
