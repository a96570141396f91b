package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/daemon"
	"github.com/gitk8s/gitk8s/internal/policy"
	"github.com/gitk8s/gitk8s/internal/reconcile"
	"github.com/gitk8s/gitk8s/internal/testenv"
)

// daemonFor loads a daemon configuration and makes a daemon of it, for
// the tests that drive the CLI and the daemon on the same sync.
func daemonFor(t *testing.T, config string) (*daemon.Daemon, *daemon.Config, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := daemon.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(cfg, daemon.Options{GitCacheDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d, cfg, path
}

func statusOf(t *testing.T, d *daemon.Daemon, name string) daemon.SyncStatus {
	t.Helper()
	for _, s := range d.Status() {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no status for sync %s", name)
	return daemon.SyncStatus{}
}

// predicted sums a diff report up as the daemon's status counts it: how
// many objects get each action, over every cluster, and the run's reason.
func predicted(report applyReport) (map[string]int, string) {
	counts := map[string]int{}
	reason := string(reconcile.Succeeded)
	for _, cr := range report.Clusters {
		for a, n := range cr.Counts {
			counts[a] += n
		}
		if cr.Reason != string(reconcile.Succeeded) && (reason == string(reconcile.Succeeded) || cr.Reason == string(reconcile.ClusterUnavailable)) {
			reason = cr.Reason
		}
	}
	return counts, reason
}

// unplaced is a ConfigMap without a namespace: the sync's namespace applies.
func unplaced(name, value string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s}\ndata: {value: %q}\n", name, value)
}

func countsText(m map[string]int) string {
	var parts []string
	for k, v := range m {
		if v > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", k, v))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// writesOf is what a report says an apply writes to each cluster, as
// object → action: what it creates, configures, recreates or prunes.
// A cluster the policy gate blocks gets nothing.
func writesOf(report applyReport) map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, cr := range report.Clusters {
		writes := map[string]string{}
		out[cr.Cluster] = writes
		if cr.Blocked {
			continue
		}
		for _, o := range cr.Objects {
			switch apply.Action(o.Action) {
			case apply.Created, apply.Configured, apply.Recreated, apply.Pruned:
				writes[o.ref()] = o.Action
			}
		}
	}
	return out
}

// actionsOf is every object's action in each cluster, as object → action.
func actionsOf(report applyReport) map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, cr := range report.Clusters {
		actions := map[string]string{}
		for _, o := range cr.Objects {
			actions[o.ref()] = o.Action
		}
		out[cr.Cluster] = actions
	}
	return out
}

// refusals is the error a report says the daemon records: a line per
// cluster that refuses the revision, for a policy violation or a prune
// the guard refused.
func refusals(report applyReport) string {
	var lines []string
	for _, cr := range report.Clusters {
		switch {
		case cr.Blocked:
			var found []string
			for _, f := range cr.Findings {
				if f.Severity != policy.Error {
					continue
				}
				where := f.File
				if f.Line > 0 {
					where = fmt.Sprintf("%s:%d", f.File, f.Line)
				}
				found = append(found, fmt.Sprintf("%s: %s: %s: %s", where, f.Rule, f.Object, f.Message))
			}
			lines = append(lines, fmt.Sprintf("cluster %s: policy violations, nothing applied: %s", cr.Cluster, strings.Join(found, "; ")))
		case cr.PruneRefused != "":
			lines = append(lines, fmt.Sprintf("cluster %s: %s", cr.Cluster, cr.PruneRefused))
		}
	}
	return strings.Join(lines, "\n")
}

// auditOf reads, from a cluster's audit log, the requests gitk8s sent
// since the mark, once the log has caught up with every request answered
// before the call.
func auditOf(t *testing.T, kubeContext string, mark testenv.AuditMark) []testenv.AuditEvent {
	t.Helper()
	const agent = "gitk8s-test-audit-mark"
	rc := rest.CopyConfig(env.Target(t, kubeContext).Config)
	rc.UserAgent = agent
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = client.CoreV1().Namespaces().Get(context.Background(), agent, metav1.GetOptions{})
	for deadline := time.Now().Add(10 * time.Second); len(mark.Requests(t, agent)) == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the audit log of %s does not show the marker request", kubeContext)
		}
	}
	var out []testenv.AuditEvent
	for _, ev := range mark.Requests(t, "gitk8s") {
		if ev.UserAgent == "gitk8s" {
			out = append(out, ev)
		}
	}
	return out
}

// isWrite tells a request that changed the cluster: not a read, not a
// dry-run.
func isWrite(ev testenv.AuditEvent) bool {
	switch ev.Verb {
	case "create", "update", "patch", "delete", "deletecollection":
		return !strings.Contains(ev.RequestURI, "dryRun=")
	}
	return false
}

// wrote is what gitk8s's requests did to the objects of namespace ns
// (and to the Namespace itself), as object → action: a write that
// created the object (201) is created, another configured, a delete
// pruned, a delete and a create recreated; a refused write is failed.
func wrote(t *testing.T, events []testenv.AuditEvent, mapper meta.RESTMapper, ns string) map[string]string {
	t.Helper()
	type did struct{ created, changed, deleted, failed bool }
	byObject := map[string]*did{}
	var order []string
	for _, ev := range events {
		o := ev.ObjectRef
		if !isWrite(ev) || o.Resource == "events" || (o.Namespace != ns && (o.Resource != "namespaces" || o.Name != ns)) {
			continue
		}
		gvk, err := mapper.KindFor(schema.GroupVersionResource{Resource: o.Resource})
		if err != nil {
			t.Fatalf("%s %s: %v", ev.Verb, ev.RequestURI, err)
		}
		mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s %s: %v", ev.Verb, ev.RequestURI, err)
		}
		// The audit log gives a Namespace its own name as its namespace.
		ref := gvk.Kind + "/" + o.Name
		if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
			ref = gvk.Kind + "/" + o.Namespace + "/" + o.Name
		}
		d := byObject[ref]
		if d == nil {
			d = &did{}
			byObject[ref] = d
			order = append(order, ref)
		}
		switch code := ev.ResponseStatus.Code; {
		case code >= 300 && !(ev.Verb == "delete" && code == http.StatusNotFound):
			d.failed = true
		case ev.Verb == "delete" || ev.Verb == "deletecollection":
			d.deleted = true
		case code == http.StatusCreated:
			d.created = true
		default:
			d.changed = true
		}
	}
	out := map[string]string{}
	for _, ref := range order {
		d := byObject[ref]
		switch {
		case d.failed:
			out[ref] = string(apply.Failed)
		case d.deleted && d.created:
			out[ref] = string(apply.Recreated)
		case d.deleted:
			out[ref] = string(apply.Pruned)
		case d.created:
			out[ref] = string(apply.Created)
		default:
			out[ref] = string(apply.Configured)
		}
	}
	return out
}

// TestDiffPredictsTheDaemon drives commits through the PR check (gitk8s
// diff --config --sync on the checkout, and apply --dry-run with the same
// flags) and then through the daemon's reconcile of the same sync: the
// predicted change is what the daemon then does, in every cluster. The
// objects the diff says are created, configured, recreated or pruned are
// the objects the daemon's requests created, changed or deleted, as the
// API servers' audit logs show them; the refusals (policy violations, a
// prune the guard refused) are the daemon's error, word for word; the
// federated placements are the daemon's; and the dry runs write nothing.
func TestDiffPredictsTheDaemon(t *testing.T) {
	ns := env.Namespace(t)
	two := env.Contexts[1]
	t.Cleanup(func() {
		_ = env.Client(t, two).CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	srv := testenv.NewGitServer(t)
	name := "predict-" + ns
	d, cfg, configPath := daemonFor(t, fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: one, kubeconfig: {context: %[1]s, path: %[2]s}, labels: {region: eu}}
- {name: two, kubeconfig: {context: %[3]s, path: %[2]s}, labels: {region: us}}
syncs:
- name: %[4]s
  source: {url: %[5]s, ref: {branch: main}, path: deploy}
  clusters: [one, two]
  namespace: %[6]s
  prune: true
  policies: {modes: {probe-liveness-missing: "off", probe-readiness-missing: "off"}}
`, env.Contexts[0], env.Kubeconfig, two, name, srv.URL, ns))
	contexts := map[string]string{"one": env.Contexts[0], "two": two}
	mappers := map[string]meta.RESTMapper{"one": env.Target(t, env.Contexts[0]).Mapper, "two": env.Target(t, two).Mapper}
	marks := func() map[string]testenv.AuditMark {
		m := map[string]testenv.AuditMark{}
		for c, kubeContext := range contexts {
			m[c] = env.MarkAudit(t, kubeContext)
		}
		return m
	}
	fedNamespace := fmt.Sprintf("apiVersion: types.kubefed.io/v1beta1\nkind: FederatedNamespace\nmetadata: {name: %[1]s, namespace: %[1]s}\nspec: {placement: {clusters: [{name: one}, {name: two}]}}\n", ns)
	fedConfigMap := func(clusters string) string {
		return fmt.Sprintf("apiVersion: types.kubefed.io/v1beta1\nkind: FederatedConfigMap\nmetadata: {name: fed, namespace: %s}\nspec:\n  template: {data: {value: v}}\n  placement: {clusters: [%s]}\n", ns, clusters)
	}
	commits := []struct {
		name  string
		files map[string]string
		// wantReason is the reason both faces must give.
		wantReason reconcile.Reason
		// wantWrites are, per cluster, the objects the daemon must write,
		// so that the prediction is known to cover each kind of change.
		wantWrites map[string]map[string]string
		// live checks the clusters after the daemon's reconcile.
		live func(t *testing.T)
	}{
		{name: "first revision", wantReason: reconcile.Succeeded, files: map[string]string{
			"deploy/ns.yaml": fedNamespace, "deploy/a.yaml": unplaced("a", "1"), "deploy/b.yaml": unplaced("b", "1"),
			"deploy/c.yaml": unplaced("c", "1"), "deploy/fed.yaml": fedConfigMap("{name: one}")},
			wantWrites: map[string]map[string]string{
				"one": {"Namespace/" + ns: "configured", "ConfigMap/" + ns + "/a": "created", "ConfigMap/" + ns + "/b": "created", "ConfigMap/" + ns + "/c": "created", "ConfigMap/" + ns + "/fed": "created"},
				"two": {"Namespace/" + ns: "created", "ConfigMap/" + ns + "/a": "created", "ConfigMap/" + ns + "/b": "created", "ConfigMap/" + ns + "/c": "created"},
			},
			live: func(t *testing.T) {
				if !exists(t, "configmap", ns, "b") || !exists(t, "configmap", ns, "fed") {
					t.Error("b or fed missing")
				}
			}},
		{name: "changed, removed and federated objects", wantReason: reconcile.Succeeded, files: map[string]string{
			"deploy/a.yaml": unplaced("a", "2"), "deploy/b.yaml": "", "deploy/fed.yaml": fedConfigMap("{name: one}, {name: two}")},
			wantWrites: map[string]map[string]string{
				"one": {"ConfigMap/" + ns + "/a": "configured", "ConfigMap/" + ns + "/b": "pruned"},
				"two": {"ConfigMap/" + ns + "/a": "configured", "ConfigMap/" + ns + "/b": "pruned", "ConfigMap/" + ns + "/fed": "created"},
			},
			live: func(t *testing.T) {
				if exists(t, "configmap", ns, "b") {
					t.Error("b was not pruned")
				}
				if _, err := env.Client(t, two).CoreV1().ConfigMaps(ns).Get(context.Background(), "fed", metav1.GetOptions{}); err != nil {
					t.Errorf("fed not placed on the second cluster: %v", err)
				}
			}},
		{name: "policy violation", wantReason: reconcile.PolicyViolation, files: map[string]string{
			"deploy/a.yaml":  unplaced("a", "3"),
			"deploy/rb.yaml": "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: admin}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\nsubjects: [{kind: ServiceAccount, name: default}]\n"},
			wantWrites: map[string]map[string]string{"one": {}, "two": {}},
			live: func(t *testing.T) {
				cm, err := env.Client(t, "").CoreV1().ConfigMaps(ns).Get(context.Background(), "a", metav1.GetOptions{})
				if err != nil || cm.Data["value"] != "2" {
					t.Errorf("a was changed by a refused revision: %v %v", cm.Data, err)
				}
			}},
		{name: "prune refused", wantReason: reconcile.PruneRefused, files: map[string]string{
			"deploy/rb.yaml": "", "deploy/a.yaml": "", "deploy/c.yaml": "", "deploy/fed.yaml": ""},
			wantWrites: map[string]map[string]string{"one": {}, "two": {}},
			live: func(t *testing.T) {
				if !exists(t, "configmap", ns, "a") || !exists(t, "configmap", ns, "c") {
					t.Error("a refused prune deleted objects")
				}
			}},
	}
	for _, c := range commits {
		rev := srv.Commit(t, c.files)
		before := marks()
		stdout, stderr, code := gitk8s(t, "diff", "--config", configPath, "--sync", name, srv.Work, "-o", "json")
		if code == exitError && c.wantReason != reconcile.PolicyViolation {
			t.Fatalf("%s: diff failed:\n%s\n%s", c.name, stdout, stderr)
		}
		var report applyReport
		if err := json.Unmarshal([]byte(stdout), &report); err != nil {
			t.Fatalf("%s: diff -o json: %v\n%s", c.name, err, stdout)
		}
		if report.Revision != rev {
			t.Fatalf("%s: diff read %s, want the checkout's %s", c.name, report.Revision, rev)
		}
		wantCounts, wantReason := predicted(report)
		if wantReason != string(c.wantReason) {
			t.Errorf("%s: the diff predicts %s, want %s\n%s", c.name, wantReason, c.wantReason, stderr)
		}
		wantWrites := writesOf(report)
		if diff := cmp.Diff(c.wantWrites, wantWrites); diff != "" {
			t.Errorf("%s: the diff predicts other writes than the test expects (-want +got):\n%s", c.name, diff)
		}

		// apply --dry-run with the daemon's configuration predicts what
		// the diff does.
		stdout, stderr, _ = gitk8s(t, "apply", "--dry-run", "--config", configPath, "--sync", name, srv.Work, "-o", "json")
		var dryRun applyReport
		if err := json.Unmarshal([]byte(stdout), &dryRun); err != nil {
			t.Fatalf("%s: apply --dry-run -o json: %v\n%s\n%s", c.name, err, stdout, stderr)
		}
		if diff := cmp.Diff(actionsOf(report), actionsOf(dryRun)); diff != "" {
			t.Errorf("%s: apply --dry-run plans other actions than diff (-diff +apply --dry-run):\n%s", c.name, diff)
		}
		if _, reason := predicted(dryRun); reason != wantReason || dryRun.Revision != rev {
			t.Errorf("%s: apply --dry-run predicts %s at %s, diff %s at %s", c.name, reason, dryRun.Revision, wantReason, rev)
		}
		if got, want := refusals(dryRun), refusals(report); got != want {
			t.Errorf("%s: apply --dry-run refuses with\n%s\ndiff with\n%s", c.name, got, want)
		}
		if diff := cmp.Diff(report.Federated, dryRun.Federated); diff != "" {
			t.Errorf("%s: apply --dry-run places federated objects otherwise than diff (-diff +apply --dry-run):\n%s", c.name, diff)
		}
		for cl, kubeContext := range contexts {
			for _, ev := range auditOf(t, kubeContext, before[cl]) {
				// Events are not the cluster's objects, and the daemon's of
				// the previous reconcile may arrive late.
				if isWrite(ev) && ev.ObjectRef.Resource != "events" {
					t.Errorf("%s: a dry run wrote to cluster %s: %s %s (%d)", c.name, cl, ev.Verb, ev.RequestURI, ev.ResponseStatus.Code)
				}
			}
		}

		// The daemon does what was predicted.
		before = marks()
		_ = d.Reconcile(context.Background(), cfg.Syncs[0])
		st := statusOf(t, d, name)
		if got := st.Condition("Ready").Reason; got != wantReason {
			t.Errorf("%s: the daemon's reason is %s (%s), the diff predicted %s", c.name, got, st.LastError, wantReason)
		}
		for cl, kubeContext := range contexts {
			got := wrote(t, auditOf(t, kubeContext, before[cl]), mappers[cl], ns)
			if diff := cmp.Diff(wantWrites[cl], got); diff != "" {
				t.Errorf("%s: in cluster %s the daemon wrote otherwise than the diff predicted (-predicted +done):\n%s", c.name, cl, diff)
			}
		}
		if got, want := st.LastError, refusals(report); got != want {
			t.Errorf("%s: the daemon's error is\n%s\nthe diff predicted\n%s", c.name, got, want)
		}
		if diff := cmp.Diff(report.Federated, st.Federated); diff != "" {
			t.Errorf("%s: the daemon placed federated objects otherwise than the diff predicted (-predicted +done):\n%s", c.name, diff)
		}
		if c.wantReason != reconcile.PolicyViolation {
			if got, want := countsText(st.Counts), countsText(wantCounts); got != want {
				t.Errorf("%s: the daemon did %s, the diff predicted %s", c.name, got, want)
			}
		}
		c.live(t)
	}
}

// TestDaemonAdoptsTheCLIsInventory applies a repository with the CLI,
// then lets the daemon take it over: the daemon's sync adopts the
// inventory the CLI named after the repository, so afterwards there is
// one inventory, the daemon's, and the daemon prunes what the CLI applied.
func TestDaemonAdoptsTheCLIsInventory(t *testing.T) {
	ns := env.Namespace(t)
	srv := testenv.NewGitServer(t)
	// The folder is named after the namespace, so that the CLI's
	// inventory name (gitk8s-repo-<folder>) is this test's own.
	srv.Commit(t, map[string]string{ns + "/a.yaml": configMap(ns, "a", "1"), ns + "/b.yaml": configMap(ns, "b", "1"), ns + "/c.yaml": configMap(ns, "c", "1")})
	if stdout, stderr, code := gitk8s(t, "apply", srv.URL, "--path", ns, "--no-policy"); code != exitOK {
		t.Fatalf("CLI apply: exit %d\n%s\n%s", code, stdout, stderr)
	}
	legacy := reconcile.InventoryName(reconcile.SyncNameOf(srv.URL, ns))
	client := env.Client(t, "")
	secrets := client.CoreV1().Secrets(apply.DefaultInventoryNamespace)
	if _, err := secrets.Get(context.Background(), legacy, metav1.GetOptions{}); err != nil {
		t.Fatalf("the CLI's inventory %s: %v", legacy, err)
	}

	name := "shop-" + ns
	d, cfg, configPath := daemonFor(t, fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: %s, path: %s}}
syncs:
- name: %s
  source: {url: %s, ref: {branch: main}, path: %s}
  clusters: [local]
  prune: true
  policies: {skip: true}
`, env.Contexts[0], env.Kubeconfig, name, srv.URL, ns))
	srv.Commit(t, map[string]string{ns + "/c.yaml": ""})
	// The PR check already sees the CLI's objects as the sync's: c is to be pruned.
	stdout, stderr, code := gitk8s(t, "diff", "--config", configPath, "--sync", name, srv.Work, "-o", "json")
	if code != exitFailed {
		t.Fatalf("diff: exit %d, want %d (changes)\n%s\n%s", code, exitFailed, stdout, stderr)
	}
	if counts, _ := predicted(decodeReport(t, stdout)); counts["pruned"] != 1 {
		t.Errorf("the diff predicts %s, want one prune", countsText(counts))
	}
	if err := d.Reconcile(context.Background(), cfg.Syncs[0]); err != nil {
		t.Fatalf("daemon: %v", err)
	}
	if _, err := secrets.Get(context.Background(), legacy, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the CLI's inventory is still there after the daemon adopted it (%v)", err)
	}
	if _, err := secrets.Get(context.Background(), reconcile.InventoryName(name), metav1.GetOptions{}); err != nil {
		t.Errorf("the daemon's inventory: %v", err)
	}
	if exists(t, "configmap", ns, "c") {
		t.Error("c, removed from Git, was not pruned by the daemon")
	}
	want := apply.ApplySetID(reconcile.InventoryName(name), apply.DefaultInventoryNamespace)
	for _, cm := range []string{"a", "b"} {
		got, err := client.CoreV1().ConfigMaps(ns).Get(context.Background(), cm, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Labels[apply.LabelPartOf] != want {
			t.Errorf("%s is part of %q, want the daemon's %q", cm, got.Labels[apply.LabelPartOf], want)
		}
	}
	// The CLI addresses the daemon's sync by name, and finds nothing to do.
	if stdout, stderr, code := gitk8s(t, "diff", "--config", configPath, "--sync", name, srv.Work); code != exitOK {
		t.Errorf("diff after the daemon applied: exit %d, want 0\n%s\n%s", code, stdout, stderr)
	}
}

// TestBadInputIsReportedAlikeByBothFaces runs each kind of bad input
// through the CLI and the daemon: both give the same reason and the same
// text, and neither writes anything.
func TestBadInputIsReportedAlikeByBothFaces(t *testing.T) {
	ns := env.Namespace(t)
	good := configMap(ns, "good", "1")
	cases := []struct {
		name   string
		files  map[string]string
		reason reconcile.Reason
		// want is in the error text of both faces.
		want string
	}{
		{name: "malformed-yaml", files: map[string]string{"bad.yaml": "kind: [\n"}, reason: reconcile.RenderFailed, want: "bad.yaml"},
		{name: "duplicate", files: map[string]string{"dup.yaml": good}, reason: reconcile.RenderFailed, want: "ConfigMap/" + ns + "/good"},
		{name: "unknown-kind", files: map[string]string{"w.yaml": "apiVersion: example.test/v1\nkind: Widget\nmetadata: {name: w, namespace: " + ns + "}\n"},
			reason: reconcile.PlanFailed, want: "w.yaml:1: Widget/" + ns + "/w"},
		{name: "removed-api", files: map[string]string{"old.yaml": "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: old, namespace: " + ns + "}\nspec: {template: {metadata: {labels: {app: old}}, spec: {containers: [{name: c, image: x}]}}}\n"},
			reason: reconcile.PlanFailed, want: "apps/v1"},
		{name: "broken-kustomization", files: map[string]string{"kustomization.yaml": "resources: [missing.yaml]\n"}, reason: reconcile.RenderFailed, want: "kustomization.yaml"},
		{name: "jsonnet-error", files: map[string]string{"x.jsonnet": "{ a: error 'no good' }\n"}, reason: reconcile.RenderFailed, want: "no good"},
	}
	srv := testenv.NewGitServer(t)
	files := map[string]string{}
	var syncs strings.Builder
	for _, c := range cases {
		files[c.name+"/good.yaml"] = good
		for name, content := range c.files {
			files[c.name+"/"+name] = content
		}
		fmt.Fprintf(&syncs, "- name: %s-%s\n  source: {url: %s, ref: {branch: main}, path: %s}\n  clusters: [%s]\n  policies: {skip: true}\n", c.name, ns, srv.URL, c.name, env.Contexts[0])
	}
	srv.Commit(t, files)
	// The daemon names the cluster as the CLI's context is named, so that
	// both texts name it alike.
	d, cfg, _ := daemonFor(t, fmt.Sprintf("apiVersion: gitk8s.io/v1alpha1\nkind: Config\nclusters:\n- {name: %[1]s, kubeconfig: {context: %[1]s, path: %[2]s}}\nsyncs:\n%[3]s",
		env.Contexts[0], env.Kubeconfig, syncs.String()))
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			stdout, stderr, code := gitk8s(t, "apply", srv.URL, "--path", c.name, "--sync", c.name+"-"+ns, "--no-policy", "-o", "json")
			err := d.Reconcile(context.Background(), cfg.Syncs[i])
			st := statusOf(t, d, c.name+"-"+ns)
			if err == nil || st.Condition("Ready").Reason != string(c.reason) {
				t.Errorf("daemon: reason %s (%v), want %s", st.Condition("Ready").Reason, err, c.reason)
			}
			if !strings.Contains(st.LastError, c.want) {
				t.Errorf("daemon: error %q does not name %q", st.LastError, c.want)
			}
			switch c.reason {
			case reconcile.RenderFailed:
				if code != exitError || strings.TrimSpace(stderr) != "error: "+st.LastError {
					t.Errorf("CLI: exit %d, stderr %q; want exit %d and the daemon's error %q", code, stderr, exitError, st.LastError)
				}
			default:
				report := decodeReport(t, stdout)
				if code != exitFailed || report.Clusters[0].Reason != string(c.reason) {
					t.Errorf("CLI: exit %d, reason %s; want exit %d and %s", code, report.Clusters[0].Reason, exitFailed, c.reason)
				}
				for _, o := range report.Clusters[0].Objects {
					if o.Error != "" && !strings.Contains(st.LastError, o.Error) {
						t.Errorf("CLI error %q is not the daemon's %q", o.Error, st.LastError)
					}
				}
			}
			if exists(t, "configmap", ns, "good") {
				t.Errorf("a ConfigMap was written for a revision with bad input")
			}
		})
	}
}

// TestConfigTakesEverySetting refuses flags that would make a prediction
// differ from the daemon's plan, and names what --config needs.
func TestConfigTakesEverySetting(t *testing.T) {
	_, _, path := daemonFor(t, fmt.Sprintf("apiVersion: gitk8s.io/v1alpha1\nkind: Config\nclusters:\n- {name: c, kubeconfig: {context: %s, path: %s}}\nsyncs:\n- {name: shop, source: {url: https://git.example/shop.git}, clusters: [c]}\n",
		env.Contexts[0], env.Kubeconfig))
	dir := t.TempDir()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--prune=false"}, "--prune cannot be given"},
		{[]string{"--path", "x", "--namespace", "y"}, "--path, --namespace cannot be given"},
		{[]string{"--context", "other"}, "--context cannot be given"},
		{nil, "--config needs --sync NAME"},
		{[]string{"--sync", "nosuch"}, "no sync named nosuch; its syncs are shop"},
	} {
		args := append([]string{"diff", dir, "--config", path}, tt.args...)
		if tt.want != "--config needs --sync NAME" && !strings.Contains(strings.Join(tt.args, " "), "--sync") {
			args = append(args, "--sync", "shop")
		}
		_, stderr, code := gitk8s(t, args...)
		if code != exitError || !strings.Contains(stderr, tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tt.args, code, stderr, exitError, tt.want)
		}
	}
}
