package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gitk8s/gitk8s/internal/daemon"
	"github.com/gitk8s/gitk8s/internal/reconcile"
	"github.com/gitk8s/gitk8s/internal/testenv"
)

// corpusLimits are the render limits of every case unless it names
// others: little memory, CPU time and output, so that a hostile render
// ends within seconds; a wall-clock bound well above the CPU time, so that
// a busy machine does not turn a case of the CPU limit into one of time.
var corpusLimits = map[string]string{"memory": "256Mi", "cpu": "3s", "timeout": "1m", "output": "4Mi"}

// TestBadInputCorpus runs every case of testdata/badinput through the
// command line and the daemon, against the local control plane and a Git
// server on loopback. Per category, one sync in a namespace of its own
// first applies a good revision; then each case is committed on top of it,
// with that revision's objects changed, one added and one removed, and
// each face must fail with the case's exit code or reason and name what
// the case says, while nothing is written to the cluster (the audit log
// shows no write of gitk8s's but Events and dry-runs), nothing is pruned,
// and the good revision stays applied.
func TestBadInputCorpus(t *testing.T) {
	corpus := readCorpus(t)
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	for _, category := range corpusCategories {
		t.Run(category, func(t *testing.T) {
			switch category {
			case "config":
				runConfigCases(t, corpus[category])
			case "webhooks":
				runWebhookCases(t, corpus[category])
			default:
				runRepositoryCases(t, category, corpus[category])
			}
		})
	}
}

// bench is one category's sync: its namespace, Git server and the good
// revision applied.
type bench struct {
	ns, sync string
	srv      *testenv.GitServer
	client   kubernetes.Interface
	// parent is the last commit made; good the revision applied, with
	// the resourceVersions of its objects.
	parent, good   string
	keepRV, goneRV string
}

// The objects of the good revision, and of every bad one: "keep" changes,
// "added" is new and "gone" is removed, so that a write, a create or a
// prune after a failure shows.
func goodFiles() map[string]string {
	return map[string]string{
		corpusSyncPath + "/keep.yaml": corpusConfigMap("keep", "good"),
		corpusSyncPath + "/gone.yaml": corpusConfigMap("gone", "good"),
	}
}

func changedFiles() map[string]string {
	return map[string]string{
		corpusSyncPath + "/keep.yaml":  corpusConfigMap("keep", "changed"),
		corpusSyncPath + "/added.yaml": corpusConfigMap("added", "changed"),
	}
}

func corpusConfigMap(name, value string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s}\ndata: {value: %s}\n", name, value)
}

func newBench(t *testing.T, category string) *bench {
	t.Helper()
	ns := env.Namespace(t)
	rc := rest.CopyConfig(env.Target(t, "").Config)
	// Its own user agent, so that the audit log tells the test's requests
	// from gitk8s's.
	rc.UserAgent = "gitk8s-corpus-test"
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	b := &bench{ns: ns, sync: category + "-" + ns, srv: testenv.NewGitServer(t), client: client}
	t.Cleanup(func() {
		_ = client.CoreV1().Secrets("gitk8s-system").Delete(context.Background(), reconcile.InventoryName(b.sync), metav1.DeleteOptions{})
	})
	return b
}

// vars are the placeholders a case may use.
func (b *bench) vars(dir string) map[string]string {
	ctx := env.Contexts[0]
	return map[string]string{
		"namespace": b.ns, "sync": b.sync, "url": b.srv.URL, "work": b.srv.Work, "dir": dir,
		"context": ctx, "kubeconfig": env.Kubeconfig,
		"cluster": fmt.Sprintf("{name: %s, kubeconfig: {context: %s, path: %s}}", ctx, ctx, env.Kubeconfig),
	}
}

// syncConfig is the configuration of the category's sync.
func (b *bench) syncConfig(extra string) string {
	ctx := env.Contexts[0]
	return fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: %[1]s, kubeconfig: {context: %[1]s, path: %[2]s}}
syncs:
- name: %[3]s
  source: {url: %[4]s, ref: {branch: main}, path: %[5]s, interval: 1h}
  clusters: [%[1]s]
  namespace: %[6]s
  prune: true
  policies: {skip: true}
%[7]s`, ctx, env.Kubeconfig, b.sync, b.srv.URL, corpusSyncPath, b.ns, extra)
}

// commit writes a commit of files (path → content) and the case's
// entries with Git plumbing and pushes it as main; the work clone's main
// points at it too, for the faces that read a local repository.
func (b *bench) commit(t *testing.T, files map[string]string, c *badCase, vars map[string]string) string {
	t.Helper()
	tree := &gitTree{}
	for name, content := range files {
		tree.add(t, name, "100644", []byte(content))
	}
	if c != nil {
		for _, f := range c.files {
			tree.add(t, repoPath(f.name), "100644", []byte(expand(string(f.data), vars)))
		}
		for _, l := range c.links {
			tree.add(t, repoPath(l.name), "120000", []byte(l.target))
		}
		for _, e := range c.tree {
			data := []byte(expand(e.data, vars))
			if e.size > 0 {
				data, _ = generateFile("filler", fmt.Sprint(e.size))
			}
			tree.add(t, e.path, e.mode, data)
		}
	}
	work := b.srv.Work
	args := []string{"commit-tree", tree.write(t, work), "-m", "corpus"}
	if b.parent != "" {
		args = append(args, "-p", b.parent)
	}
	rev := testenv.Git(t, work, args...)
	testenv.Git(t, work, "update-ref", "refs/heads/main", rev)
	testenv.Git(t, work, "push", "-q", "-f", "origin", "main")
	b.parent = rev
	return rev
}

// applyGood commits and applies the good revision with reconcile, and
// remembers its objects.
func (b *bench) applyGood(t *testing.T, reconcileGood func(t *testing.T)) {
	t.Helper()
	b.good = b.commit(t, goodFiles(), nil, nil)
	reconcileGood(t)
	ctx := context.Background()
	keep, err := b.client.CoreV1().ConfigMaps(b.ns).Get(ctx, "keep", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the good revision was not applied: %v", err)
	}
	gone, err := b.client.CoreV1().ConfigMaps(b.ns).Get(ctx, "gone", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the good revision was not applied: %v", err)
	}
	b.keepRV, b.goneRV = keep.ResourceVersion, gone.ResourceVersion
}

// markAudit remembers where the audit log of the first cluster ends; nil
// when the control plane is not the test's own.
func markAudit(t *testing.T) *testenv.AuditMark {
	t.Helper()
	if env.ControlPlane == nil {
		return nil
	}
	m := env.MarkAudit(t, "")
	return &m
}

// checkNothingWritten asserts that the good revision's objects are as it
// left them, that nothing of the bad one exists, and that gitk8s sent no
// write since the mark but Events and dry-runs.
func (b *bench) checkNothingWritten(t *testing.T, mark *testenv.AuditMark) {
	t.Helper()
	ctx := context.Background()
	cms := b.client.CoreV1().ConfigMaps(b.ns)
	if keep, err := cms.Get(ctx, "keep", metav1.GetOptions{}); err != nil || keep.Data["value"] != "good" || keep.ResourceVersion != b.keepRV {
		t.Errorf("ConfigMap keep of the good revision was changed (%v, %v)", err, keep.Data)
	}
	if gone, err := cms.Get(ctx, "gone", metav1.GetOptions{}); err != nil || gone.ResourceVersion != b.goneRV {
		t.Errorf("ConfigMap gone of the good revision was pruned or changed after a failure (%v)", err)
	}
	if _, err := cms.Get(ctx, "added", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("ConfigMap added of the bad revision exists (%v)", err)
	}
	if mark == nil {
		return
	}
	for _, ev := range mark.Requests(t, "gitk8s") {
		if ev.UserAgent != "gitk8s" {
			continue
		}
		switch ev.Verb {
		case "create", "update", "patch", "delete", "deletecollection":
		default:
			continue
		}
		if ev.ObjectRef.Resource == "events" || strings.Contains(ev.RequestURI, "dryRun=") {
			continue
		}
		t.Errorf("gitk8s wrote after a failure: %s %s (%d)", ev.Verb, ev.RequestURI, ev.ResponseStatus.Code)
	}
}

// limitsOf are a case's render limits; limitFlags and syncLimits give
// them to the CLI and to a daemon sync.
func limitsOf(c *badCase) map[string]string {
	l := map[string]string{}
	for k, v := range corpusLimits {
		l[k] = v
	}
	for k, v := range c.limits {
		l[k] = v
	}
	return l
}

func limitFlags(c *badCase) []string {
	l := limitsOf(c)
	return []string{"--render-memory", l["memory"], "--render-cpu", l["cpu"], "--render-timeout", l["timeout"], "--render-output", l["output"]}
}

func syncLimits(t *testing.T, c *badCase) *daemon.RenderLimitsConfig {
	t.Helper()
	l := limitsOf(c)
	duration := func(s string) daemon.Duration {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		return daemon.Duration{Duration: d}
	}
	memory, output := resource.MustParse(l["memory"]), resource.MustParse(l["output"])
	return &daemon.RenderLimitsConfig{Memory: &memory, CPU: duration(l["cpu"]), Timeout: duration(l["timeout"]), Output: &output}
}

// runCLI runs the command line in this process, bounded in time.
func runCLI(args ...string) (stdout, stderr string, code int) {
	var out, errOut lockedBuffer
	ctx, cancel := context.WithTimeout(context.Background(), faceTimeout)
	defer cancel()
	code = run(ctx, append(args, "--kubeconfig", env.Kubeconfig), &out, &errOut)
	return out.String(), errOut.String(), code
}

// cliText is what the command line said: stderr, and the errors of an
// apply report on stdout, or stdout as it is.
func cliText(stdout, stderr string) string {
	var report applyReport
	if err := json.Unmarshal([]byte(stdout), &report); err != nil || report.Clusters == nil {
		return stderr + "\n" + stdout
	}
	parts := []string{stderr}
	for _, cr := range report.Clusters {
		parts = append(parts, cr.Error, cr.PruneRefused)
		for _, o := range cr.Objects {
			parts = append(parts, o.Error)
		}
		for _, f := range cr.Findings {
			parts = append(parts, f.Message)
		}
	}
	return strings.Join(parts, "\n")
}

// reportReason is the reason an apply report gives its only cluster.
func reportReason(stdout string) string {
	var report applyReport
	if json.Unmarshal([]byte(stdout), &report) != nil || len(report.Clusters) != 1 {
		return ""
	}
	return report.Clusters[0].Reason
}

// checkSays asserts that a face's text says what the case wants, and the
// face's own wants, and nothing the case avoids.
func (c *badCase) checkSays(t *testing.T, face, text string, vars map[string]string, faceWants ...[]string) {
	t.Helper()
	wants := expandAll(c.want, vars)
	for _, list := range faceWants {
		wants = append(wants, expandAll(list, vars)...)
	}
	t.Logf("%s says: %s", face, strings.TrimSpace(text))
	if len(wants) > 0 && strings.TrimSpace(text) == "" {
		t.Errorf("%s: no error at all", face)
		return
	}
	for _, w := range wants {
		if !strings.Contains(text, w) {
			t.Errorf("%s: the error does not say %q:\n%s", face, w, text)
		}
	}
	for _, a := range expandAll(c.avoid, vars) {
		if strings.Contains(text, a) {
			t.Errorf("%s: the output says %q, which it must not:\n%s", face, a, text)
		}
	}
}

// runRepositoryCases runs the cases whose bad input is in the repository.
func runRepositoryCases(t *testing.T, category string, cases []*badCase) {
	b := newBench(t, category)
	d, cfg, _ := daemonFor(t, b.syncConfig(""))
	b.applyGood(t, func(t *testing.T) {
		if err := d.Reconcile(context.Background(), cfg.Syncs[0]); err != nil {
			t.Fatalf("the good revision: %v", err)
		}
	})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Logf("%s: %s", c.file, c.about)
			vars := b.vars(t.TempDir())
			rev := b.commit(t, changedFiles(), c, vars)
			mark := markAudit(t)
			if c.validate != nil {
				src := b.srv.Work // a local Git repository, read at its main
				if len(c.tree) == 0 {
					src = writeCaseDir(t, changedFiles(), c, vars) // a plain directory
				}
				args := append([]string{"validate", src, "--path", corpusSyncPath, "--no-policy"}, limitFlags(c)...)
				stdout, stderr, code := runCLI(append(args, expandAll(c.validateArgs, vars)...)...)
				if code != *c.validate {
					t.Errorf("validate: exit %d, want %d\n%s\n%s", code, *c.validate, stdout, stderr)
				}
				c.checkSays(t, "validate", cliText(stdout, stderr), vars, c.wantValidate)
			}
			if c.apply != nil {
				args := append([]string{"apply", b.srv.URL, "--path", corpusSyncPath, "--sync", b.sync, "-n", b.ns,
					"--prune", "--no-policy", "--no-memory", "-o", "json"}, limitFlags(c)...)
				stdout, stderr, code := runCLI(args...)
				if code != *c.apply {
					t.Errorf("apply: exit %d, want %d\n%s\n%s", code, *c.apply, stdout, stderr)
				}
				if got := reportReason(stdout); got != "" && got != c.reason {
					t.Errorf("apply: reason %s, want %s", got, c.reason)
				}
				c.checkSays(t, "apply", cliText(stdout, stderr), vars, c.wantApply)
			}
			s := cfg.Syncs[0]
			s.Source.RenderLimits = syncLimits(t, c)
			ctx, cancel := context.WithTimeout(context.Background(), faceTimeout)
			err := d.Reconcile(ctx, s)
			cancel()
			st := statusOf(t, d, b.sync)
			if err == nil || st.Condition("Ready").Reason != c.reason {
				t.Errorf("daemon: reason %s (%v), want %s", st.Condition("Ready").Reason, err, c.reason)
			}
			if st.LastAttemptedRevision != rev || st.LastAppliedRevision != b.good {
				t.Errorf("daemon: attempted %s and applied %s; want %s attempted and the good %s still applied", st.LastAttemptedRevision, st.LastAppliedRevision, rev, b.good)
			}
			c.checkSays(t, "daemon", st.LastError, vars, c.wantDaemon)
			b.checkNothingWritten(t, mark)
		})
	}
}

// runConfigCases runs daemon configurations that are wrong: each is loaded
// by the CLI (apply --config, or the daemon command) and by the daemon's
// own start; one that loads is reconciled once. The repository holds a
// revision that differs from the good one applied, so that a face that
// went ahead would show in the cluster.
func runConfigCases(t *testing.T, cases []*badCase) {
	b := newBench(t, "config")
	d, cfg, _ := daemonFor(t, b.syncConfig(""))
	b.applyGood(t, func(t *testing.T) {
		if err := d.Reconcile(context.Background(), cfg.Syncs[0]); err != nil {
			t.Fatalf("the good revision: %v", err)
		}
	})
	b.commit(t, changedFiles(), nil, nil)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Logf("%s: %s", c.file, c.about)
			dir := t.TempDir()
			vars := b.vars(dir)
			for name, keys := range c.secrets {
				secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: b.ns}, StringData: map[string]string{}}
				for k, v := range keys {
					secret.StringData[k] = expand(v, vars)
				}
				if _, err := b.client.CoreV1().Secrets(b.ns).Create(context.Background(), secret, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					_ = b.client.CoreV1().Secrets(b.ns).Delete(context.Background(), name, metav1.DeleteOptions{})
				})
			}
			for _, f := range c.files {
				if err := os.WriteFile(filepath.Join(dir, f.name), []byte(expand(string(f.data), vars)), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			config := filepath.Join(dir, "config.yaml")
			if err := os.WriteFile(config, []byte(expand(c.config, vars)), 0o644); err != nil {
				t.Fatal(err)
			}
			mark := markAudit(t)
			if c.apply != nil {
				stdout, stderr, code := runCLI("apply", b.srv.Work, "--config", config, "--sync", b.sync, "-o", "json")
				if code != *c.apply {
					t.Errorf("apply --config: exit %d, want %d\n%s\n%s", code, *c.apply, stdout, stderr)
				}
				c.checkSays(t, "apply --config", cliText(stdout, stderr), vars, c.wantCLI, c.wantApply)
			}
			if c.daemonCommand != nil {
				stdout, stderr, code := runCLI("daemon", "--config", config, "--git-cache-dir", t.TempDir())
				if code != *c.daemonCommand {
					t.Errorf("daemon --config: exit %d, want %d\n%s\n%s", code, *c.daemonCommand, stdout, stderr)
				}
				c.checkSays(t, "daemon --config", stderr, vars, c.wantCLI)
			}
			for _, r := range c.cli {
				stdout, stderr, code := runCLI(expandAll(r.args, vars)...)
				if code != r.exit {
					t.Errorf("%v: exit %d, want %d\n%s\n%s", r.args, code, r.exit, stdout, stderr)
				}
				c.checkSays(t, strings.Join(r.args[:1], " "), cliText(stdout, stderr), vars, c.wantCLI)
			}
			reason, text := startAndReconcile(t, config, b.sync)
			if reason != c.reason {
				t.Errorf("daemon: %s, want %s: %s", reason, c.reason, text)
			}
			c.checkSays(t, "daemon", text, vars, c.wantDaemon)
			b.checkNothingWritten(t, mark)
		})
	}
}

// startAndReconcile does what the daemon does with a configuration: load
// it, connect, set up its webhook receivers, and reconcile the sync once.
// A configuration refused on the way gives "refused" and the error.
func startAndReconcile(t *testing.T, config, sync string) (reason, text string) {
	t.Helper()
	cfg, err := daemon.LoadConfig(config)
	if err != nil {
		return "refused", err.Error()
	}
	d, err := daemon.New(cfg, daemon.Options{GitCacheDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return "refused", err.Error()
	}
	defer d.Close()
	if _, err := d.Handler(); err != nil {
		return "refused", err.Error()
	}
	s, ok := cfg.Sync(sync)
	if !ok {
		t.Fatalf("the configuration has no sync %s", sync)
	}
	ctx, cancel := context.WithTimeout(context.Background(), faceTimeout)
	defer cancel()
	err = d.Reconcile(ctx, s)
	st := statusOf(t, d, sync)
	if err == nil {
		return "applied", ""
	}
	return st.Condition("Ready").Reason, st.LastError
}

// webhookProviders are the receivers of the webhook cases, by name.
var webhookProviders = map[string]string{"github": "github", "gitlab": "gitlab", "gitea": "gitea", "bitbucket": "bitbucket-server", "generic": "generic"}

// runWebhookCases sends bad requests to a running daemon's webhook
// listener. The repository has moved past the applied revision, so a
// request that triggered the sync would show as a request to the Git
// server (the daemon asks it for the revision), and in the cluster.
func runWebhookCases(t *testing.T, cases []*badCase) {
	b := newBench(t, "webhooks")
	secrets := t.TempDir()
	var receivers strings.Builder
	receivers.WriteString("webhooks:\n  listen: \"127.0.0.1:0\"\n  receivers:\n")
	for name, provider := range webhookProviders {
		if err := os.WriteFile(filepath.Join(secrets, name), []byte(name+"-hook-secret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&receivers, "  - {name: %s, provider: %s, secretFile: %s}\n", name, provider, filepath.Join(secrets, name))
	}
	d, _, _ := daemonFor(t, b.syncConfig(receivers.String()))
	handler, err := d.Handler()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := daemon.NewServer(ln.Addr().String(), handler, daemon.DefaultServerOptions())
	go func() { _ = server.Serve(ln) }()
	t.Cleanup(func() { _ = server.Close() })
	base := "http://" + ln.Addr().String()

	b.applyGood(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := d.Run(ctx); err != nil {
				t.Errorf("daemon: %v", err)
			}
		}()
		t.Cleanup(func() { cancel(); <-done })
		testenv.Within(t, "the good revision applied", time.Minute, func() bool {
			return statusOf(t, d, b.sync).LastAppliedRevision == b.good
		})
	})
	changed := b.commit(t, changedFiles(), nil, nil)
	b.srv.Take()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Logf("%s: %s", c.file, c.about)
			vars := b.vars("")
			mark := markAudit(t)
			code, body := sendWebhook(t, base, c, vars)
			if code != c.status {
				t.Errorf("status %d, want %d: %s", code, c.status, body)
			}
			c.checkSays(t, "webhook", body, vars, c.wantDaemon)
			// A triggered sync asks the Git server for its revision at
			// once; give it the time to.
			time.Sleep(300 * time.Millisecond)
			if reqs := b.srv.Take(); len(reqs) > 0 {
				t.Errorf("the request triggered a reconcile: the Git server got %v", reqs)
			}
			if st := statusOf(t, d, b.sync); st.LastAttemptedRevision != b.good {
				t.Errorf("the daemon attempted %s", st.LastAttemptedRevision)
			}
			b.checkNothingWritten(t, mark)
		})
	}
	// The control: a good push is seen, so the silence above meant something.
	good := &badCase{receiver: "github", sign: "good", headers: [][2]string{{"X-GitHub-Event", "push"}},
		body: `{"ref":"refs/heads/main","repository":{"clone_url":"{{url}}"}}`}
	if code, body := sendWebhook(t, base, good, b.vars("")); code != http.StatusAccepted || !strings.Contains(body, `"triggered":1`) {
		t.Fatalf("a good push: %d %s", code, body)
	}
	testenv.Within(t, "the pushed revision applied", time.Minute, func() bool {
		return statusOf(t, d, b.sync).LastAppliedRevision == changed
	})
}

// sendWebhook sends a case's request and returns the answer.
func sendWebhook(t *testing.T, base string, c *badCase, vars map[string]string) (int, string) {
	t.Helper()
	body := []byte(expand(c.body, vars))
	if c.bodySize > 0 {
		pad := `{"ref":"refs/heads/main","repository":{"clone_url":"` + vars["url"] + `"},"padding":"`
		body = []byte(pad + strings.Repeat("x", int(c.bodySize)-len(pad)-2) + `"}`)
	}
	p := c.hookPath
	if p == "" {
		p = "/hooks/" + c.receiver
	}
	method := c.method
	if method == "" {
		method = http.MethodPost
	}
	header := http.Header{}
	header.Set("Content-Type", "application/json")
	for _, h := range c.headers {
		header.Set(h[0], h[1])
	}
	secret := c.receiver + "-hook-secret"
	switch c.sign {
	case "", "good":
	case "wrong":
		secret = "not-" + secret
	case "none":
		secret = ""
	default:
		t.Fatalf("sign %q: use good, wrong or none", c.sign)
	}
	if secret != "" {
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		sum := hex.EncodeToString(mac.Sum(nil))
		switch webhookProviders[c.receiver] {
		case "github":
			header.Set("X-Hub-Signature-256", "sha256="+sum)
		case "gitea":
			header.Set("X-Gitea-Signature", sum)
		case "bitbucket-server":
			header.Set("X-Hub-Signature", "sha256="+sum)
		case "generic":
			header.Set("X-Signature", "sha256="+sum)
		case "gitlab":
			header.Set("X-Gitlab-Token", secret)
		}
		for _, h := range c.headers { // a case's own headers win
			header.Set(h[0], h[1])
		}
	}
	if c.slow {
		return sendSlowly(t, base, p, header, body)
	}
	req, err := http.NewRequest(method, base+p, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, p, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(answer)
}

// sendSlowly sends the headers and a tenth of the body, then waits for
// the answer without sending the rest.
func sendSlowly(t *testing.T, base, p string, header http.Header, body []byte) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var req bytes.Buffer
	fmt.Fprintf(&req, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n", p, strings.TrimPrefix(base, "http://"), len(body))
	_ = header.Write(&req)
	req.WriteString("\r\n")
	req.Write(body[:len(body)/10])
	if _, err := conn.Write(req.Bytes()); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a slow body: %v", err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(answer)
}
