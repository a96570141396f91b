package faults

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/daemon"
	"github.com/gitk8s/gitk8s/internal/testenv"
)

var env *testenv.Env

// work holds the gitk8s binary, built once for every test.
var work string

func TestMain(m *testing.M) {
	e, err := testenv.StartOwn(3)
	if err != nil {
		fmt.Fprintf(os.Stderr, "faults: cannot start the local control plane: %v\n", err)
		os.Exit(1)
	}
	env = e
	if work, err = os.MkdirTemp("", "gitk8s-faults-"); err != nil {
		e.Stop()
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	e.Stop()
	os.RemoveAll(work)
	os.Exit(code)
}

var build struct {
	once sync.Once
	path string
	err  error
}

// gitk8sBinary builds cmd/gitk8s once and returns its path.
func gitk8sBinary(t *testing.T) string {
	t.Helper()
	build.once.Do(func() {
		root, err := testenv.RepoRoot()
		if err != nil {
			build.err = err
			return
		}
		build.path = filepath.Join(work, "gitk8s")
		if out, err := exec.Command("go", "build", "-o", build.path, filepath.Join(root, "cmd", "gitk8s")).CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build ./cmd/gitk8s: %v\n%s", err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.path
}

// testUserAgent marks the tests' own requests, so that the audit log tells
// them from the daemon's (whose user agent is gitk8s).
const testUserAgent = "fault-matrix-test"

// client is a typed client of a context ("" for the first cluster) that
// the audit log does not count as gitk8s's.
func client(t *testing.T, kubeContext string) kubernetes.Interface {
	t.Helper()
	cfg := rest.CopyConfig(env.Target(t, kubeContext).Config)
	cfg.UserAgent = testUserAgent
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// figures logs what a fault cost in the form docs/reliability.md quotes,
// and fails the test when an object was lost.
func figures(t *testing.T, name string, converged time.Duration, requests, lost int) {
	t.Helper()
	t.Logf("fault: %s: converged in %s, requests %d, objects lost %d", name, converged.Round(100*time.Millisecond), requests, lost)
	if lost != 0 {
		t.Errorf("fault: %s: %d objects lost", name, lost)
	}
}

// poll is testenv.Poll, by the name the fault tests call it.
func poll(t *testing.T, what string, d, period time.Duration, ok func() bool) {
	t.Helper()
	testenv.Poll(t, what, d, period, ok)
}

// requestMarks are the ends of every cluster's audit log when a fault's
// figures start.
type requestMarks []testenv.AuditMark

func markRequests(t *testing.T) requestMarks {
	t.Helper()
	var marks requestMarks
	for _, c := range env.Contexts {
		marks = append(marks, env.MarkAudit(t, c))
	}
	return marks
}

// sent counts the requests the API servers logged from gitk8s since the
// marks (user agent gitk8s), in every cluster. A request an API server
// was killed before answering is not logged.
func (marks requestMarks) sent(t *testing.T) int {
	t.Helper()
	n := 0
	for _, m := range marks {
		n += len(m.Requests(t, "gitk8s"))
	}
	return n
}

// deleted names the objects of a resource in a namespace that gitk8s
// deleted since the marks.
func (marks requestMarks) deleted(t *testing.T, resource, namespace string) []string {
	t.Helper()
	var names []string
	for _, m := range marks {
		for _, ev := range m.Requests(t, "gitk8s") {
			if ev.Verb == "delete" && ev.ObjectRef.Resource == resource && ev.ObjectRef.Namespace == namespace && ev.ResponseStatus.Code < 300 {
				names = append(names, ev.ObjectRef.Name)
			}
		}
	}
	sort.Strings(names)
	return names
}

// configMapYAML is one ConfigMap whose key "value" holds value.
func configMapYAML(ns, name, value string) string {
	return fmt.Sprintf("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s, namespace: %s}\ndata: {value: %q}\n", name, ns, value)
}

// configMapsYAML writes the ConfigMaps of want (name → value), sorted by name.
func configMapsYAML(ns string, want map[string]string) string {
	names := make([]string, 0, len(want))
	for name := range want {
		names = append(names, name)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, name := range names {
		b.WriteString(configMapYAML(ns, name, want[name]))
	}
	return b.String()
}

// numbered is n ConfigMap names prefix-0000… with one value.
func numbered(prefix string, n int, value string) map[string]string {
	out := make(map[string]string, n)
	for i := range n {
		out[fmt.Sprintf("%s-%04d", prefix, i)] = value
	}
	return out
}

// merged is the union of ConfigMap sets; later ones win.
func merged(sets ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, s := range sets {
		for k, v := range s {
			out[k] = v
		}
	}
	return out
}

// configMaps reads the ConfigMaps of a namespace that gitk8s manages
// (labelled as part of an ApplySet), by name.
func configMaps(t *testing.T, c kubernetes.Interface, ns string) map[string]corev1.ConfigMap {
	t.Helper()
	list, err := c.CoreV1().ConfigMaps(ns).List(context.Background(), metav1.ListOptions{LabelSelector: apply.LabelPartOf})
	if err != nil {
		t.Fatalf("list ConfigMaps in %s: %v", ns, err)
	}
	out := make(map[string]corev1.ConfigMap, len(list.Items))
	for _, cm := range list.Items {
		out[cm.Name] = cm
	}
	return out
}

// countConfigMaps counts, from the API server's cache, the managed
// ConfigMaps of a namespace whose value is value ("" for any).
func countConfigMaps(c kubernetes.Interface, ns, value string) int {
	list, err := c.CoreV1().ConfigMaps(ns).List(context.Background(), metav1.ListOptions{LabelSelector: apply.LabelPartOf, ResourceVersion: "0"})
	if err != nil {
		return -1
	}
	n := 0
	for _, cm := range list.Items {
		if value == "" || cm.Data["value"] == value {
			n++
		}
	}
	return n
}

// configMapsLost counts the ConfigMaps of want (name → value) that ns
// lacks or that hold another value, and names the managed ConfigMaps of
// ns that want does not hold.
func configMapsLost(t *testing.T, c kubernetes.Interface, ns string, want map[string]string) (lost int, extra []string) {
	t.Helper()
	live := configMaps(t, c, ns)
	for name, value := range want {
		if cm, ok := live[name]; !ok || cm.Data["value"] != value {
			lost++
		}
	}
	for name := range live {
		if _, ok := want[name]; !ok {
			extra = append(extra, name)
		}
	}
	sort.Strings(extra)
	return lost, extra
}

// ensureHomeNamespace creates gitk8s-system in the first cluster, where
// the daemon keeps its Lease and inventories.
func ensureHomeNamespace(t *testing.T) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: daemon.HomeNamespace}}
	if _, err := client(t, "").CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// waitAPIServersReady waits until every cluster's API server answers
// /readyz, as after etcd or an API server came back.
func waitAPIServersReady(t *testing.T, d time.Duration) {
	t.Helper()
	for _, c := range env.Contexts {
		rc := client(t, c).Discovery().RESTClient()
		testenv.Poll(t, "API server "+c+" ready", d, 200*time.Millisecond, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			var code int
			err := rc.Get().AbsPath("/readyz").Do(ctx).StatusCode(&code).Error()
			return err == nil && code == http.StatusOK
		})
	}
}

// freeAddr is a loopback address no one listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// daemonSpec is the part of a daemon's configuration a test chooses; the
// clusters are always the three of the control plane, c1 to c3.
type daemonSpec struct {
	// Syncs is the list under syncs:, as YAML.
	Syncs string
	// Receivers is webhooks.receivers, as a YAML flow list.
	Receivers string
	// LeaderElection is leaderElection, as a YAML flow map.
	LeaderElection string
	// CacheDir is the Git cache (default: a new temporary directory), so
	// that a restarted daemon can find its cache as a pod's volume would.
	CacheDir string
	// Kubeconfigs are kubeconfig files by cluster name (c1 to c3), for
	// clusters not reached through the control plane's own.
	Kubeconfigs map[string]string
}

// daemonProcess is a `gitk8s daemon` child process.
type daemonProcess struct {
	// URL is where its HTTP listener serves.
	URL    string
	cmd    *exec.Cmd
	logs   *logBuffer
	exited chan struct{}
}

// logBuffer collects a process's output.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startDaemon writes the configuration and starts the daemon binary,
// waiting until its listener answers. It is stopped when the test ends,
// and its log is shown if the test failed.
func startDaemon(t *testing.T, spec daemonSpec) *daemonProcess {
	t.Helper()
	ensureHomeNamespace(t)
	addr := freeAddr(t)
	var cfg strings.Builder
	cfg.WriteString("apiVersion: gitk8s.io/v1alpha1\nkind: Config\nclusters:\n")
	for i, c := range env.Contexts {
		name := fmt.Sprintf("c%d", i+1)
		path := env.Kubeconfig
		if p, ok := spec.Kubeconfigs[name]; ok {
			path = p
		}
		fmt.Fprintf(&cfg, "- {name: %s, kubeconfig: {context: %s, path: %s}}\n", name, c, path)
	}
	fmt.Fprintf(&cfg, "syncs:\n%s\nwebhooks:\n  listen: %q\n", strings.TrimRight(spec.Syncs, "\n"), addr)
	if spec.Receivers != "" {
		fmt.Fprintf(&cfg, "  receivers: %s\n", spec.Receivers)
	}
	if spec.LeaderElection != "" {
		fmt.Fprintf(&cfg, "leaderElection: %s\n", spec.LeaderElection)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cache := spec.CacheDir
	if cache == "" {
		cache = filepath.Join(dir, "cache")
	}
	p := &daemonProcess{URL: "http://" + addr, logs: &logBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(gitk8sBinary(t), "daemon", "--config", path, "--git-cache-dir", cache)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("daemon %s log:\n%s", p.URL, tail(p.logs.String(), 150))
		}
	})
	testenv.Poll(t, "the daemon listens", 30*time.Second, 50*time.Millisecond, func() bool {
		select {
		case <-p.exited:
			t.Fatalf("the daemon exited: %s", p.logs.String())
		default:
		}
		resp, err := http.Get(p.URL + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// kill ends the daemon with SIGKILL, as the kernel's OOM killer or a
// node's loss would: it does nothing more, not even release its Lease.
func (p *daemonProcess) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		select {
		case <-p.exited:
			return
		default:
			t.Fatal(err)
		}
	}
	<-p.exited
}

// stop asks the daemon to stop (SIGTERM) and kills it after 40 s.
func (p *daemonProcess) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(40 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

// get answers a GET of path, with its status code.
func (p *daemonProcess) get(path string) (int, []byte, error) {
	resp, err := httpClient.Get(p.URL + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.Bytes(), err
}

// sync is a sync's status as the daemon's status API gives it; false when
// the daemon does not answer it (a standby, or not up).
func (p *daemonProcess) sync(name string) (daemon.SyncStatus, bool) {
	code, body, err := p.get("/api/v1/syncs")
	if err != nil || code != http.StatusOK {
		return daemon.SyncStatus{}, false
	}
	var st struct {
		Syncs []daemon.SyncStatus `json:"syncs"`
	}
	if json.Unmarshal(body, &st) != nil {
		return daemon.SyncStatus{}, false
	}
	for _, s := range st.Syncs {
		if s.Name == name {
			return s, true
		}
	}
	return daemon.SyncStatus{}, false
}

// synced reports whether the sync is Ready at the revision.
func (p *daemonProcess) synced(name, rev string) bool {
	st, ok := p.sync(name)
	return ok && st.LastAppliedRevision == rev && st.Condition("Ready").Status == "True"
}

// waitSynced waits until the sync is Ready at the revision.
func (p *daemonProcess) waitSynced(t *testing.T, name, rev string, d time.Duration) {
	t.Helper()
	testenv.Poll(t, fmt.Sprintf("sync %s Ready at %.12s", name, rev), d, 100*time.Millisecond, func() bool { return p.synced(name, rev) })
}

// role is what the daemon's /readyz says: "leader", "standby", or "" when
// it is not ready.
func (p *daemonProcess) role() string {
	code, body, err := p.get("/readyz")
	if err != nil || code != http.StatusOK {
		return ""
	}
	return strings.TrimSpace(strings.TrimPrefix(string(body), "ok: "))
}

// metric sums the samples of a metric of the daemon's /metrics whose
// series contain every one of match (such as `result="applied"`).
func (p *daemonProcess) metric(t *testing.T, name string, match ...string) float64 {
	t.Helper()
	code, body, err := p.get("/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", code, err)
	}
	sum := 0.0
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		series, value, ok := strings.Cut(line, " ")
		if !ok || (series != name && !strings.HasPrefix(series, name+"{")) {
			continue
		}
		all := true
		for _, m := range match {
			all = all && strings.Contains(series, m)
		}
		if !all {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			t.Fatalf("metric %s: %v", line, err)
		}
		sum += v
	}
	return sum
}

// reconciles is how many reconciles the daemon ran, by result.
func (p *daemonProcess) reconciles(t *testing.T, result string) int {
	t.Helper()
	if result == "" {
		return int(p.metric(t, "gitk8s_reconcile_duration_seconds_count"))
	}
	return int(p.metric(t, "gitk8s_reconcile_duration_seconds_count", `result="`+result+`"`))
}

// reconcileCounts are the daemon's reconciles so far, by result.
type reconcileCounts struct{ applied, failed, unchanged int }

func (p *daemonProcess) reconcileCounts(t *testing.T) reconcileCounts {
	t.Helper()
	return reconcileCounts{p.reconciles(t, "applied"), p.reconciles(t, "failed"), p.reconciles(t, "unchanged")}
}

// since are the reconciles after before.
func (r reconcileCounts) since(before reconcileCounts) reconcileCounts {
	return reconcileCounts{r.applied - before.applied, r.failed - before.failed, r.unchanged - before.unchanged}
}

func (r reconcileCounts) String() string {
	return fmt.Sprintf("%d applied, %d failed, %d unchanged", r.applied, r.failed, r.unchanged)
}
