package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gitk8s/gitk8s/internal/controlplane"
	"github.com/gitk8s/gitk8s/internal/testenv"
)

// hookJob is a Job hook with the given annotations; fails makes its pod
// fail (the local cluster's kwok stage for FailsLabel).
func hookJob(ns, name, annotations string, fails bool) string {
	meta := "name: " + name
	if strings.HasSuffix(name, "-") {
		meta = "generateName: " + name
	}
	labels := "{}"
	if fails {
		labels = fmt.Sprintf("{%q: \"true\"}", controlplane.FailsLabel)
	}
	return fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata:
  %s
  namespace: %s
  annotations: {%s}
spec:
  backoffLimit: 0
  template:
    metadata: {labels: %s}
    spec:
      restartPolicy: Never
      containers: [{name: run, image: busybox}]
`, meta, ns, annotations, labels)
}

// TestSyncHooks runs hooks on the control plane with each family of
// annotations: an Argo CD PreSync Job with generateName deleted once it
// succeeded, a Helm post-install Job kept, a gitk8s Sync hook; then a
// PreSync Job that fails, which stops the revision with nothing else
// written and runs the SyncFail hook. Hooks are never in the inventory:
// a prune of a source without them leaves them.
func TestSyncHooks(t *testing.T) {
	ns := env.Namespace(t)
	jobs := env.Client(t, "").BatchV1().Jobs(ns)
	dir := testenv.WriteFiles(t, map[string]string{
		"app.yaml":      configMap(ns, "app", "1"),
		"presync.yaml":  hookJob(ns, "migrate-", `argocd.argoproj.io/hook: PreSync, argocd.argoproj.io/hook-delete-policy: HookSucceeded`, false),
		"postsync.yaml": hookJob(ns, "notify", `helm.sh/hook: "post-install,post-upgrade", helm.sh/hook-weight: "5"`, false),
		"sync.yaml":     strings.Replace(configMap(ns, "sync-marker", "1"), "metadata: {", "metadata: {annotations: {gitk8s.io/hook: Sync}, ", 1),
	})
	// A diff runs no hook and lists every one, for the reviewer.
	stdout, stderr, code := gitk8s(t, "diff", dir, "--sync", "hooks-"+ns, "--prune", "--no-policy")
	for _, want := range []string{
		"hook PreSync Job/" + ns + "/migrate- (presync.yaml:1): runs on apply, not diffed",
		"hook PostSync Job/" + ns + "/notify (postsync.yaml:1): runs on apply, not diffed",
		"hook Sync ConfigMap/" + ns + "/sync-marker (sync.yaml:1): runs on apply, not diffed",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("diff does not say %q (exit %d):\n%s\n%s", want, code, stdout, stderr)
		}
	}
	stdout, _, _ = gitk8s(t, "diff", dir, "--sync", "hooks-"+ns, "--prune", "--no-policy", "-o", "markdown")
	if !strings.Contains(stdout, "#### Sync hooks an apply of this revision runs (not diffed)") || !strings.Contains(stdout, "Job/"+ns+"/migrate-") {
		t.Errorf("the markdown diff does not list the hooks:\n%s", stdout)
	}
	if list, _ := jobs.List(context.Background(), metav1.ListOptions{}); len(list.Items) != 0 {
		t.Errorf("a diff created %d Jobs", len(list.Items))
	}
	stdout, stderr, code = gitk8s(t, "apply", dir, "--sync", "hooks-"+ns, "--prune", "--no-policy")
	if code != exitOK {
		t.Fatalf("apply with hooks: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{
		"hook PreSync Job/" + ns + "/migrate-",
		"hook Sync ConfigMap/" + ns + "/sync-marker: succeeded",
		"hook PostSync Job/" + ns + "/notify: succeeded\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("apply output does not say %q:\n%s", want, stdout)
		}
	}
	if i, j := strings.Index(stdout, "hook PreSync"), strings.Index(stdout, "hook PostSync"); i < 0 || j < i {
		t.Errorf("PreSync does not come before PostSync:\n%s", stdout)
	}
	if !strings.Contains(stdout, "succeeded, deleted") {
		t.Errorf("the HookSucceeded Job is not said to be deleted:\n%s", stdout)
	}
	list, err := jobs.List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, j := range list.Items {
		if j.DeletionTimestamp == nil {
			left = append(left, j.Name)
		}
	}
	if strings.Join(left, ",") != "notify" {
		t.Errorf("Jobs left: %v, want only notify (migrate-… deleted as it succeeded)", left)
	}
	if !exists(t, "configmap", ns, "app") || !exists(t, "configmap", ns, "sync-marker") {
		t.Error("the ConfigMap or the Sync hook is missing")
	}

	// The hooks are in no inventory: pruning a source without them
	// leaves them, while the ConfigMap it no longer has goes.
	bare := testenv.WriteFiles(t, map[string]string{"other.yaml": configMap(ns, "other", "1")})
	if stdout, stderr, code := gitk8s(t, "apply", bare, "--sync", "hooks-"+ns, "--prune", "--allow-destructive-prune", "--no-policy"); code != exitOK {
		t.Fatalf("apply without hooks: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if exists(t, "configmap", ns, "app") {
		t.Error("the ConfigMap no longer rendered was not pruned")
	}
	if !exists(t, "job", ns, "notify") || !exists(t, "configmap", ns, "sync-marker") {
		t.Error("a prune deleted a hook")
	}

	// A PreSync hook that fails stops the revision before anything else
	// is written; the SyncFail hook runs.
	failing := testenv.WriteFiles(t, map[string]string{
		"new.yaml":      configMap(ns, "after-presync", "1"),
		"presync.yaml":  hookJob(ns, "check", `gitk8s.io/hook: PreSync`, true),
		"syncfail.yaml": strings.Replace(configMap(ns, "sync-failed", "1"), "metadata: {", "metadata: {annotations: {gitk8s.io/hook: SyncFail}, ", 1),
	})
	stdout, stderr, code = gitk8s(t, "apply", failing, "--sync", "hooks-"+ns, "--prune", "--allow-destructive-prune", "--no-policy")
	if code != exitFailed || !strings.Contains(stderr, "PreSync hook Job/"+ns+"/check (presync.yaml:1) failed: the Job failed") || !strings.Contains(stderr, "nothing else was written") {
		t.Errorf("apply with a failing PreSync hook: exit %d, want 1 naming the hook\n%s\n%s", code, stdout, stderr)
	}
	if exists(t, "configmap", ns, "after-presync") {
		t.Error("an object was written after its PreSync hook failed")
	}
	if !exists(t, "configmap", ns, "other") {
		t.Error("a failed PreSync hook let the prune run")
	}
	if !exists(t, "configmap", ns, "sync-failed") || !strings.Contains(stdout, "hook SyncFail ConfigMap/"+ns+"/sync-failed: succeeded") {
		t.Errorf("the SyncFail hook did not run:\n%s", stdout)
	}
}

// TestSyncHooksRunOncePerRevision: applying the same commit again runs
// no hook (a reconcile of an unchanged revision must not rerun a
// migration); a new commit runs them again.
func TestSyncHooksRunOncePerRevision(t *testing.T) {
	ns := env.Namespace(t)
	marker := strings.Replace(configMap(ns, "ran-", "1"), "metadata: {name: ran-,", "metadata: {generateName: ran-, annotations: {gitk8s.io/hook: PostSync},", 1)
	repo := testenv.WriteFiles(t, map[string]string{
		"app.yaml":  configMap(ns, "app", "1"),
		"hook.yaml": marker,
	})
	testenv.Git(t, repo, "init", "-q", "-b", "main")
	testenv.Git(t, repo, "add", "-A")
	testenv.Git(t, repo, "commit", "-q", "-m", "one")
	hooksRun := func() int {
		t.Helper()
		stdout, stderr, code := gitk8s(t, "apply", repo, "--sync", "once-"+ns, "--no-policy")
		if code != exitOK {
			t.Fatalf("apply: exit %d\n%s\n%s", code, stdout, stderr)
		}
		return strings.Count(stdout, "hook PostSync")
	}
	countMarkers := func() int {
		list, err := env.Client(t, "").CoreV1().ConfigMaps(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, cm := range list.Items {
			if strings.HasPrefix(cm.Name, "ran-") {
				n++
			}
		}
		return n
	}
	if n := hooksRun(); n != 1 {
		t.Errorf("first apply ran %d PostSync hooks, want 1", n)
	}
	if n := hooksRun(); n != 0 {
		t.Errorf("the same revision again ran %d hooks, want 0", n)
	}
	writeFile(t, filepath.Join(repo, "app.yaml"), configMap(ns, "app", "2"))
	testenv.Git(t, repo, "commit", "-q", "-am", "two")
	if n := hooksRun(); n != 1 {
		t.Errorf("a new revision ran %d hooks, want 1", n)
	}
	if n := countMarkers(); n != 2 {
		t.Errorf("%d hook objects made by generateName, want 2 (one per revision)", n)
	}
}

// TestHookPassesThePolicyGate: a hook is written to the cluster like any
// object, so the policy gate checks it, and a PreSync hook that grants
// cluster-admin to anonymous users is refused with nothing created.
func TestHookPassesThePolicyGate(t *testing.T) {
	ns := env.Namespace(t)
	dir := testenv.WriteFiles(t, map[string]string{
		"app.yaml": configMap(ns, "gated", "1"),
		"grant.yaml": `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: hook-grant-` + ns + `
  annotations: {gitk8s.io/hook: PreSync}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: User, name: "system:anonymous", apiGroup: rbac.authorization.k8s.io}]
`,
	})
	stdout, stderr, code := gitk8s(t, "apply", dir, "--sync", "gated-"+ns)
	if code != exitFailed || !strings.Contains(stderr, "rbac-cluster-admin-binding") || strings.Contains(stdout, "hook PreSync") {
		t.Errorf("apply with a hook that breaks a policy: exit %d, want 1 naming the rule and no hook run\n%s\n%s", code, stdout, stderr)
	}
	if exists(t, "clusterrolebinding", "", "hook-grant-"+ns) || exists(t, "configmap", ns, "gated") {
		t.Error("a blocked sync wrote its hook or its objects")
	}
}

// TestPostSyncWaitsForHealth: PostSync runs after the last wave is
// healthy, so a sync with a PostSync hook waits for its objects even
// without --wait; one whose objects never become healthy runs SyncFail
// instead.
func TestPostSyncWaitsForHealth(t *testing.T) {
	ns := env.Namespace(t)
	post := hookJob(ns, "after-", `gitk8s.io/hook: PostSync, gitk8s.io/hook-delete-policy: HookSucceeded`, false)
	dir := testenv.WriteFiles(t, map[string]string{
		"web.yaml":  deployment(ns, "web", 1, ""),
		"post.yaml": post,
	})
	stdout, stderr, code := gitk8s(t, "apply", dir, "--sync", "post-"+ns, "--no-policy", "-o", "json")
	if code != exitOK {
		t.Fatalf("apply: exit %d\n%s\n%s", code, stdout, stderr)
	}
	var report applyReport
	if err := json.Unmarshal([]byte(stdout), &report); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	cr := report.Clusters[0]
	if len(cr.Objects) != 1 || cr.Objects[0].Health != "Current" {
		t.Errorf("the Deployment was not waited for before PostSync: %+v", cr.Objects)
	}
	if len(cr.Hooks) != 1 || cr.Hooks[0].Phase != "PostSync" || !cr.Hooks[0].Succeeded {
		t.Errorf("hooks %+v, want the PostSync Job succeeded", cr.Hooks)
	}

	never := testenv.WriteFiles(t, map[string]string{
		"web.yaml":  deployment(ns, "stuck", 1, ", "+controlplane.NeverReadyLabel+`: "true"`),
		"post.yaml": post,
		"fail.yaml": strings.Replace(configMap(ns, "failed-", "1"), "metadata: {name: failed-,", "metadata: {generateName: failed-, annotations: {gitk8s.io/hook: SyncFail},", 1),
	})
	stdout, stderr, code = gitk8s(t, "apply", never, "--sync", "post-"+ns, "--no-policy", "--wait", "3s")
	if code != exitFailed || strings.Contains(stdout, "hook PostSync") || !strings.Contains(stdout, "hook SyncFail ConfigMap/"+ns+"/failed-") {
		t.Errorf("apply of a Deployment that never becomes ready: exit %d, want 1 with SyncFail and no PostSync\n%s\n%s", code, stdout, stderr)
	}
}
