package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/daemon"
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

// TestDiffPredictsTheDaemon drives commits through the PR check (gitk8s
// diff --config --sync on the checkout) and then through the daemon's
// reconcile of the same sync: the predicted change (actions per object,
// prunes, refusals, federated placements) is what the daemon then does.
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
	fedNamespace := fmt.Sprintf("apiVersion: types.kubefed.io/v1beta1\nkind: FederatedNamespace\nmetadata: {name: %[1]s, namespace: %[1]s}\nspec: {placement: {clusters: [{name: one}, {name: two}]}}\n", ns)
	fedConfigMap := func(clusters string) string {
		return fmt.Sprintf("apiVersion: types.kubefed.io/v1beta1\nkind: FederatedConfigMap\nmetadata: {name: fed, namespace: %s}\nspec:\n  template: {data: {value: v}}\n  placement: {clusters: [%s]}\n", ns, clusters)
	}
	commits := []struct {
		name  string
		files map[string]string
		// wantReason is the reason both faces must give.
		wantReason reconcile.Reason
		// live checks the clusters after the daemon's reconcile.
		live func(t *testing.T)
	}{
		{name: "first revision", wantReason: reconcile.Succeeded, files: map[string]string{
			"deploy/ns.yaml": fedNamespace, "deploy/a.yaml": unplaced("a", "1"), "deploy/b.yaml": unplaced("b", "1"),
			"deploy/c.yaml": unplaced("c", "1"), "deploy/fed.yaml": fedConfigMap("{name: one}")},
			live: func(t *testing.T) {
				if !exists(t, "configmap", ns, "b") || !exists(t, "configmap", ns, "fed") {
					t.Error("b or fed missing")
				}
			}},
		{name: "changed, removed and federated objects", wantReason: reconcile.Succeeded, files: map[string]string{
			"deploy/a.yaml": unplaced("a", "2"), "deploy/b.yaml": "", "deploy/fed.yaml": fedConfigMap("{name: one}, {name: two}")},
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
			live: func(t *testing.T) {
				cm, err := env.Client(t, "").CoreV1().ConfigMaps(ns).Get(context.Background(), "a", metav1.GetOptions{})
				if err != nil || cm.Data["value"] != "2" {
					t.Errorf("a was changed by a refused revision: %v %v", cm.Data, err)
				}
			}},
		{name: "prune refused", wantReason: reconcile.PruneRefused, files: map[string]string{
			"deploy/rb.yaml": "", "deploy/a.yaml": "", "deploy/c.yaml": "", "deploy/fed.yaml": ""},
			live: func(t *testing.T) {
				if !exists(t, "configmap", ns, "a") || !exists(t, "configmap", ns, "c") {
					t.Error("a refused prune deleted objects")
				}
			}},
	}
	for _, c := range commits {
		rev := srv.Commit(t, c.files)
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
		_ = d.Reconcile(context.Background(), cfg.Syncs[0])
		st := statusOf(t, d, name)
		if got := st.Condition("Ready").Reason; got != wantReason {
			t.Errorf("%s: the daemon's reason is %s (%s), the diff predicted %s", c.name, got, st.LastError, wantReason)
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
