package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gitk8s/gitk8s/internal/testenv"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// homeNamespace makes sure the daemon's namespace exists in the test
// cluster; it is shared by the tests (each uses sync names of its own) and
// by the deploy/ manifests, so it is left in place.
func homeNamespace(t *testing.T, client kubernetes.Interface) {
	t.Helper()
	_, err := client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: HomeNamespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// runDaemon runs a daemon until the test ends.
func runElectedDaemon(t *testing.T, cfg *Config) (*Daemon, func() string) {
	t.Helper()
	var logs bytes.Buffer
	var mu sync.Mutex
	d, err := New(cfg, Options{GitCacheDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.RunElected(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return d, func() string { mu.Lock(); defer mu.Unlock(); return logs.String() }
}

func statusNamed(d *Daemon, name string) SyncStatus {
	for _, s := range d.Status() {
		if s.Name == name {
			return s
		}
	}
	return SyncStatus{}
}

// TestSuspendStopsEverySync suspends syncs the way gitk8s suspend does
// (the ConfigMap gitk8s-suspended in the home cluster) and checks that
// nothing applies a new commit: not the interval (1 s), not a webhook or a
// Trigger, not a drift heal, and not a second daemon started during the
// suspension. Resuming applies the commit within seconds, even for a sync
// whose interval is an hour. A sync with suspend: true in the
// configuration cannot be resumed from the cluster.
func TestSuspendStopsEverySync(t *testing.T) {
	ns := env.Namespace(t)
	client := env.Client(t, "")
	homeNamespace(t, client)
	ctx := context.Background()
	cm := func(name, value string) string {
		return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s, namespace: %s}\ndata: {value: %q}\n", name, ns, value)
	}
	srv := testenv.NewGitServer(t)
	for _, dir := range []string{"fast", "slow", "pinned"} {
		if err := os.MkdirAll(filepath.Join(srv.Work, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	first := srv.Commit(t, map[string]string{"fast/cm.yaml": cm("fast", "one"), "slow/cm.yaml": cm("slow", "one"), "pinned/cm.yaml": cm("pinned", "one")})
	secretFile := filepath.Join(t.TempDir(), "hook")
	if err := os.WriteFile(secretFile, []byte("hook-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fast, slow, pinned := "fast-"+ns, "slow-"+ns, "pinned-"+ns
	t.Cleanup(func() {
		for _, name := range []string{fast, slow, pinned} {
			if err := Resume(context.Background(), client, HomeNamespace, name); err != nil && !errors.Is(err, ErrNotSuspended) {
				t.Error(err)
			}
		}
	})
	cfg, err := LoadConfig(writeConfig(t, fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: %[1]s, path: %[2]s}}
syncs:
- {name: %[4]s, source: {url: %[3]s, ref: {branch: main}, path: fast, interval: 1s}, clusters: [local]}
- {name: %[5]s, source: {url: %[3]s, ref: {branch: main}, path: slow, interval: 1h}, clusters: [local]}
- {name: %[6]s, source: {url: %[3]s, ref: {branch: main}, path: pinned, interval: 1s}, clusters: [local], suspend: true}
webhooks:
  receivers: [{name: push, provider: generic, secretFile: %[7]s}]
`, env.Contexts[0], env.Kubeconfig, srv.URL, fast, slow, pinned, secretFile)))
	if err != nil {
		t.Fatal(err)
	}
	value := func(name string) string {
		c, err := client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return ""
		}
		return c.Data["value"]
	}
	d, logs := runElectedDaemon(t, cfg)
	eventually := func(what string, within time.Duration, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(within)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not happen within %s; status %+v\nlogs:\n%s", what, within, d.Status(), logs())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	eventually("first apply", 30*time.Second, func() bool {
		return value("fast") == "one" && value("slow") == "one" && statusNamed(d, fast).LastAppliedRevision == first && statusNamed(d, slow).LastAppliedRevision == first
	})
	if value("pinned") != "" {
		t.Errorf("a sync with suspend: true applied")
	}
	if st := statusNamed(d, pinned); !st.Suspended || st.SuspendedReason != ConfigSuspendReason {
		t.Errorf("status of a sync with suspend: true: %+v", st)
	}

	// Suspend both, and wait until this daemon has seen it.
	for _, name := range []string{fast, slow} {
		if err := Suspend(ctx, client, HomeNamespace, name, Suspension{Reason: "release freeze", By: "alice", At: time.Now().UTC()}); err != nil {
			t.Fatal(err)
		}
	}
	eventually("the suspension seen", 10*time.Second, func() bool {
		return statusNamed(d, fast).Suspended && statusNamed(d, slow).Suspended
	})
	if st := statusNamed(d, fast); st.SuspendedReason != "release freeze" || st.SuspendedBy != "alice" || st.SuspendedAt.IsZero() {
		t.Errorf("suspended status: %+v", st)
	}

	second := srv.Commit(t, map[string]string{"fast/cm.yaml": cm("fast", "two"), "slow/cm.yaml": cm("slow", "two"), "pinned/cm.yaml": cm("pinned", "two")})
	// A push webhook and a Trigger.
	h, err := d.Handler()
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"ref":"refs/heads/main","repository":{"clone_url":%q}}`, srv.URL)
	req := httptest.NewRequest(http.MethodPost, "/hooks/push", strings.NewReader(body))
	req.Header.Set("X-Signature", "sha256="+sign("hook-secret", body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusAccepted {
		t.Fatalf("webhook: %d %s", rec.Code, rec.Body)
	}
	for _, name := range []string{fast, slow, pinned} {
		if !d.Trigger(name) {
			t.Fatalf("no sync %s", name)
		}
	}
	// A hand edit of a managed object: drift is counted, not healed.
	if _, err := client.CoreV1().ConfigMaps(ns).Patch(ctx, "slow", "application/merge-patch+json",
		[]byte(`{"data":{"value":"edited by hand"}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	eventually("the drift counted", 10*time.Second, func() bool { return statusNamed(d, slow).DriftedObjects > 0 })

	// A second daemon started now honours the suspension from its first loop.
	d2, _ := runElectedDaemon(t, cfg)
	eventually("the second daemon's status", 10*time.Second, func() bool { return statusNamed(d2, fast).Suspended && statusNamed(d2, slow).Suspended })

	// Several intervals of the fast sync.
	time.Sleep(3500 * time.Millisecond)
	if v, w, p := value("fast"), value("slow"), value("pinned"); v != "one" || w != "edited by hand" || p != "" {
		t.Errorf("while suspended: fast %q (want one), slow %q (want the hand edit), pinned %q (want nothing)\nlogs:\n%s", v, w, p, logs())
	}
	for _, dd := range []*Daemon{d, d2} {
		for _, name := range []string{fast, slow} {
			if st := statusNamed(dd, name); st.LastAttemptedRevision == second || (dd == d && st.LastAppliedRevision != first) {
				t.Errorf("%s reconciled while suspended: %+v", name, st)
			}
		}
	}

	// gitk8s resume of the pinned sync is refused: only the configuration
	// resumes it, and suspending and resuming it from the cluster does not.
	if err := Resume(ctx, client, HomeNamespace, pinned); !errors.Is(err, ErrNotSuspended) {
		t.Errorf("resume of a sync suspended by the configuration: %v", err)
	}
	if err := Suspend(ctx, client, HomeNamespace, pinned, Suspension{Reason: "x"}); err != nil {
		t.Fatal(err)
	}
	if err := Resume(ctx, client, HomeNamespace, pinned); err != nil {
		t.Fatal(err)
	}

	// Resume: applied within seconds, the one-hour sync included (and its
	// drift healed with it).
	for _, name := range []string{fast, slow} {
		if err := Resume(ctx, client, HomeNamespace, name); err != nil {
			t.Fatal(err)
		}
	}
	eventually("the resumed syncs applied", 10*time.Second, func() bool {
		return value("fast") == "two" && value("slow") == "two" && statusNamed(d, slow).LastAppliedRevision == second && !statusNamed(d, slow).Suspended
	})
	if value("pinned") != "" {
		t.Errorf("a sync with suspend: true applied after resume")
	}
	if st := statusNamed(d, pinned); !st.Suspended || st.SuspendedReason != ConfigSuspendReason {
		t.Errorf("status of a sync with suspend: true after resume: %+v", st)
	}
}

// TestSuspendConcurrently suspends eight syncs at once where no ConfigMap
// exists yet, then resumes half of them at once: every write persists.
func TestSuspendConcurrently(t *testing.T) {
	ns := env.Namespace(t)
	client := env.Client(t, "")
	ctx := context.Background()
	names := func(from, to int) []string {
		var out []string
		for i := from; i < to; i++ {
			out = append(out, fmt.Sprintf("sync-%d", i))
		}
		return out
	}
	all := names(0, 8)
	var wg sync.WaitGroup
	errs := make([]error, len(all))
	for i, name := range all {
		wg.Go(func() { errs[i] = Suspend(ctx, client, ns, name, Suspension{Reason: "r " + name}) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	got, err := Suspensions(ctx, client, ns)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range all {
		if got[name].Reason != "r "+name {
			t.Errorf("suspension of %s lost: %+v", name, got)
		}
	}
	resumed := names(0, 4)
	errs = make([]error, len(resumed))
	for i, name := range resumed {
		wg.Go(func() { errs[i] = Resume(ctx, client, ns, name) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if got, err = Suspensions(ctx, client, ns); err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Errorf("after resuming %v: %v", resumed, got)
	}
	for _, name := range names(4, 8) {
		if _, ok := got[name]; !ok {
			t.Errorf("suspension of %s lost: %v", name, got)
		}
	}
	if err := Suspend(ctx, client, ns, "Not_A_Label", Suspension{}); !errors.Is(err, ErrSyncName) {
		t.Errorf("a name that is not a DNS label: %v", err)
	}
}
