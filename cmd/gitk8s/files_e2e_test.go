package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/testenv"
)

// TestSourcesAsKubectlTakesThem: SRC may be one file, several files or -
// for standard input, as kubectl apply -f takes them, and a folder of a
// Git work tree may use ../base, as kubectl kustomize finds it.
func TestSourcesAsKubectlTakesThem(t *testing.T) {
	ns := env.Namespace(t)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	writeFile(t, a, configMap(ns, "file-a", "1"))
	writeFile(t, b, configMap(ns, "file-b", "1"))

	if stdout, stderr, code := gitk8s(t, "validate", a); code != exitOK || !strings.Contains(stdout, "1 objects") {
		t.Errorf("validate a file: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if stdout, stderr, code := gitk8s(t, "apply", a, b, "--no-policy"); code != exitOK {
		t.Fatalf("apply two files: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, name := range []string{"file-a", "file-b"} {
		if !exists(t, "configmap", ns, name) {
			t.Errorf("%s was not applied", name)
		}
	}
	// Two files are one sync of their own, named after the first.
	secrets := env.Client(t, "").CoreV1().Secrets(apply.DefaultInventoryNamespace)
	if _, err := secrets.Get(context.Background(), "gitk8s-a-and-1-more", metav1.GetOptions{}); err != nil {
		t.Errorf("the inventory of a.yaml b.yaml: %v", err)
	}
	t.Cleanup(func() {
		for _, inv := range []string{"gitk8s-a-and-1-more", "gitk8s-stdin-" + ns} {
			_ = secrets.Delete(context.Background(), inv, metav1.DeleteOptions{})
		}
	})

	stdinReader = strings.NewReader(configMap(ns, "from-stdin", "1"))
	defer func() { stdinReader = os.Stdin }()
	if stdout, stderr, code := gitk8s(t, "apply", "-", "--prune", "--no-policy"); code != exitError || !strings.Contains(stderr, "--prune with SRC - needs --sync NAME") {
		t.Errorf("apply - --prune without --sync: exit %d, want 2 naming --sync\n%s\n%s", code, stdout, stderr)
	}
	if stdout, stderr, code := gitk8s(t, "apply", "-", "--sync", "stdin-"+ns, "--prune", "--no-policy"); code != exitOK {
		t.Fatalf("apply -: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if !exists(t, "configmap", ns, "from-stdin") {
		t.Error("the object from standard input was not applied")
	}

	repo := testenv.WriteFiles(t, map[string]string{
		"base/kustomization.yaml":           "resources: [cm.yaml]\n",
		"base/cm.yaml":                      configMap(ns, "base", "1"),
		"overlays/prod/kustomization.yaml":  "resources: [../../base]\nnameSuffix: -prod\n",
		"overlays/leaky/kustomization.yaml": "resources: [../../../outside]\n",
	})
	testenv.Git(t, repo, "init", "-q", "-b", "main")
	stdout, stderr, code := gitk8s(t, "render", filepath.Join(repo, "overlays", "prod"))
	if code != exitOK || !strings.Contains(stdout, "name: base-prod") {
		t.Errorf("render an overlay of a work tree: exit %d\n%s\n%s", code, stdout, stderr)
	}
	top, _ := filepath.EvalSymlinks(repo)
	outside := filepath.Join(filepath.Dir(repo), "outside")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(outside, "kustomization.yaml"), "resources: [cm.yaml]\n")
	writeFile(t, filepath.Join(outside, "cm.yaml"), configMap(ns, "outside", "1"))
	stdout, stderr, code = gitk8s(t, "render", filepath.Join(repo, "overlays", "leaky"))
	if code != exitError || !strings.Contains(stderr, "overlays/leaky/kustomization.yaml") || !strings.Contains(stderr, top) {
		t.Errorf("render a base outside the work tree: exit %d, want 2 naming the kustomization and the work tree %s\n%s\n%s", code, top, stdout, stderr)
	}
}

// TestToolFilesBesideManifests: the files of other tools in a folder of
// manifests are left out with a note naming them, and named one by one
// as SRC they are refused for what they are; nothing is applied.
func TestToolFilesBesideManifests(t *testing.T) {
	ns := env.Namespace(t)
	dir := testenv.WriteFiles(t, map[string]string{
		"cm.yaml":       configMap(ns, "beside-tools", "1"),
		"values.yaml":   "replicaCount: 2\n",
		"skaffold.yaml": "apiVersion: skaffold/v4beta6\nkind: Config\nmetadata: {name: app}\n",
	})
	stdout, stderr, code := gitk8s(t, "validate", dir)
	if code != exitOK || !strings.Contains(stdout, "1 objects") ||
		!strings.Contains(stderr, "note: values.yaml is a file of Helm values, not Kubernetes objects; left out") ||
		!strings.Contains(stderr, "note: skaffold.yaml is a Skaffold configuration, not Kubernetes objects; left out") {
		t.Errorf("validate a folder with tool files: exit %d\n%s\n%s", code, stdout, stderr)
	}
	stdout, stderr, code = gitk8s(t, "apply", filepath.Join(dir, "cm.yaml"), filepath.Join(dir, "values.yaml"), "--no-policy")
	if code != exitError || !strings.Contains(stderr, "values.yaml: this is a file of Helm values, not Kubernetes objects") || strings.Contains(stderr, "apiVersion and kind missing") {
		t.Errorf("apply cm.yaml values.yaml: exit %d, want 2 naming the values file\n%s\n%s", code, stdout, stderr)
	}
	if exists(t, "configmap", ns, "beside-tools") {
		t.Error("a refused apply wrote the ConfigMap")
	}
}
