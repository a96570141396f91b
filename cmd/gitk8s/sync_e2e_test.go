package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/testenv"
)

// kubectl runs the control plane's kubectl against the first cluster.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(env.Kubectl(), append([]string{"--kubeconfig", env.Kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// syncDir is a manifest directory with its own inventory and memory, so
// that tests do not share either.
type syncDir struct {
	t         *testing.T
	dir       string
	inventory string
	memory    string
}

func newSyncDir(t *testing.T, files map[string]string) *syncDir {
	t.Helper()
	return &syncDir{t: t, dir: testenv.WriteFiles(t, files), inventory: "inv-" + strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())), memory: t.TempDir()}
}

func (s *syncDir) write(name, content string) {
	if err := os.WriteFile(filepath.Join(s.dir, name), []byte(content), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

func (s *syncDir) remove(name string) {
	if err := os.Remove(filepath.Join(s.dir, name)); err != nil {
		s.t.Fatal(err)
	}
}

// run runs gitk8s verb on the directory with the test's inventory.
func (s *syncDir) run(verb string, args ...string) (stdout, stderr string, code int) {
	s.t.Helper()
	var out, errOut bytes.Buffer
	full := append([]string{verb, s.dir, "--kubeconfig", env.Kubeconfig, "--inventory", s.inventory}, args...)
	os.Setenv("XDG_CACHE_HOME", s.memory)
	code = run(context.Background(), full, &out, &errOut)
	return out.String(), errOut.String(), code
}

func (s *syncDir) mustRun(verb string, wantCode int, args ...string) (stdout, stderr string) {
	s.t.Helper()
	stdout, stderr, code := s.run(verb, args...)
	if code != wantCode {
		s.t.Fatalf("gitk8s %s %v: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", verb, args, code, wantCode, stdout, stderr)
	}
	return stdout, stderr
}

func configMap(ns, name, value string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s, namespace: %s}\ndata: {value: %q}\n", name, ns, value)
}

func deployment(ns, name string, replicas int, extraLabels string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %[2]s, namespace: %[1]s}
spec:
  replicas: %[3]d
  selector: {matchLabels: {app: %[2]s}}
  template:
    metadata: {labels: {app: %[2]s%[4]s}}
    spec:
      containers: [{name: app, image: nginx}]
`, ns, name, replicas, extraLabels)
}

func exists(t *testing.T, resource, ns, name string) bool {
	t.Helper()
	cmd := exec.Command(env.Kubectl(), "--kubeconfig", env.Kubeconfig, "get", resource, name, "-n", ns, "-o", "name")
	out, err := cmd.CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "NotFound") {
			return false
		}
		t.Fatalf("kubectl get %s %s: %v\n%s", resource, name, err, out)
	}
	return true
}

// TestDiffNeverShowsSecretValues changes a Secret and searches every output
// of diff (text, markdown, json) and apply (text, json) for the old and new
// values, plain and base64.
func TestDiffNeverShowsSecretValues(t *testing.T) {
	ns := env.Namespace(t)
	secret := func(password, token string) string {
		return fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: db, namespace: %s}
type: Opaque
data:
  password: %s
stringData:
  token: %s
`, ns, base64.StdEncoding.EncodeToString([]byte(password)), token)
	}
	s := newSyncDir(t, map[string]string{"secret.yaml": secret("first-Pa55word-x1", "tok-alpha-917"), "cm.yaml": configMap(ns, "plain", "visible")})
	values := []string{"first-Pa55word-x1", "tok-alpha-917", "second-Pa55word-y2", "tok-beta-318"}
	var outputs []string
	collect := func(stdout, stderr string) { outputs = append(outputs, stdout, stderr) }

	collect(s.mustRun("diff", exitFailed))
	collect(s.mustRun("apply", exitOK))
	s.write("secret.yaml", secret("second-Pa55word-y2", "tok-beta-318"))
	text, stderr := s.mustRun("diff", exitFailed)
	collect(text, stderr)
	collect(s.mustRun("diff", exitFailed, "-o", "markdown"))
	collect(s.mustRun("diff", exitFailed, "-o", "json"))
	collect(s.mustRun("apply", exitOK, "--dry-run", "-o", "json"))
	collect(s.mustRun("apply", exitOK))

	all := strings.Join(outputs, "\n")
	for _, v := range values {
		for _, form := range []string{v, base64.StdEncoding.EncodeToString([]byte(v))} {
			if strings.Contains(all, form) {
				t.Errorf("output contains the Secret value %q", form)
			}
		}
	}
	if !strings.Contains(text, "~ Secret/"+ns+"/db (configured)") || !strings.Contains(text, "password: '<secret #") {
		t.Errorf("the diff does not show the masked change:\n%s", text)
	}
	// Both the password and the token changed: two masks leave, two arrive,
	// and no mask is on both sides.
	var minus, plus []string
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "-  ") && strings.Contains(line, "<secret #") {
			minus = append(minus, line[1:])
		}
		if strings.HasPrefix(line, "+  ") && strings.Contains(line, "<secret #") {
			plus = append(plus, line[1:])
		}
	}
	if len(minus) != 2 || len(plus) != 2 {
		t.Errorf("want two masked values out and two in, got -%v +%v", minus, plus)
	}
	for _, m := range minus {
		for _, p := range plus {
			if m == p {
				t.Errorf("a changed value kept its mask: %s", m)
			}
		}
	}
	if _, _, code := s.run("diff"); code != exitOK {
		t.Errorf("diff after apply: exit %d, want 0", code)
	}
}

// TestDiffAgainstRefNeedsNoCluster compares two revisions of a repository
// with a kubeconfig that points nowhere.
func TestDiffAgainstRefNeedsNoCluster(t *testing.T) {
	dir := testenv.WriteFiles(t, map[string]string{
		"a.yaml": configMap("shop", "a", "one"),
		"b.yaml": configMap("shop", "b", "gone-soon"),
	})
	repo, first := gitRepo(t, dir)
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(repo, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", configMap("shop", "a", "two"))
	write("c.yaml", configMap("shop", "c", "new"))
	if err := os.Remove(filepath.Join(repo, "b.yaml")); err != nil {
		t.Fatal(err)
	}
	testenv.Git(t, repo, "add", "-A")
	testenv.Git(t, repo, "commit", "-qm", "second")
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"diff", repo, "--against-ref", first, "--kubeconfig", "/nonexistent", "--color", "never"}, &out, &errOut)
	if code != exitFailed {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
	for _, want := range []string{"~ ConfigMap/shop/a (configured)", `-  value: one`, `+  value: two`, "+ ConfigMap/shop/c (created)", "- ConfigMap/shop/b (pruned)", "1 to create, 1 to configure, 1 to prune"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("diff lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if code := run(context.Background(), []string{"diff", repo, "--against-ref", "HEAD", "--kubeconfig", "/nonexistent"}, &out, &errOut); code != exitOK {
		t.Errorf("diff against itself: exit %d\n%s", code, out.String())
	}
}

// TestConflictsAreReported: a field someone else set is taken over and
// named, or refused with --force-conflicts=false.
func TestConflictsAreReported(t *testing.T) {
	ns := env.Namespace(t)
	s := newSyncDir(t, map[string]string{"web.yaml": deployment(ns, "web", 1, "")})
	s.mustRun("apply", exitOK)
	kubectl(t, "scale", "deployment/web", "-n", ns, "--replicas=3")

	stdout, _ := s.mustRun("diff", exitFailed)
	if !strings.Contains(stdout, `takes over .spec.replicas: conflict with "kubectl"`) {
		t.Errorf("diff does not name the field and manager:\n%s", stdout)
	}
	_, stderr := s.mustRun("apply", exitFailed, "--force-conflicts=false")
	if !strings.Contains(stderr, "web.yaml:1: Deployment/"+ns+"/web: fields owned by other managers: .spec.replicas") {
		t.Errorf("apply without force does not refuse with the field:\n%s", stderr)
	}
	stdout, _ = s.mustRun("apply", exitOK)
	if !strings.Contains(stdout, "took over .spec.replicas") {
		t.Errorf("apply does not report the takeover:\n%s", stdout)
	}
	dep, err := env.Client(t, "").AppsV1().Deployments(ns).Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *dep.Spec.Replicas != 1 {
		t.Errorf("replicas %d, want Git's 1", *dep.Spec.Replicas)
	}
}

// TestImmutableFieldChange: a changed Deployment selector is named as
// immutable; with gitk8s.io/recreate the Deployment is re-created.
func TestImmutableFieldChange(t *testing.T) {
	ns := env.Namespace(t)
	s := newSyncDir(t, map[string]string{"web.yaml": deployment(ns, "web", 1, "")})
	s.mustRun("apply", exitOK)
	before, err := env.Client(t, "").AppsV1().Deployments(ns).Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(deployment(ns, "web", 1, ", tier: front"), "matchLabels: {app: web}", "matchLabels: {app: web, tier: front}", 1)
	s.write("web.yaml", changed)
	_, stderr := s.mustRun("apply", exitFailed)
	if !strings.Contains(stderr, "spec.selector cannot be changed on the existing object") || !strings.Contains(stderr, apply.AnnotationRecreate) {
		t.Errorf("apply does not name the immutable field and the way out:\n%s", stderr)
	}
	s.write("web.yaml", strings.Replace(changed, "metadata: {name: web, namespace: "+ns+"}", "metadata: {name: web, namespace: "+ns+", annotations: {gitk8s.io/recreate: \"true\"}}", 1))
	stdout, _ := s.mustRun("apply", exitOK, "--wait", "1m")
	if !strings.Contains(stdout, "recreated") {
		t.Errorf("not recreated:\n%s", stdout)
	}
	after, err := env.Client(t, "").AppsV1().Deployments(ns).Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.UID == before.UID || after.Spec.Selector.MatchLabels["tier"] != "front" {
		t.Errorf("Deployment not re-created with the new selector (uid %s → %s, selector %v)", before.UID, after.UID, after.Spec.Selector)
	}
}

// TestPruneAndInventory: removed objects are pruned, and kubectl sees the
// same ApplySet members that gitk8s does.
func TestPruneAndInventory(t *testing.T) {
	ns := env.Namespace(t)
	files := map[string]string{}
	for i := range 6 {
		files[fmt.Sprintf("cm%d.yaml", i)] = configMap(ns, fmt.Sprintf("cm%d", i), "v")
	}
	files["web.yaml"] = deployment(ns, "web", 1, "")
	s := newSyncDir(t, files)
	stdout, _ := s.mustRun("apply", exitOK, "-o", "json")
	id := decodeReport(t, stdout).Clusters[0].Inventory
	if id != apply.ApplySetID(s.inventory, apply.DefaultInventoryNamespace) {
		t.Fatalf("inventory id %q", id)
	}
	// kubectl finds exactly the members by the ApplySet label.
	got := strings.Fields(kubectl(t, "get", "configmaps,deployments", "-n", ns, "-l", apply.LabelPartOf+"="+id, "-o", "name"))
	sort.Strings(got)
	want := []string{"configmap/cm0", "configmap/cm1", "configmap/cm2", "configmap/cm3", "configmap/cm4", "configmap/cm5", "deployment.apps/web"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("kubectl sees members %v, want %v", got, want)
	}
	parent := kubectl(t, "get", "secret", s.inventory, "-n", apply.DefaultInventoryNamespace, "-o", "jsonpath={.metadata.labels.applyset\\.kubernetes\\.io/id} {.metadata.annotations.applyset\\.kubernetes\\.io/contains-group-kinds} {.metadata.annotations.applyset\\.kubernetes\\.io/additional-namespaces}")
	if parent != id+" ConfigMap,Deployment.apps "+ns {
		t.Errorf("parent: %q", parent)
	}

	// One object gone from Git, one kept by annotation.
	s.remove("cm0.yaml")
	s.write("cm1.yaml", strings.Replace(configMap(ns, "cm1", "v"), "namespace: "+ns, "namespace: "+ns+", annotations: {gitk8s.io/prune: disabled}", 1))
	s.mustRun("apply", exitOK)
	s.remove("cm1.yaml")
	stdout, _ = s.mustRun("diff", exitFailed, "--color", "never")
	if !strings.Contains(stdout, "- ConfigMap/"+ns+"/cm0 (pruned)") {
		t.Errorf("diff does not show the prune:\n%s", stdout)
	}
	// Without --prune nothing is deleted.
	s.mustRun("apply", exitOK)
	if !exists(t, "configmap", ns, "cm0") {
		t.Fatal("cm0 deleted without --prune")
	}
	stdout, _ = s.mustRun("apply", exitOK, "--prune")
	if exists(t, "configmap", ns, "cm0") {
		t.Errorf("cm0 not pruned:\n%s", stdout)
	}
	if !exists(t, "configmap", ns, "cm1") {
		t.Errorf("cm1 (prune: disabled) was deleted")
	}
	if !strings.Contains(stdout, "ConfigMap                 "+ns+"  cm1   kept") && !strings.Contains(stdout, "cm1") {
		t.Errorf("cm1 not reported kept:\n%s", stdout)
	}

	// A removed kind leaves the inventory once its last member is pruned.
	s.remove("web.yaml")
	s.mustRun("apply", exitOK, "--prune")
	parent = kubectl(t, "get", "secret", s.inventory, "-n", apply.DefaultInventoryNamespace, "-o", "jsonpath={.metadata.annotations.applyset\\.kubernetes\\.io/contains-group-kinds}")
	if parent != "ConfigMap" {
		t.Errorf("contains-group-kinds after pruning the Deployment: %q", parent)
	}
}

// TestPruneGuards: nothing is deleted after a failure, beyond the share
// limit, or of a destructive kind, unless allowed.
func TestPruneGuards(t *testing.T) {
	ns := env.Namespace(t)
	files := map[string]string{
		"a.yaml": configMap(ns, "a", "v"), "b.yaml": configMap(ns, "b", "v"),
		"c.yaml": configMap(ns, "c", "v"), "d.yaml": configMap(ns, "d", "v"),
		"claim.yaml": fmt.Sprintf("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data, namespace: %s}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n", ns),
	}
	s := newSyncDir(t, files)
	s.mustRun("apply", exitOK)

	// A render error: exit 2, nothing pruned.
	s.remove("a.yaml")
	s.write("broken.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: [\n")
	s.mustRun("apply", exitError, "--prune")
	// An object the API server refuses: exit 1, nothing pruned.
	s.write("broken.yaml", fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata: {name: bad, namespace: %s}\nspec: {type: Nope, ports: [{port: 80}]}\n", ns))
	s.mustRun("apply", exitFailed, "--prune")
	if !exists(t, "configmap", ns, "a") {
		t.Fatal("a pruned after a failed render or plan")
	}
	s.remove("broken.yaml")

	// More than half of the inventory: refused, nothing deleted.
	s.remove("b.yaml")
	s.remove("c.yaml")
	_, stderr := s.mustRun("apply", exitFailed, "--prune")
	if !strings.Contains(stderr, "prune refused: it would delete 3 of the 5 objects") {
		t.Errorf("no share refusal:\n%s", stderr)
	}
	for _, n := range []string{"a", "b", "c"} {
		if !exists(t, "configmap", ns, n) {
			t.Errorf("%s deleted by a refused prune", n)
		}
	}
	s.write("b.yaml", configMap(ns, "b", "v"))
	s.write("c.yaml", configMap(ns, "c", "v"))

	// A PersistentVolumeClaim: refused without --allow-destructive-prune.
	s.remove("claim.yaml")
	_, stderr = s.mustRun("apply", exitFailed, "--prune")
	if !strings.Contains(stderr, "prune refused: it would delete [PersistentVolumeClaim/"+ns+"/data]") {
		t.Errorf("no destructive refusal:\n%s", stderr)
	}
	if !exists(t, "pvc", ns, "data") || !exists(t, "configmap", ns, "a") {
		t.Fatal("a refused prune deleted something")
	}
	s.mustRun("apply", exitOK, "--prune", "--allow-destructive-prune")
	if exists(t, "configmap", ns, "a") {
		t.Error("a not pruned when allowed")
	}
}

// TestPruneThatFailsKeepsTheInventory: an object a finalizer holds is not
// confirmed gone, so it stays in the inventory and is pruned on a later run.
func TestPruneThatFailsKeepsTheInventory(t *testing.T) {
	ns := env.Namespace(t)
	held := fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: held, namespace: %s, finalizers: [example.test/hold]}\n", ns)
	s := newSyncDir(t, map[string]string{"a.yaml": configMap(ns, "a", "v"), "b.yaml": configMap(ns, "b", "v"), "held.yaml": held})
	s.mustRun("apply", exitOK)
	s.remove("held.yaml")
	_, stderr := s.mustRun("apply", exitFailed, "--prune", "--prune-timeout", "2s")
	if !strings.Contains(stderr, "ConfigMap/"+ns+"/held: prune failed, kept in the inventory to retry") || !strings.Contains(stderr, "example.test/hold") {
		t.Errorf("failed prune not reported:\n%s", stderr)
	}
	kinds := kubectl(t, "get", "secret", s.inventory, "-n", apply.DefaultInventoryNamespace, "-o", "jsonpath={.metadata.annotations.applyset\\.kubernetes\\.io/contains-group-kinds}")
	if kinds != "ConfigMap" {
		t.Errorf("inventory kinds %q", kinds)
	}
	kubectl(t, "patch", "configmap", "held", "-n", ns, "--type=merge", "-p", `{"metadata":{"finalizers":null}}`)
	s.mustRun("apply", exitOK, "--prune")
	if exists(t, "configmap", ns, "held") {
		t.Error("held still there after the retry")
	}
}

// TestWavesGateEachOther: wave 1 is not applied while wave 0 is unhealthy.
func TestWavesGateEachOther(t *testing.T) {
	ns := env.Namespace(t)
	stuck := strings.Replace(deployment(ns, "stuck", 1, ", localcluster.gitk8s.io/never-ready: \"true\""), "metadata: {name: stuck, namespace: "+ns+"}", "metadata: {name: stuck, namespace: "+ns+", annotations: {gitk8s.io/wave: \"0\"}}", 1)
	late := strings.Replace(configMap(ns, "late", "v"), "namespace: "+ns, "namespace: "+ns+", annotations: {gitk8s.io/wave: \"1\"}", 1)
	s := newSyncDir(t, map[string]string{"stuck.yaml": stuck, "late.yaml": late})
	stdout, stderr := s.mustRun("apply", exitFailed, "--wait", "5s")
	_ = stdout
	if !strings.Contains(stderr, "wave 0 is not healthy") || !strings.Contains(stderr, "Deployment/"+ns+"/stuck not healthy") {
		t.Errorf("gate failure not reported:\n%s", stderr)
	}
	if _, err := env.Client(t, "").CoreV1().ConfigMaps(ns).Get(context.Background(), "late", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("wave 1 was applied (err=%v)", err)
	}
}

// TestNoOpCostsNothing counts the requests the API server receives: an
// unchanged repository on an unchanged cluster sends no write and no
// dry-run; each object someone changed is detected and re-applied.
func TestNoOpCostsNothing(t *testing.T) {
	ns := env.Namespace(t)
	files := map[string]string{"web.yaml": deployment(ns, "web", 2, ""), "api.yaml": deployment(ns, "api", 1, "")}
	for i := range 10 {
		files[fmt.Sprintf("cm%d.yaml", i)] = strings.Replace(configMap(ns, fmt.Sprintf("cm%d", i), "v"), "metadata: {", "metadata: {labels: {team: a}, ", 1)
	}
	s := newSyncDir(t, files)
	s.mustRun("apply", exitOK, "--wait", "1m")
	time.Sleep(time.Second) // let the controllers finish writing status

	mark := env.MarkAudit(t, "")
	stdout, _ := s.mustRun("apply", exitOK)
	if !strings.Contains(stdout, "12 unchanged") {
		t.Errorf("second apply:\n%s", stdout)
	}
	for _, ev := range mark.Requests(t, "gitk8s") {
		if ev.Verb != "get" && ev.Verb != "list" {
			t.Errorf("no-op apply sent %s %s", ev.Verb, ev.RequestURI)
		}
		if ev.ObjectRef.Namespace == ns && ev.ObjectRef.Name != "" {
			t.Errorf("no-op apply read a single object: %s %s", ev.Verb, ev.RequestURI)
		}
	}

	// Three kinds of drift, each on one object.
	kubectl(t, "scale", "deployment/web", "-n", ns, "--replicas=5")
	kubectl(t, "label", "configmap/cm3", "-n", ns, "team=b", "--overwrite")
	kubectl(t, "patch", "configmap/cm7", "-n", ns, "--type=merge", "-p", `{"data":{"value":"edited"}}`)
	mark = env.MarkAudit(t, "")
	stdout, _ = s.mustRun("apply", exitOK)
	if !strings.Contains(stdout, "3 configured, 9 unchanged") {
		t.Errorf("drift apply:\n%s", stdout)
	}
	patched := map[string]int{}
	for _, ev := range mark.Requests(t, "gitk8s") {
		if ev.Verb == "patch" {
			patched[ev.ObjectRef.Name]++
		}
	}
	for _, name := range []string{"web", "cm3", "cm7"} {
		if patched[name] == 0 {
			t.Errorf("%s was changed by hand but not re-applied", name)
		}
		delete(patched, name)
	}
	if len(patched) > 0 {
		t.Errorf("objects nobody changed were sent: %v", patched)
	}
	cm, err := env.Client(t, "").CoreV1().ConfigMaps(ns).Get(context.Background(), "cm7", metav1.GetOptions{})
	if err != nil || cm.Data["value"] != "v" || cm.Labels["team"] != "a" {
		t.Errorf("cm7 not healed: %v %v", cm, err)
	}
	// Deleting a managed object by hand is drift too.
	kubectl(t, "delete", "configmap/cm5", "-n", ns)
	stdout, _ = s.mustRun("apply", exitOK)
	if !strings.Contains(stdout, "1 created") || !exists(t, "configmap", ns, "cm5") {
		t.Errorf("deleted object not re-created:\n%s", stdout)
	}
}
