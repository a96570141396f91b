package daemon

import (
	"context"
	"fmt"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gitk8s/gitk8s/internal/controlplane"
	"github.com/gitk8s/gitk8s/internal/testenv"
)

// TestDaemonRunsHooksOncePerRevision: reconciles of an unchanged commit
// run no hook again, a new commit runs them, and a PreSync Job that fails
// leaves the sync HookFailed with the revision's other objects unwritten.
func TestDaemonRunsHooksOncePerRevision(t *testing.T) {
	ns := env.Namespace(t)
	srv := testenv.NewGitServer(t)
	cm := func(name, value string) string {
		return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s, namespace: %s}\ndata: {value: %q}\n", name, ns, value)
	}
	marker := fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: ran-, namespace: %s, annotations: {argocd.argoproj.io/hook: PostSync}}\n", ns)
	srv.Commit(t, map[string]string{"app.yaml": cm("app", "1"), "hook.yaml": marker})
	d := newDaemon(t, fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: %s, path: %s}}
syncs:
- name: hooks-%[3]s
  source: {url: %[4]s, ref: {branch: main}}
  clusters: [local]
  policies: {skip: true}
`, env.Contexts[0], env.Kubeconfig, ns, srv.URL))
	markers := func() int {
		t.Helper()
		list, err := env.Client(t, "").CoreV1().ConfigMaps(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, c := range list.Items {
			if strings.HasPrefix(c.Name, "ran-") {
				n++
			}
		}
		return n
	}
	for range 2 {
		if err := d.Reconcile(context.Background(), d.cfg.Syncs[0]); err != nil {
			t.Fatal(err)
		}
	}
	if n := markers(); n != 1 {
		t.Errorf("two reconciles of one commit made %d hook objects, want 1", n)
	}
	srv.Commit(t, map[string]string{"app.yaml": cm("app", "2")})
	if err := d.Reconcile(context.Background(), d.cfg.Syncs[0]); err != nil {
		t.Fatal(err)
	}
	if n := markers(); n != 2 {
		t.Errorf("a new commit made %d hook objects in all, want 2", n)
	}

	failing := fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata: {name: check, namespace: %s, annotations: {helm.sh/hook: pre-upgrade}}
spec:
  backoffLimit: 0
  template:
    metadata: {labels: {%s: "true"}}
    spec:
      restartPolicy: Never
      containers: [{name: run, image: busybox}]
`, ns, controlplane.FailsLabel)
	srv.Commit(t, map[string]string{"app.yaml": cm("app", "3"), "check.yaml": failing})
	_ = d.Reconcile(context.Background(), d.cfg.Syncs[0])
	st := d.statusOf(d.cfg.Syncs[0].Name)
	if r := st.Condition("Ready"); r.Reason != ReasonHookFailed || !strings.Contains(st.LastError, "PreSync hook Job/"+ns+"/check") {
		t.Errorf("Ready %+v, last error %q; want HookFailed naming the hook", r, st.LastError)
	}
	app, err := env.Client(t, "").CoreV1().ConfigMaps(ns).Get(context.Background(), "app", metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	if app.Data["value"] != "2" {
		t.Errorf("app is %q after its PreSync hook failed, want the last good revision's 2", app.Data["value"])
	}
}
