package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/gitk8s/gitk8s/internal/reconcile"
	"github.com/gitk8s/gitk8s/internal/testenv"
)

// chartFiles are the files of the renderer's test chart shop, under
// prefix, for a commit.
func chartFiles(t *testing.T, prefix string) map[string]string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "internal", "render", "testdata", "helm", "shop")
	files := map[string]string{}
	err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files[prefix+"/"+filepath.ToSlash(rel)] = string(data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestHelmChartCLIAndDaemon applies a Helm chart from a Git repository on
// the local control plane, with the CLI and with the daemon: the release
// takes its name, namespace and values from the flags or the sync, its
// capabilities from the cluster (a template that needs the chart's own
// CRD renders only once the cluster serves it), and the Secret the chart
// renders is masked in every output.
func TestHelmChartCLIAndDaemon(t *testing.T) {
	ns := env.Namespace(t)
	srv := testenv.NewGitServer(t)
	srv.Commit(t, chartFiles(t, "shop"))
	t.Cleanup(func() {
		_ = env.Target(t, "").Dynamic.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}).
			Delete(context.Background(), "orders.shop.example.com", metav1.DeleteOptions{})
	})
	const password = "shop-db-password-4711"
	secretValues := []string{password, base64.StdEncoding.EncodeToString([]byte(password))}
	var outputs []string
	cli := func(args ...string) (string, string) {
		t.Helper()
		stdout, stderr, code := gitk8s(t, args...)
		outputs = append(outputs, stdout, stderr)
		// diff exits 1 when it finds changes.
		if code != exitOK && (args[0] != "diff" || code != exitFailed) {
			t.Fatalf("gitk8s %s: exit %d\n%s\n%s", strings.Join(args, " "), code, stdout, stderr)
		}
		return stdout, stderr
	}
	flags := []string{srv.URL, "--path", "shop", "-n", ns, "--release-name", "cli", "--set", "replicas=3", "--no-policy"}

	stdout, _ := cli(append([]string{"diff"}, flags...)...)
	if !strings.Contains(stdout, "cli-shop") || !strings.Contains(stdout, "cli-db") {
		t.Errorf("diff does not show the release's objects:\n%s", stdout)
	}
	cli(append([]string{"apply", "-o", "json"}, flags...)...)
	client := env.Client(t, "")
	dep, err := client.AppsV1().Deployments(ns).Get(context.Background(), "cli-shop", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *dep.Spec.Replicas != 3 || dep.Labels["app.kubernetes.io/instance"] != "cli" {
		t.Errorf("deployment: replicas %d, labels %v; want 3 replicas of release cli", *dep.Spec.Replicas, dep.Labels)
	}
	if _, err := client.AppsV1().StatefulSets(ns).Get(context.Background(), "cli-cache", metav1.GetOptions{}); err != nil {
		t.Errorf("the vendored dependency's StatefulSet: %v", err)
	}
	orders := schema.GroupVersionResource{Group: "shop.example.com", Version: "v1", Resource: "orders"}
	if _, err := env.Target(t, "").Dynamic.Resource(orders).Namespace(ns).Get(context.Background(), "cli-first-order", metav1.GetOptions{}); err == nil {
		t.Error("the Order was rendered before the cluster served its kind")
	}
	// The CRD is now served: the chart, rendered for this cluster, adds
	// the Order.
	stdout, _ = cli(append([]string{"apply", "-o", "json"}, flags...)...)
	if _, err := env.Target(t, "").Dynamic.Resource(orders).Namespace(ns).Get(context.Background(), "cli-first-order", metav1.GetOptions{}); err != nil {
		t.Errorf("the Order was not rendered once the cluster served its kind: %v\n%s", err, stdout)
	}

	name := "helm-" + ns
	d, cfg, configPath := daemonFor(t, fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: %s, path: %s}}
syncs:
- name: %s
  source:
    url: %s
    ref: {branch: main}
    path: shop
    helm:
      releaseName: daemon
      values: {replicas: 1, cache: {enabled: false}}
  clusters: [local]
  namespace: %s
  policies: {skip: true}
`, env.Contexts[0], env.Kubeconfig, name, srv.URL, ns))
	stdout, _ = cli("diff", "--config", configPath, "--sync", name, srv.Work)
	if !strings.Contains(stdout, "daemon-shop") {
		t.Errorf("the daemon's prediction does not show its release:\n%s", stdout)
	}
	if err := d.Reconcile(context.Background(), cfg.Syncs[0]); err != nil {
		t.Fatal(err)
	}
	st := statusOf(t, d, name)
	if r := st.Condition("Ready").Reason; r != string(reconcile.Succeeded) {
		t.Fatalf("daemon: %s: %s", r, st.LastError)
	}
	dep, err = client.AppsV1().Deployments(ns).Get(context.Background(), "daemon-shop", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *dep.Spec.Replicas != 1 {
		t.Errorf("daemon's deployment has %d replicas, want the sync's 1", *dep.Spec.Replicas)
	}
	if _, err := client.AppsV1().StatefulSets(ns).Get(context.Background(), "daemon-cache", metav1.GetOptions{}); err == nil {
		t.Error("the dependency the sync switched off was applied")
	}
	if _, err := env.Target(t, "").Dynamic.Resource(orders).Namespace(ns).Get(context.Background(), "daemon-first-order", metav1.GetOptions{}); err != nil {
		t.Errorf("the daemon did not render the chart for the cluster's capabilities: %v", err)
	}
	secret, err := client.CoreV1().Secrets(ns).Get(context.Background(), "daemon-db", metav1.GetOptions{})
	if err != nil || string(secret.Data["password"]) != password {
		t.Fatalf("the chart's Secret: %v", err)
	}
	outputs = append(outputs, st.LastError, fmt.Sprint(st))
	for _, out := range outputs {
		for _, v := range secretValues {
			if strings.Contains(out, v) {
				t.Errorf("an output holds the chart's Secret value %q:\n%s", v, out)
			}
		}
	}
}
