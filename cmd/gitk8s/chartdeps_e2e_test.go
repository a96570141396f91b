package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gitk8s/gitk8s/internal/daemon"
	"github.com/gitk8s/gitk8s/internal/reconcile"
	"github.com/gitk8s/gitk8s/internal/testenv"
	"github.com/gitk8s/gitk8s/internal/testenv/chartrepo"
)

// TestChartDependenciesCLIAndDaemon applies, from Git, a chart whose
// dependency is not vendored: Chart.lock pins it in a chart repository on
// loopback that wants a password. The CLI fetches it with --helm-repo and
// the credentials in its environment, the daemon with the sync's
// chartRepositories and a Secret; without the repository allowed, the
// apply fails naming Chart.lock and writes nothing, and with the
// repository down the daemon's sync is SourceUnavailable with nothing
// lost. The password is in no output.
func TestChartDependenciesCLIAndDaemon(t *testing.T) {
	const user, password = "chart-reader", "chart-repo-pw-9931"
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	ns := env.Namespace(t)
	repo := chartrepo.NewServer(t)

	// The maintainers' side: the subchart is published, and helm
	// dependency update pins it in Chart.lock.
	files := chartFiles(t, "shop")
	work := testenv.WriteFiles(t, files)
	repo.Publish(t, filepath.Join(work, "shop", "charts", "cache"))
	repo.RequireAuth(user, password)
	if err := os.RemoveAll(filepath.Join(work, "shop", "charts")); err != nil {
		t.Fatal(err)
	}
	chartYAML := strings.Replace(files["shop/Chart.yaml"], "    version: 0.3.0\n", "    version: 0.3.0\n    repository: "+repo.URL+"\n", 1)
	if err := os.WriteFile(filepath.Join(work, "shop", "Chart.yaml"), []byte(chartYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	chartrepo.RunHelm(t, home, "repo", "add", "shop-deps", repo.URL, "--username", user, "--password", password)
	chartrepo.RunHelm(t, home, "dependency", "update", filepath.Join(work, "shop"))
	lock, err := os.ReadFile(filepath.Join(work, "shop", "Chart.lock"))
	if err != nil {
		t.Fatal(err)
	}
	commit := map[string]string{"shop/Chart.yaml": chartYAML, "shop/Chart.lock": string(lock)}
	for name, content := range files {
		// The chart's CRD stays out: the CRD is cluster-wide, and the Helm
		// test sees when the cluster starts serving it.
		if !strings.HasPrefix(name, "shop/charts/") && !strings.HasPrefix(name, "shop/crds/") && name != "shop/Chart.yaml" {
			commit[name] = content
		}
	}
	srv := testenv.NewGitServer(t)
	srv.Commit(t, commit)

	var outputs []string
	flags := []string{srv.URL, "--path", "shop", "-n", ns, "--release-name", "deps", "--no-policy"}
	stdout, stderr, code := gitk8s(t, append([]string{"apply"}, flags...)...)
	outputs = append(outputs, stdout, stderr)
	if code == exitOK || !strings.Contains(stderr, "shop/Chart.lock") || !strings.Contains(stderr, "--helm-repo") {
		t.Errorf("apply without the repository allowed: exit %d, want a failure naming shop/Chart.lock and --helm-repo\n%s\n%s", code, stdout, stderr)
	}
	client := env.Client(t, "")
	if _, err := client.AppsV1().Deployments(ns).Get(context.Background(), "deps-shop", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a failed fetch applied the chart anyway: %v", err)
	}

	t.Setenv("GITK8S_HELM_USERNAME", user)
	t.Setenv("GITK8S_HELM_PASSWORD", password)
	stdout, stderr, code = gitk8s(t, append([]string{"apply", "--helm-repo", repo.URL}, flags...)...)
	outputs = append(outputs, stdout, stderr)
	if code != exitOK {
		t.Fatalf("apply --helm-repo: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if _, err := client.AppsV1().StatefulSets(ns).Get(context.Background(), "deps-cache", metav1.GetOptions{}); err != nil {
		t.Errorf("the fetched dependency's StatefulSet: %v", err)
	}

	// The daemon reads the credentials from a Secret in its namespace.
	secretName := "chart-repo-" + ns
	daemonSecret(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: secretName},
		Data: map[string][]byte{"username": []byte(user), "password": []byte(password)}})
	name := "deps-" + ns
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
    helm: {releaseName: daemon}
    chartRepositories:
    - url: %s
      auth: {secretRef: {name: %s}}
  clusters: [local]
  namespace: %s
  policies: {skip: true}
`, env.Contexts[0], env.Kubeconfig, name, srv.URL, repo.URL, secretName, ns))
	t.Setenv("GITK8S_HELM_USERNAME", "")
	t.Setenv("GITK8S_HELM_PASSWORD", "")
	stdout, stderr, code = gitk8s(t, "diff", "--config", configPath, "--sync", name, srv.Work)
	outputs = append(outputs, stdout, stderr)
	if !strings.Contains(stdout, "daemon-cache") {
		t.Errorf("the daemon's prediction does not show the fetched dependency (exit %d):\n%s\n%s", code, stdout, stderr)
	}
	if err := d.Reconcile(context.Background(), cfg.Syncs[0]); err != nil {
		t.Fatal(err)
	}
	st := statusOf(t, d, name)
	outputs = append(outputs, st.LastError, fmt.Sprint(st))
	if r := st.Condition("Ready").Reason; r != string(reconcile.Succeeded) {
		t.Fatalf("daemon: %s: %s", r, st.LastError)
	}
	if _, err := client.AppsV1().StatefulSets(ns).Get(context.Background(), "daemon-cache", metav1.GetOptions{}); err != nil {
		t.Errorf("the daemon's fetched dependency: %v", err)
	}
	// The repository goes away: the next reconcile is SourceUnavailable,
	// and what was applied stays.
	repo.Close()
	srv.Commit(t, map[string]string{"shop/values.yaml": files["shop/values.yaml"] + "\n# a new revision\n"})
	_ = d.Reconcile(context.Background(), cfg.Syncs[0])
	st = statusOf(t, d, name)
	outputs = append(outputs, st.LastError, fmt.Sprint(st))
	if r := st.Condition("Ready").Reason; r != string(reconcile.SourceUnavailable) || !strings.Contains(st.LastError, "shop/Chart.lock") {
		t.Errorf("with the chart repository down: %s: %s; want SourceUnavailable naming shop/Chart.lock", r, st.LastError)
	}
	if _, err := client.AppsV1().StatefulSets(ns).Get(context.Background(), "daemon-cache", metav1.GetOptions{}); err != nil {
		t.Errorf("a failed fetch removed what was applied: %v", err)
	}
	for _, out := range outputs {
		if strings.Contains(out, password) {
			t.Errorf("an output holds the repository's password:\n%s", out)
		}
	}
}

// daemonSecret creates a Secret of the daemon's namespace (made if it is
// missing) for the test, deleted when it ends.
func daemonSecret(t *testing.T, s *corev1.Secret) {
	t.Helper()
	client := env.Client(t, "")
	if _, err := client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: daemon.HomeNamespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	s.Namespace = daemon.HomeNamespace
	if _, err := client.CoreV1().Secrets(daemon.HomeNamespace).Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = client.CoreV1().Secrets(daemon.HomeNamespace).Delete(context.Background(), s.Name, metav1.DeleteOptions{})
	})
}
