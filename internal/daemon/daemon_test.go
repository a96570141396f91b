package daemon

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gitk8s/gitk8s/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env, 1) }

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfigNamesEveryProblem(t *testing.T) {
	_, err := LoadConfig(writeConfig(t, `apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: Eu_1, kubeconfig: {context: a}}
- {name: eu-2, kubeconfig: {inCluster: true, context: b}}
syncs:
- name: shop
  source: {url: "", ref: {branch: main, tag: v1}, interval: 10ms}
  clusters: [nowhere]
- name: shop
  source: {url: https://git.example/x.git}
`))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`clusters[0]: name "Eu_1" must be a lowercase DNS label`,
		"cluster eu-2: kubeconfig: inCluster excludes context, path and secretRef",
		"sync shop: source.url is required",
		"sync shop: source.ref: give one of branch, tag, semver or commit",
		"sync shop: source.interval 10ms is shorter than a second",
		"sync shop: cluster nowhere is not in clusters",
		"syncs[1]: sync shop is named twice",
		"sync shop: clusters or clusterSelector is required",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := LoadConfig(writeConfig(t, "apiVersion: gitk8s.io/v1alpha1\nkind: Config\nunknownField: 1\n")); err == nil || !strings.Contains(err.Error(), "unknownField") {
		t.Errorf("an unknown field is not refused: %v", err)
	}
}

// TestDaemonFollowsGit runs the daemon against a Git server on loopback
// and the local control plane: it applies the first commit, follows a new
// one within its interval, costs one ref advertisement when nothing moved,
// and keeps the last good revision applied when a commit breaks.
func TestDaemonFollowsGit(t *testing.T) {
	ns := env.Namespace(t)
	cm := func(value string) string {
		return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: %s}\ndata: {value: %q}\n", ns, value)
	}
	srv := testenv.NewGitServer(t)
	first := srv.Commit(t, map[string]string{"cm.yaml": cm("one")})
	cfg, err := LoadConfig(writeConfig(t, fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: %s, path: %s}}
syncs:
- name: settings-%s
  source: {url: %s, ref: {branch: main}, interval: 1s}
  clusters: [local]
  prune: true
`, env.Contexts[0], env.Kubeconfig, ns, srv.URL)))
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	var logMu sync.Mutex
	d, err := New(cfg, Options{GitCacheDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	client := env.Client(t, "")
	value := func() string { return configMapValue(t, ns, "settings") }
	status := func() SyncStatus { return d.Status()[0] }
	eventually := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				logMu.Lock()
				defer logMu.Unlock()
				t.Fatalf("%s did not happen; status %+v\nlogs:\n%s", what, status(), logs.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	eventually("first apply", func() bool { return value() == "one" && status().LastAppliedRevision == first })
	if c := status().Condition("Ready"); c.Status != "True" || c.Reason != ReasonSucceeded {
		t.Errorf("Ready condition %+v", c)
	}

	// Nothing moved: a tick costs one ref advertisement.
	srv.Take()
	time.Sleep(2500 * time.Millisecond)
	for _, r := range srv.Take() {
		if r != "GET /repo.git/info/refs" {
			t.Errorf("an unchanged remote cost %s", r)
		}
	}

	second := srv.Commit(t, map[string]string{"cm.yaml": cm("two")})
	eventually("the new commit applied", func() bool { return value() == "two" && status().LastAppliedRevision == second })

	// A broken commit: reported, and the last good revision stays applied.
	broken := srv.Commit(t, map[string]string{"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: [\n"})
	eventually("the broken commit reported", func() bool {
		st := status()
		return st.LastAttemptedRevision == broken && st.Condition("Ready").Reason == ReasonRenderFailed
	})
	if st := status(); value() != "two" || st.LastAppliedRevision != second || !strings.Contains(st.LastError, "cm.yaml: invalid YAML") || st.Condition("Stalled").Status != "True" {
		t.Errorf("after a broken commit: value %q, status %+v", value(), st)
	}

	// The HTTP API shows the failing sync: the page in red, the status as
	// JSON, the metrics.
	h, err := d.Handler()
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get("/"); code != 200 || !strings.Contains(body, `<tr class="failing" data-sync="settings-`+ns+`">`) || !strings.Contains(body, "RenderFailed") {
		t.Errorf("status page: %d\n%s", code, body)
	}
	if code, body := get("/api/v1/syncs"); code != 200 || !strings.Contains(body, `"lastAppliedRevision":"`+second+`"`) || !strings.Contains(body, `"reason":"RenderFailed"`) {
		t.Errorf("/api/v1/syncs: %d %s", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, `gitk8s_reconcile_duration_seconds_count{result="failed",sync="settings-`+ns+`"}`) ||
		!strings.Contains(body, `gitk8s_sync_last_applied_revision_info{revision="`+second+`",sync="settings-`+ns+`"} 1`) {
		t.Errorf("/metrics: %d", code)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("/readyz: %d", code)
	}

	// Drift: a hand edit and a deletion are healed within seconds, long
	// before the next interval would come (the interval here is 1 s, but
	// the sync is broken, so only drift brings a reconcile of the last
	// good revision… which the broken commit blocks). So fix Git first.
	third := srv.Commit(t, map[string]string{"cm.yaml": cm("three")})
	if !d.Trigger("settings-" + ns) {
		t.Fatal("no such sync")
	}
	eventually("the fixed commit applied", func() bool { return value() == "three" && status().LastAppliedRevision == third })
	if _, err := client.CoreV1().ConfigMaps(ns).Patch(context.Background(), "settings", "application/merge-patch+json",
		[]byte(`{"data":{"value":"edited by hand"}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	eventually("the hand edit healed", func() bool { return value() == "three" && status().DriftedObjects > 0 })
	if err := client.CoreV1().ConfigMaps(ns).Delete(context.Background(), "settings", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually("the deleted object re-created", func() bool { return value() == "three" })

	// A trigger reconciles at once.
	srv.Commit(t, map[string]string{"cm.yaml": cm("four")})
	if !d.Trigger("settings-" + ns) {
		t.Fatal("no such sync")
	}
	eventually("a triggered commit applied", func() bool { return value() == "four" && status().Condition("Ready").Status == "True" })

	// gitk8s's own writes are not drift: a change it applies is counted
	// neither while it applies nor once it has settled.
	drifted := status().DriftedObjects
	fifth := srv.Commit(t, map[string]string{"cm.yaml": cm("five")})
	d.Trigger("settings-" + ns)
	eventually("the fifth commit applied", func() bool { return value() == "five" && status().LastAppliedRevision == fifth })
	time.Sleep(2 * settleAfterApply)
	if n := status().DriftedObjects; n != drifted {
		t.Errorf("gitk8s's own write counted as drift: %d drifted objects, %d before", n, drifted)
	}

	// A deletion held by a finalizer is drift as soon as it starts; the
	// object is re-created once the deletion completes.
	if _, err := client.CoreV1().ConfigMaps(ns).Patch(context.Background(), "settings", "application/merge-patch+json",
		[]byte(`{"metadata":{"finalizers":["example.test/hold"]}}`), metav1.PatchOptions{FieldManager: "someone"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * settleAfterApply)
	if n := status().DriftedObjects; n != drifted {
		t.Errorf("a finalizer added by someone else (not a field gitk8s sets) counted as drift: %d", n)
	}
	held, err := client.CoreV1().ConfigMaps(ns).Get(context.Background(), "settings", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.CoreV1().ConfigMaps(ns).Delete(context.Background(), "settings", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually("the held deletion seen as drift", func() bool { return status().DriftedObjects > drifted })
	if _, err := client.CoreV1().ConfigMaps(ns).Patch(context.Background(), "settings", "application/merge-patch+json",
		[]byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{FieldManager: "someone"}); err != nil {
		t.Fatal(err)
	}
	eventually("the object re-created after the held deletion", func() bool {
		c, err := client.CoreV1().ConfigMaps(ns).Get(context.Background(), "settings", metav1.GetOptions{})
		return err == nil && c.UID != held.UID && c.DeletionTimestamp == nil && c.Data["value"] == "five"
	})
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestSecondTermWatchesDrift: a daemon that runs again (a new leadership
// term) after its first term ended starts its drift watches anew even
// though Git has not moved, and heals what changed while it did not run.
func TestSecondTermWatchesDrift(t *testing.T) {
	ns := env.Namespace(t)
	srv := testenv.NewGitServer(t)
	srv.Commit(t, map[string]string{"cm.yaml": fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: terms, namespace: %s}\ndata: {value: git}\n", ns)})
	d := newDaemon(t, fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: %s, path: %s}}
syncs:
- name: terms-%s
  source: {url: %s, ref: {branch: main}, interval: 1h}
  clusters: [local]
`, env.Contexts[0], env.Kubeconfig, ns, srv.URL))
	client := env.Client(t, "")
	value := func() string { return configMapValue(t, ns, "terms") }
	edit := func(v string) {
		t.Helper()
		if _, err := client.CoreV1().ConfigMaps(ns).Patch(context.Background(), "terms", "application/merge-patch+json",
			[]byte(`{"data":{"value":"`+v+`"}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
			t.Fatal(err)
		}
	}
	term := func() (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = d.Run(ctx); close(done) }()
		return func() { cancel(); <-done }
	}
	stop := term()
	testenv.Within(t, "first term applies", 30*time.Second, func() bool { return value() == "git" && d.Status()[0].Condition("Ready").Status == "True" })
	stop()

	edit("while no term ran")
	stop = term()
	defer stop()
	testenv.Within(t, "the second term heals what changed between terms", 15*time.Second, func() bool { return value() == "git" })
	time.Sleep(time.Second) // the second term's watches are listing
	edit("during the second term")
	testenv.Within(t, "the second term's drift watch heals a hand edit", 15*time.Second, func() bool { return value() == "git" })
}

// TestPlanFailureIsNotAnOutage: a revision the apply engine cannot plan (a
// kind the cluster does not know) is PlanFailed, with the file and the
// fix named, and nothing of it is written; the cluster is not reported
// unavailable.
func TestPlanFailureIsNotAnOutage(t *testing.T) {
	ns := env.Namespace(t)
	srv := testenv.NewGitServer(t)
	srv.Commit(t, map[string]string{
		"cm.yaml":     fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: planned, namespace: %s}\ndata: {a: b}\n", ns),
		"widget.yaml": fmt.Sprintf("apiVersion: example.test/v1\nkind: Widget\nmetadata: {name: w, namespace: %s}\n", ns),
	})
	r := runDaemon(t, fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: %s, path: %s}}
syncs:
- name: plan-%s
  source: {url: %s, ref: {branch: main}, interval: 1h}
  clusters: [local]
`, env.Contexts[0], env.Kubeconfig, ns, srv.URL))
	name := "plan-" + ns
	r.eventually(t, "the sync fails", 30*time.Second, func() bool { return r.status(name).Condition("Ready").Status == "False" })
	c := r.status(name).Condition("Ready")
	if c.Reason != ReasonPlanFailed || !strings.Contains(c.Message, "widget.yaml") || !strings.Contains(c.Message, "Widget") {
		t.Errorf("Ready %+v, want PlanFailed naming widget.yaml and the kind", c)
	}
	if _, err := env.Client(t, "").CoreV1().ConfigMaps(ns).Get(context.Background(), "planned", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a revision that cannot be planned was partly applied: %v", err)
	}
}

// newDaemon is a daemon of this configuration that logs nothing, closed
// when the test ends; the test runs it as it needs.
func newDaemon(t *testing.T, config string) *Daemon {
	t.Helper()
	cfg, err := LoadConfig(writeConfig(t, config))
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(cfg, Options{GitCacheDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

// TestDriftWatchesAreShared reconciles two syncs of ConfigMaps in one
// cluster: their drift watches share one informer, and a change to one
// sync's object is that sync's drift only.
func TestDriftWatchesAreShared(t *testing.T) {
	ns := env.Namespace(t)
	a, b := testenv.NewGitServer(t), testenv.NewGitServer(t)
	a.Commit(t, map[string]string{"cm.yaml": configMap(ns, "a", "one")})
	b.Commit(t, map[string]string{"cm.yaml": configMap(ns, "b", "one")})
	d := newDaemon(t, fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: %s, path: %s}}
syncs:
- {name: shared-a, source: {url: %q}, clusters: [local], inventory: {name: shared-a-%s}}
- {name: shared-b, source: {url: %q}, clusters: [local], inventory: {name: shared-b-%s}}
`, env.Contexts[0], env.Kubeconfig, a.URL, ns, b.URL, ns))
	for _, s := range d.cfg.Syncs {
		if err := d.Reconcile(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}
	d.driftMu.Lock()
	shared, watches := len(d.sharedWatches), len(d.drifts)
	informers := 0
	for _, w := range d.sharedWatches {
		informers += len(w.informers)
	}
	d.driftMu.Unlock()
	if shared != 1 || watches != 2 || informers != 1 {
		t.Errorf("%d shared watches with %d informers for %d drift watches; want 1 informer for both", shared, informers, watches)
	}
	testenv.Within(t, "the watches list", 10*time.Second, func() bool { return len(d.driftUnsynced()) == 0 })
	if _, err := env.Client(t, "").CoreV1().ConfigMaps(ns).Patch(context.Background(), "a", "application/merge-patch+json", []byte(`{"data":{"value":"edited"}}`), metav1.PatchOptions{FieldManager: "someone"}); err != nil {
		t.Fatal(err)
	}
	testenv.Within(t, "the drift of shared-a", 10*time.Second, func() bool { return d.statusOf("shared-a").DriftedObjects == 1 })
	time.Sleep(time.Second)
	if n := d.statusOf("shared-b").DriftedObjects; n != 0 {
		t.Errorf("shared-b counted %d drifted objects from shared-a's ConfigMap", n)
	}
}
