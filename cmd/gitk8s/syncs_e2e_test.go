package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/gitk8s/gitk8s/internal/daemon"
	"github.com/gitk8s/gitk8s/internal/testenv"
)

// TestReconcileCommand asks a running daemon, through gitk8s reconcile, to
// reconcile a Sync now: it heals a change made by hand although the Sync's
// interval is an hour and Git has not moved, and the command waits for it
// and reports Ready. A Sync that does not exist is an error; gitk8s
// convert prints the configuration's syncs as Syncs.
func TestReconcileCommand(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"apply", "--server-side", "-f", filepath.Join(root, "deploy", "05-crds.yaml")},
		{"wait", "--for=condition=Established", "--timeout=60s", "crd/syncs.gitk8s.io"},
	} {
		if out, err := exec.Command(env.Kubectl(), append([]string{"--kubeconfig", env.Kubeconfig}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
	}
	ns := env.Namespace(t)
	srv := testenv.NewGitServer(t)
	srv.Commit(t, map[string]string{"cm.yaml": fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: %s}\ndata: {value: one}\n", ns)})
	configFile := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(configFile, []byte(fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: %s, path: %s}}
syncs:
- name: file-sync
  source: {url: %q}
  clusters: [local]
  inventory: {name: file-sync-%s}
syncResources: {enabled: true, namespaces: [%s]}
`, env.Contexts[0], env.Kubeconfig, srv.URL, ns, ns)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := daemon.LoadConfig(configFile)
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(cfg, daemon.Options{GitCacheDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; d.Close() })

	syncs := env.Target(t, "").Dynamic.Resource(daemon.SyncGVR).Namespace(ns)
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(fmt.Sprintf("apiVersion: gitk8s.io/v1alpha1\nkind: Sync\nmetadata: {name: app}\nspec:\n  source: {url: %q, interval: 1h}\n  inventory: {name: app-inventory}\n", srv.URL)), &u.Object); err != nil {
		t.Fatal(err)
	}
	if _, err := syncs.Create(context.Background(), u, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = syncs.Patch(context.Background(), "app", types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
	})
	client := env.Client(t, "")
	value := func() string {
		cm, err := client.CoreV1().ConfigMaps(ns).Get(context.Background(), "settings", metav1.GetOptions{})
		if err != nil {
			return ""
		}
		return cm.Data["value"]
	}
	testenv.Within(t, "the Sync's first apply", 60*time.Second, func() bool { return value() == "one" })
	// Drift watches would heal this too; a reconcile request must not wait
	// for them, and must apply although Git has not moved.
	if _, err := client.CoreV1().ConfigMaps(ns).Patch(context.Background(), "settings", types.MergePatchType, []byte(`{"data":{"value":"edited"}}`), metav1.PatchOptions{FieldManager: "someone"}); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := gitk8s(t, "reconcile", "app", "-n", ns, "--timeout", "60s")
	if code != exitOK || !strings.Contains(stdout, "Ready=True Succeeded") {
		t.Fatalf("reconcile: exit %d\n%s%s", code, stdout, stderr)
	}
	if got := value(); got != "one" {
		t.Errorf("after the reconcile, value %q", got)
	}
	_, stderr, code = gitk8s(t, "reconcile", "missing", "-n", ns, "--timeout", "5s")
	if code != exitError || !strings.Contains(stderr, "Sync "+ns+"/missing") || !strings.Contains(stderr, "not found") {
		t.Errorf("a missing Sync: exit %d, %s", code, stderr)
	}

	stdout, stderr, code = gitk8s(t, "convert", "--config", configFile)
	if code != exitOK || !strings.Contains(stdout, "kind: Sync") || !strings.Contains(stdout, "name: file-sync-"+ns) {
		t.Errorf("convert: exit %d\n%s%s", code, stdout, stderr)
	}
}
