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

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/gitk8s/gitk8s/internal/controlplane"
	"github.com/gitk8s/gitk8s/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env, 3) }

// gitk8s runs the command line against the test control plane.
func gitk8s(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	args = append(args, "--kubeconfig", env.Kubeconfig)
	code = run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), code
}

// gitRepo copies dir into a new Git repository with one commit and returns
// the repository and the commit.
func gitRepo(t *testing.T, dir string) (repo, commit string) {
	t.Helper()
	repo = t.TempDir()
	if err := os.CopyFS(repo, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	testenv.Git(t, repo, "init", "-q", "-b", "main")
	testenv.Git(t, repo, "add", ".")
	testenv.Git(t, repo, "commit", "-q", "-m", "manifests")
	return repo, testenv.Git(t, repo, "rev-parse", "HEAD")
}

func decodeReport(t *testing.T, stdout string) applyReport {
	t.Helper()
	var report applyReport
	if err := json.Unmarshal([]byte(stdout), &report); err != nil {
		t.Fatalf("apply -o json: %v\n%s", err, stdout)
	}
	if len(report.Clusters) != 1 {
		t.Fatalf("want 1 cluster in the report, got %d", len(report.Clusters))
	}
	return report
}

// TestApplyCourse applies examples/course from a Git repository: every
// object is created by field manager gitk8s and becomes healthy; a second
// apply changes nothing.
func TestApplyCourse(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	repo, commit := gitRepo(t, filepath.Join(root, "examples", "course"))

	stdout, stderr, code := gitk8s(t, "apply", repo, "--wait", "2m", "-o", "json")
	if code != exitOK {
		t.Fatalf("first apply: exit %d\n%s\n%s", code, stdout, stderr)
	}
	report := decodeReport(t, stdout)
	if report.Revision != commit {
		t.Errorf("revision %q, want %q", report.Revision, commit)
	}
	objects := report.Clusters[0].Objects
	if len(objects) < 30 {
		t.Fatalf("only %d objects applied", len(objects))
	}
	target := env.Target(t, "")
	for _, o := range objects {
		if o.Action != "created" {
			t.Errorf("%s/%s/%s: action %s, want created", o.Kind, o.Namespace, o.Name, o.Action)
		}
		if o.Health != "Current" {
			t.Errorf("%s/%s/%s: health %q (%s), want Current", o.Kind, o.Namespace, o.Name, o.Health, o.Message)
		}
		mapping, err := target.Mapper.RESTMapping(schema.GroupKind{Group: o.Group, Kind: o.Kind})
		if err != nil {
			t.Fatal(err)
		}
		live, err := target.Dynamic.Resource(mapping.Resource).Namespace(o.Namespace).Get(context.Background(), o.Name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("%s/%s/%s: %v", o.Kind, o.Namespace, o.Name, err)
			continue
		}
		if !appliedBy(live.GetManagedFields(), "gitk8s") {
			t.Errorf("%s/%s/%s: no server-side apply entry of manager gitk8s in managedFields", o.Kind, o.Namespace, o.Name)
		}
	}

	stdout, stderr, code = gitk8s(t, "apply", repo, "--wait", "1m", "-o", "json")
	if code != exitOK {
		t.Fatalf("second apply: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, o := range decodeReport(t, stdout).Clusters[0].Objects {
		if o.Action != "unchanged" {
			t.Errorf("second apply: %s/%s/%s: action %s, want unchanged", o.Kind, o.Namespace, o.Name, o.Action)
		}
	}
}

func appliedBy(fields []metav1.ManagedFieldsEntry, manager string) bool {
	for _, f := range fields {
		if f.Manager == manager && f.Operation == metav1.ManagedFieldsOperationApply {
			return true
		}
	}
	return false
}

// TestApplyInvalidFieldWritesNothing: one invalid object stops the whole
// apply before the first write.
func TestApplyInvalidFieldWritesNothing(t *testing.T) {
	ns := env.Namespace(t)
	dir := testenv.WriteFiles(t, map[string]string{
		"a-config.yaml": fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: %s}\ndata: {a: b}\n", ns),
		"b-app.yaml": fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: web, namespace: %[1]s}
spec:
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: %[1]s}
spec:
  replicas: -1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx}]
`, ns),
	})
	stdout, stderr, code := gitk8s(t, "apply", dir)
	if code != exitFailed {
		t.Fatalf("exit %d, want %d\n%s\n%s", code, exitFailed, stdout, stderr)
	}
	for _, want := range []string{"b-app.yaml:8: Deployment/" + ns + "/web: dry-run failed", "spec.replicas"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not name %q:\n%s", want, stderr)
		}
	}
	client := env.Client(t, "")
	if _, err := client.CoreV1().ConfigMaps(ns).Get(context.Background(), "settings", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("ConfigMap settings was written (err=%v)", err)
	}
	if _, err := client.CoreV1().Services(ns).Get(context.Background(), "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Service web was written (err=%v)", err)
	}
}

// TestApplyWaitNamesUnhealthyDeployment: pods that never become ready make
// --wait time out with exit 1, naming the Deployment and kstatus's reason.
func TestApplyWaitNamesUnhealthyDeployment(t *testing.T) {
	ns := env.Namespace(t)
	dir := testenv.WriteFiles(t, map[string]string{"stuck.yaml": fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: stuck, namespace: %s}
spec:
  replicas: 2
  selector: {matchLabels: {app: stuck}}
  template:
    metadata:
      labels: {app: stuck, %s: "true"}
    spec:
      containers: [{name: app, image: nginx}]
`, ns, controlplane.NeverReadyLabel)})
	stdout, stderr, code := gitk8s(t, "apply", dir, "--wait", "8s")
	if code != exitFailed {
		t.Fatalf("exit %d, want %d\n%s\n%s", code, exitFailed, stdout, stderr)
	}
	want := "stuck.yaml:1: Deployment/" + ns + "/stuck not healthy: InProgress: "
	if !strings.Contains(stderr, want) {
		t.Errorf("stderr does not contain %q:\n%s", want, stderr)
	}
	if !strings.Contains(stderr, "Available: 0/2") && !strings.Contains(stderr, "minimum availability") {
		t.Errorf("stderr does not give kstatus's reason:\n%s", stderr)
	}
}

// TestApplyDefaultsNamespace: objects without a namespace go to the
// context's namespace.
func TestApplyDefaultsNamespace(t *testing.T) {
	name := "defaulted-" + env.Namespace(t)
	dir := testenv.WriteFiles(t, map[string]string{"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: " + name + "}\n"})
	if stdout, stderr, code := gitk8s(t, "apply", dir); code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	client := env.Client(t, "")
	if _, err := client.CoreV1().ConfigMaps("default").Get(context.Background(), name, metav1.GetOptions{}); err != nil {
		t.Fatalf("ConfigMap not in the context's namespace: %v", err)
	}
	_ = client.CoreV1().ConfigMaps("default").Delete(context.Background(), name, metav1.DeleteOptions{})
}

func TestApplyRejects(t *testing.T) {
	ns := env.Namespace(t)
	unreachable := testenv.WriteFiles(t, map[string]string{"kubeconfig": `apiVersion: v1
kind: Config
clusters: [{name: gone, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: gone, user: {token: x}}]
contexts: [{name: gone, context: {cluster: gone, user: gone}}]
current-context: gone
`})
	cm := fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok, namespace: %s}\n", ns)
	tests := []struct {
		name  string
		files map[string]string
		args  []string
		code  int
		want  []string
	}{{
		name:  "unknown kind",
		files: map[string]string{"cm.yaml": cm, "x.yaml": fmt.Sprintf("apiVersion: example.test/v1\nkind: Widget\nmetadata: {name: w, namespace: %s}\n", ns)},
		code:  exitFailed,
		want:  []string{"x.yaml:1: Widget/" + ns + "/w: kind Widget (apiVersion example.test/v1) is not known to cluster", "install the CustomResourceDefinition"},
	}, {
		name:  "removed apiVersion",
		files: map[string]string{"cm.yaml": cm, "d.yaml": fmt.Sprintf("apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: old, namespace: %s}\nspec: {}\n", ns)},
		code:  exitFailed,
		want:  []string{"d.yaml:1: Deployment/" + ns + "/old: extensions/v1beta1 Deployment was removed in Kubernetes 1.16: use apiVersion apps/v1 (needs spec.selector", "gitk8s migrate"},
	}, {
		name:  "version the cluster does not serve",
		files: map[string]string{"cm.yaml": cm, "d.yaml": fmt.Sprintf("apiVersion: apps/v1beta9\nkind: Deployment\nmetadata: {name: odd, namespace: %s}\nspec: {}\n", ns)},
		code:  exitFailed,
		want:  []string{"d.yaml:1: Deployment/" + ns + "/odd: apiVersion apps/v1beta9 is not served for kind Deployment", "[apps/v1]"},
	}, {
		name:  "namespace neither in the bundle nor in the cluster",
		files: map[string]string{"cm.yaml": cm, "y.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: \"y\", namespace: nowhere-" + ns + "}\n"},
		code:  exitFailed,
		want:  []string{"y.yaml:1: ConfigMap/nowhere-" + ns + "/y: dry-run failed", "not found"},
	}, {
		name:  "render error",
		files: map[string]string{"cm.yaml": cm, "bad.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [\n"},
		code:  exitError,
		want:  []string{"bad.yaml: invalid YAML"},
	}, {
		name:  "unreachable cluster",
		files: map[string]string{"cm.yaml": cm},
		args:  []string{"--kubeconfig", filepath.Join(unreachable, "kubeconfig")},
		code:  exitError,
		want:  []string{"cluster gone (https://127.0.0.1:1) is Offline", "nothing was applied or pruned there"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			args := append([]string{"apply", testenv.WriteFiles(t, tt.files)}, tt.args...)
			if tt.args == nil {
				args = append(args, "--kubeconfig", env.Kubeconfig)
			}
			code := run(context.Background(), args, &out, &errOut)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\n%s\n%s", code, tt.code, out.String(), errOut.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut.String(), w) {
					t.Errorf("stderr does not contain %q:\n%s", w, errOut.String())
				}
			}
			// Nothing was written: the valid ConfigMap of the same run is absent.
			_, err := env.Client(t, "").CoreV1().ConfigMaps(ns).Get(context.Background(), "ok", metav1.GetOptions{})
			if !apierrors.IsNotFound(err) {
				t.Errorf("ConfigMap ok was written (err=%v)", err)
			}
		})
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
