package daemon

import (
	"bytes"
	"context"
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

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/gitk8s/gitk8s/internal/source"
	"github.com/gitk8s/gitk8s/internal/testenv"
)

func TestLoadConfigSecretProblems(t *testing.T) {
	dir := t.TempDir()
	hookFile := filepath.Join(dir, "hook")
	if err := os.WriteFile(hookFile, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(writeConfig(t, fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: home, kubeconfig: {secretRef: {name: home-kubeconfig}}}
- {name: a, kubeconfig: {inCluster: true, secretRef: {name: a}}}
- {name: b, kubeconfig: {path: /etc/kube/b, secretRef: {name: b}}}
- {name: c, kubeconfig: {secretRef: {namespace: Not_A_Label, name: "", key: "a/b"}}}
syncs:
- name: both
  source: {url: https://git.example/x.git, auth: {secretRef: {name: git}, secretDir: /etc/git}}
  clusters: [a]
- name: neither
  source: {url: https://git.example/x.git, auth: {}}
  clusters: [a]
- name: relative
  source: {url: https://git.example/x.git, auth: {secretDir: etc/git}}
  clusters: [a]
- name: badname
  source: {url: https://git.example/x.git, auth: {secretRef: {name: Git_Creds}}}
  clusters: [a]
- name: charts
  source:
    url: https://git.example/x.git
    chartRepositories:
    - {url: "ftp://charts.example.com"}
    - {url: "https://user:pw@charts.example.com"}
    - {url: "oci://registry.example.com/charts", auth: {secretDir: charts}}
  clusters: [a]
webhooks:
  receivers:
  - {name: none, provider: github}
  - {name: two, provider: github, secretFile: %s, secretRef: {name: hook}}
  - {name: badkey, provider: gitlab, secretRef: {name: hook, key: "no/slash"}}
`, hookFile)))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"cluster home: kubeconfig: the home cluster, where Secrets are read, cannot itself come from a Secret",
		"cluster a: kubeconfig: inCluster excludes context, path and secretRef",
		"cluster b: kubeconfig: give path or secretRef, not both",
		`cluster c: kubeconfig.secretRef: name is required`,
		`cluster c: kubeconfig.secretRef: namespace "Not_A_Label"`,
		`cluster c: kubeconfig.secretRef: key "a/b"`,
		"sync both: source.auth: give one of secretRef or secretDir",
		"sync neither: source.auth: give one of secretRef or secretDir",
		`sync relative: source.auth.secretDir "etc/git" must be an absolute path`,
		`sync badname: source.auth.secretRef: name "Git_Creds"`,
		"sync charts: source.chartRepositories[0].url ftp://charts.example.com: a chart repository is an https:// (or http://) URL or an oci:// registry path",
		"sync charts: source.chartRepositories[1].url https://xxxxx:xxxxx@charts.example.com: give credentials apart from the URL",
		`sync charts: source.chartRepositories[2].auth.secretDir "charts" must be an absolute path`,
		"webhooks.receivers[0]: secretFile or secretRef is required",
		"webhooks.receivers[1]: give secretFile or secretRef, not both",
		`webhooks.receivers[2]: secretRef: key "no/slash"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}

	// A Secret reference of Git credentials has no key: it is refused
	// rather than ignored.
	_, err = LoadConfig(writeConfig(t, `apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters: [{name: a, kubeconfig: {context: a}}]
syncs:
- {name: s, source: {url: https://git.example/x.git, auth: {secretRef: {name: git, key: password}}}, clusters: [a]}
`))
	if err == nil || !strings.Contains(err.Error(), `unknown field "key"`) {
		t.Errorf("a key in source.auth.secretRef is not refused: %v", err)
	}

	// The home cluster named by leaderElection.cluster must exist.
	_, err = LoadConfig(writeConfig(t, `apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters: [{name: a, kubeconfig: {context: a}}]
syncs: [{name: s, source: {url: https://git.example/x.git}, clusters: [a]}]
leaderElection: {cluster: nowhere}
`))
	if err == nil || !strings.Contains(err.Error(), "leaderElection.cluster nowhere is not in clusters") {
		t.Errorf("an unknown home cluster is not refused: %v", err)
	}

	// Every new field, well formed.
	cfg, err := LoadConfig(writeConfig(t, `apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: home, kubeconfig: {inCluster: true}}
- {name: eu-1, kubeconfig: {secretRef: {name: eu-1-kubeconfig}}}
- {name: eu-2, kubeconfig: {context: admin, secretRef: {namespace: capi, name: eu-2-kubeconfig, key: value}}}
syncs:
- {name: s, source: {url: https://git.example/x.git, auth: {secretRef: {name: git}}}, clusters: [eu-1]}
- {name: d, source: {url: ssh://git@git.example/x.git, auth: {secretDir: /etc/git}}, clusters: [eu-2]}
webhooks:
  receivers: [{name: gh, provider: github, secretRef: {name: hook}}]
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Clusters[2].Kubeconfig.SecretRef; got == nil || got.Namespace != "capi" || got.Key != "value" {
		t.Errorf("eu-2 kubeconfig.secretRef %+v", got)
	}
}

func TestSecretKeysToAuth(t *testing.T) {
	tests := []struct {
		name    string
		url     string
		data    map[string]string
		want    source.Auth
		wantErr string
	}{
		{name: "basic", url: "https://git.example/x.git",
			data: map[string]string{"username": "bot\n", "password": "pw\n", "ca.crt": "PEM", "other": "ignored"},
			want: source.Auth{Username: "bot", Password: "pw", CABundle: []byte("PEM")}},
		{name: "token as the password", url: "https://git.example/x.git",
			data: map[string]string{"token": "tok"}, want: source.Auth{Password: "tok"}},
		{name: "bearerToken before token", url: "https://git.example/x.git",
			data: map[string]string{"bearerToken": "bt", "token": "tok"}, want: source.Auth{Password: "bt"}},
		{name: "password before tokens", url: "https://git.example/x.git",
			data: map[string]string{"username": "u", "password": "pw", "token": "tok"}, want: source.Auth{Username: "u", Password: "pw"}},
		{name: "ssh", url: "ssh://git@git.example/x.git",
			data: map[string]string{"identity": "KEY", "identity.pub": "PUB", "known_hosts": "KH", "passphrase": "pp\n"},
			want: source.Auth{SSHKey: []byte("KEY"), SSHKeyPassphrase: "pp", KnownHosts: []byte("KH")}},
		{name: "scp-like ssh without a key", url: "git@git.example:org/x.git",
			data: map[string]string{"known_hosts": "KH", "password": "pw"}, wantErr: "source.auth: Secret ns/git has no key identity, which the SSH remote git@git.example:org/x.git needs"},
		{name: "ssh without known_hosts", url: "ssh://git@git.example/x.git",
			data: map[string]string{"identity": "KEY"}, wantErr: "source.auth: Secret ns/git has no key known_hosts, which the SSH remote ssh://git@git.example/x.git needs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := map[string][]byte{}
			for k, v := range tt.data {
				data[k] = []byte(v)
			}
			got, err := authFromKeys(tt.url, "Secret ns/git", data)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error %v, want %s", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "pw") {
					t.Errorf("the error holds a value: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("auth (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSecretDirAsKubeletMountsIt reads a directory laid out as the kubelet
// mounts a Secret: keys are links into a timestamped directory.
func TestSecretDirAsKubeletMountsIt(t *testing.T) {
	dir := t.TempDir()
	stamp := filepath.Join(dir, "..2025_01_01_00_00_00.1")
	if err := os.Mkdir(stamp, 0o755); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"username": "bot", "password": "pw"} {
		if err := os.WriteFile(filepath.Join(stamp, k), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Base(stamp), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"username", "password"} {
		if err := os.Symlink(filepath.Join("..data", k), filepath.Join(dir, k)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := readSecretDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string][]byte{"username": []byte("bot"), "password": []byte("pw")}, got); diff != "" {
		t.Errorf("keys (-want +got):\n%s", diff)
	}
	if _, err := readSecretDir(filepath.Join(dir, "absent")); err == nil || !strings.Contains(err.Error(), "absent") {
		t.Errorf("a missing directory: %v", err)
	}
}

func TestKubeconfigRefusesLocalAccess(t *testing.T) {
	ok := &clientcmdapi.Cluster{Server: "https://k.example", CertificateAuthorityData: []byte("CA")}
	tests := []struct {
		name    string
		user    clientcmdapi.AuthInfo
		cluster clientcmdapi.Cluster
		want    string
	}{
		{"inline data", clientcmdapi.AuthInfo{Token: "t", ClientCertificateData: []byte("c"), ClientKeyData: []byte("k")}, *ok, ""},
		{"exec plugin", clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{Command: "aws", Args: []string{"--secret", "s3"}}}, *ok, `user "u" has an exec plugin`},
		{"auth provider", clientcmdapi.AuthInfo{AuthProvider: &clientcmdapi.AuthProviderConfig{Name: "oidc"}}, *ok, `user "u" has an auth provider (oidc)`},
		{"token file", clientcmdapi.AuthInfo{TokenFile: "/var/run/secrets/token"}, *ok, `user "u" has tokenFile, a file path`},
		{"certificate file", clientcmdapi.AuthInfo{ClientCertificate: "/etc/c.pem", ClientKeyData: []byte("k")}, *ok, `user "u" has client-certificate, a file path`},
		{"key file", clientcmdapi.AuthInfo{ClientCertificateData: []byte("c"), ClientKey: "/etc/k.pem"}, *ok, `user "u" has client-key, a file path`},
		{"CA file", clientcmdapi.AuthInfo{Token: "t"}, clientcmdapi.Cluster{Server: "https://k.example", CertificateAuthority: "/etc/ca.pem"}, `cluster entry "c" has certificate-authority, a file path`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kc := clientcmdapi.NewConfig()
			kc.AuthInfos["u"] = &tt.user
			kc.Clusters["c"] = &tt.cluster
			kc.Contexts["x"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
			kc.CurrentContext = "x"
			err := refuseLocalAccess(kc)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("error %v, want %q", err, tt.want)
			case err != nil && strings.Contains(err.Error(), "s3"):
				t.Errorf("the error holds an exec argument: %v", err)
			}
		})
	}
}

// daemonRun is a daemon running in a test, with its logs captured.
type daemonRun struct {
	d    *Daemon
	mu   sync.Mutex
	logs bytes.Buffer
}

func runDaemon(t *testing.T, config string) *daemonRun {
	t.Helper()
	cfg, err := LoadConfig(writeConfig(t, config))
	if err != nil {
		t.Fatal(err)
	}
	r := &daemonRun{}
	d, err := New(cfg, Options{GitCacheDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &r.logs, mu: &r.mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	r.d = d
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

func (r *daemonRun) status(name string) SyncStatus {
	for _, s := range r.d.Status() {
		if s.Name == name {
			return s
		}
	}
	return SyncStatus{}
}

func (r *daemonRun) eventually(t *testing.T, what string, within time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("%s did not happen within %s; status %+v\nlogs:\n%s", what, within, r.d.Status(), r.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// noLeak fails the test when a Secret value shows in the logs, the
// status API, the status page, the metrics or the errors.
func (r *daemonRun) noLeak(t *testing.T, values []string, more ...string) {
	t.Helper()
	h, err := r.d.Handler()
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	seen := map[string]string{"logs": r.logs.String()}
	r.mu.Unlock()
	for _, path := range []string{"/api/v1/syncs", "/metrics", "/"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		seen[path] = rec.Body.String()
	}
	for i, s := range r.d.Status() {
		seen[fmt.Sprintf("status[%d].lastError", i)] = s.LastError
	}
	for i, m := range more {
		seen[fmt.Sprintf("more[%d]", i)] = m
	}
	for where, text := range seen {
		for _, v := range values {
			if strings.Contains(text, v) {
				t.Errorf("the Secret value %q shows in %s", v, where)
			}
		}
	}
}

func putSecret(t *testing.T, ns, name string, data map[string]string) {
	t.Helper()
	client := env.Client(t, "")
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, StringData: data}
	ctx := context.Background()
	if old, err := client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
		// StringData replaces Data: keys left out are removed.
		s.ResourceVersion = old.ResourceVersion
		if _, err := client.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		return
	}
	if _, err := client.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func configMap(ns, name, value string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s, namespace: %s}\ndata: {value: %q}\n", name, ns, value)
}

func configMapValue(t *testing.T, ns, name string) string {
	c, err := env.Client(t, "").CoreV1().ConfigMaps(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return ""
	}
	return c.Data["value"]
}

// TestSecretGitCredentials syncs a private repository with credentials
// from a Secret, follows a rotation of the password within the Secret
// cache's lifetime and an interval, and fails only the sync whose Secret
// is missing, naming it. No value shows anywhere.
func TestSecretGitCredentials(t *testing.T) {
	ns := env.Namespace(t)
	const oldPassword, newPassword = "old-pw-3b1f9c", "new-pw-7d2e4a"
	srv := testenv.NewGitServer(t)
	first := srv.Commit(t, map[string]string{"cm.yaml": configMap(ns, "settings", "one")})
	srv.RequireAuth("bot", oldPassword)
	putSecret(t, ns, "git", map[string]string{"username": "bot", "password": oldPassword, "unrelated": "x"})

	r := runDaemon(t, fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: %[1]s, path: %[2]s}}
syncs:
- name: private
  source: {url: %[3]s, ref: {branch: main}, interval: 1s, auth: {secretRef: {namespace: %[4]s, name: git}}}
  clusters: [local]
- name: missing
  source: {url: %[3]s, ref: {branch: main}, interval: 1s, auth: {secretRef: {namespace: %[4]s, name: absent}}}
  clusters: [local]
`, env.Contexts[0], env.Kubeconfig, srv.URL, ns))

	r.eventually(t, "the private repository synced", 30*time.Second, func() bool {
		return configMapValue(t, ns, "settings") == "one" && r.status("private").LastAppliedRevision == first
	})
	r.eventually(t, "the missing Secret reported", 30*time.Second, func() bool {
		return r.status("missing").Condition("Ready").Reason == ReasonSourceUnavailable
	})
	if st := r.status("missing"); !strings.Contains(st.LastError, "Secret "+ns+"/absent") || !strings.Contains(st.LastError, "not found") {
		t.Errorf("the missing Secret's error does not name it: %q", st.LastError)
	}
	if st := r.status("private"); st.Condition("Ready").Status != "True" {
		t.Errorf("a missing Secret of another sync failed this one: %+v", st)
	}

	// Rotate: the server takes only the new password, the Secret holds it.
	srv.RequireAuth("bot", newPassword)
	second := srv.Commit(t, map[string]string{"cm.yaml": configMap(ns, "settings", "two")})
	rotated := time.Now()
	putSecret(t, ns, "git", map[string]string{"username": "bot", "password": newPassword})
	// The cache may hold the old password for up to SecretTTL; then a
	// reconcile comes within the interval (1 s) or the backoff (capped at
	// the interval).
	r.eventually(t, "the rotated password used", SecretTTL+10*time.Second, func() bool {
		return configMapValue(t, ns, "settings") == "two" && r.status("private").LastAppliedRevision == second
	})
	t.Logf("synced %s after the rotation", time.Since(rotated).Round(100*time.Millisecond))

	// The old password, now refused, fails the sync with a message that
	// does not hold it.
	srv.RequireAuth("bot", "another-"+newPassword)
	third := srv.Commit(t, map[string]string{"cm.yaml": configMap(ns, "settings", "three")})
	r.eventually(t, "the refused password reported", 30*time.Second, func() bool {
		st := r.status("private")
		return st.Condition("Ready").Reason == ReasonSourceUnavailable && strings.Contains(st.LastError, "credentials were refused")
	})
	if r.status("private").LastAppliedRevision == third {
		t.Error("a refused password synced")
	}
	r.noLeak(t, []string{oldPassword, newPassword})
}

// TestKubeconfigFromSecret reaches a cluster with a kubeconfig from a
// Secret (under the fallback key too), refuses one with an exec plugin,
// naming the cluster and the user, and fails only the cluster whose Secret
// is missing.
func TestKubeconfigFromSecret(t *testing.T) {
	ns := env.Namespace(t)
	raw, err := clientcmd.LoadFromFile(env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	ctxName := env.Contexts[0]
	kctx := raw.Contexts[ctxName]
	admin := clientcmdapi.NewConfig()
	admin.Clusters["local"] = raw.Clusters[kctx.Cluster]
	admin.AuthInfos["admin"] = raw.AuthInfos[kctx.AuthInfo]
	admin.Contexts["admin"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "admin"}
	admin.CurrentContext = "admin"
	good, err := clientcmd.Write(*admin)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := string(admin.AuthInfos["admin"].ClientKeyData)
	if keyPEM == "" {
		t.Fatal("the test control plane's kubeconfig has no inline client key")
	}
	// The part of the key between its PEM lines is what must not leak.
	keyBody := strings.Split(strings.TrimSpace(keyPEM), "\n")[1]

	marker := filepath.Join(t.TempDir(), "exec-ran")
	const execToken = "exec-token-5c8d1e"
	evil := clientcmdapi.NewConfig()
	evil.Clusters["local"] = raw.Clusters[kctx.Cluster]
	evil.AuthInfos["plugin-user"] = &clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{
		APIVersion: "client.authentication.k8s.io/v1", Command: "/bin/sh", Args: []string{"-c", "touch " + marker + "; echo " + execToken},
		InteractiveMode: clientcmdapi.NeverExecInteractiveMode}}
	evil.Contexts["evil"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "plugin-user"}
	evil.CurrentContext = "evil"
	bad, err := clientcmd.Write(*evil)
	if err != nil {
		t.Fatal(err)
	}
	putSecret(t, ns, "remote-kubeconfig", map[string]string{"value": string(good)})
	putSecret(t, ns, "capi-style", map[string]string{"kubeconfig": string(good)})
	putSecret(t, ns, "exec-kubeconfig", map[string]string{"value": string(bad)})

	// One repository per sync: syncs do not take over each other's objects.
	repo := func(name, value string) string {
		srv := testenv.NewGitServer(t)
		srv.Commit(t, map[string]string{"cm.yaml": configMap(ns, name, value)})
		return srv.URL
	}
	r := runDaemon(t, fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: home, kubeconfig: {context: %[1]s, path: %[2]s}}
- {name: remote, kubeconfig: {secretRef: {namespace: %[3]s, name: remote-kubeconfig}}}
- {name: capi, kubeconfig: {secretRef: {namespace: %[3]s, name: capi-style}}}
- {name: gone, kubeconfig: {secretRef: {namespace: %[3]s, name: absent, key: value}}}
- {name: plugin, kubeconfig: {secretRef: {namespace: %[3]s, name: exec-kubeconfig}}}
syncs:
- {name: remote, source: {url: %[4]s, interval: 1s}, clusters: [remote]}
- {name: fallback, source: {url: %[5]s, interval: 1s}, clusters: [capi]}
- {name: partly, source: {url: %[6]s, interval: 1s}, clusters: [remote, gone]}
- {name: plugin, source: {url: %[7]s, interval: 1s}, clusters: [plugin]}
`, ctxName, env.Kubeconfig, ns, repo("remote", "via-secret"), repo("fallback", "via-fallback-key"), repo("partly", "partly"), repo("exec", "must-not-exist")))

	r.eventually(t, "the cluster from a Secret synced", 30*time.Second, func() bool {
		return r.status("remote").Condition("Ready").Status == "True" && r.status("fallback").Condition("Ready").Status == "True" &&
			configMapValue(t, ns, "remote") == "via-secret" && configMapValue(t, ns, "fallback") == "via-fallback-key"
	})
	r.eventually(t, "the missing and the refused kubeconfig reported", 30*time.Second, func() bool {
		return r.status("partly").Condition("Ready").Reason == ReasonClusterUnavailable &&
			r.status("plugin").Condition("Ready").Reason == ReasonClusterUnavailable
	})
	if e := r.status("partly").LastError; !strings.Contains(e, "cluster gone: kubeconfig: Secret "+ns+"/absent") || !strings.Contains(e, "not found") {
		t.Errorf("the missing kubeconfig Secret is not named: %q", e)
	}
	if e := r.status("partly").LastError; strings.Contains(e, "cluster remote") || configMapValue(t, ns, "partly") != "partly" {
		t.Errorf("the missing Secret of one cluster failed the other: %q", e)
	}
	e := r.status("plugin").LastError
	for _, want := range []string{"cluster plugin: kubeconfig in Secret " + ns + "/exec-kubeconfig key value", `user "plugin-user" has an exec plugin`} {
		if !strings.Contains(e, want) {
			t.Errorf("the refusal lacks %q: %q", want, e)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the exec plugin of a kubeconfig from a Secret ran")
	}
	if v := configMapValue(t, ns, "exec"); v != "" {
		t.Errorf("a refused kubeconfig applied: %q", v)
	}
	r.noLeak(t, []string{keyBody, execToken})
}

// TestSecretWebhookReceiver takes a webhook's secret from a Secret: a
// correctly signed push is accepted, a bad one is 401, a rotated secret
// takes effect within the cache's lifetime, and a missing Secret stops the
// daemon at start.
func TestSecretWebhookReceiver(t *testing.T) {
	ns := env.Namespace(t)
	const oldToken, newToken = "hook-old-41a7", "hook-new-93c2"
	putSecret(t, ns, "hook", map[string]string{"token": oldToken})
	config := func(secret string) string {
		return fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: %s, path: %s}}
syncs:
- {name: shop, source: {url: "https://git.example/org/shop.git", ref: {branch: main}, interval: 1h}, clusters: [local], suspend: true}
webhooks:
  receivers: [{name: gh, provider: github, secretRef: {namespace: %s, name: %s}, perMinute: 100000}]
`, env.Contexts[0], env.Kubeconfig, ns, secret)
	}
	r := runDaemon(t, config("hook"))
	h, err := r.d.Handler()
	if err != nil {
		t.Fatal(err)
	}
	push := `{"ref":"refs/heads/main","repository":{"clone_url":"https://git.example/org/shop.git"}}`
	post := func(secret string) (int, string) {
		req := httptest.NewRequest(http.MethodPost, "/hooks/gh", strings.NewReader(push))
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-Hub-Signature-256", "sha256="+sign(secret, push))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	var bodies []string
	code, body := post(oldToken)
	bodies = append(bodies, body)
	if code != http.StatusAccepted || !strings.Contains(body, `"triggered":1`) {
		t.Errorf("a correctly signed push: %d %s", code, body)
	}
	code, body = post("wrong")
	bodies = append(bodies, body)
	if code != http.StatusUnauthorized {
		t.Errorf("a badly signed push: %d %s", code, body)
	}

	putSecret(t, ns, "hook", map[string]string{"token": newToken})
	r.eventually(t, "the rotated webhook secret used", SecretTTL+5*time.Second, func() bool {
		code, body := post(newToken)
		bodies = append(bodies, body)
		return code == http.StatusAccepted
	})
	code, body = post(oldToken)
	bodies = append(bodies, body)
	if code != http.StatusUnauthorized {
		t.Errorf("the old secret after a rotation: %d %s", code, body)
	}

	// A missing Secret stops the daemon at start, naming the receiver and
	// the Secret.
	cfg, err := LoadConfig(writeConfig(t, config("absent")))
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(cfg, Options{GitCacheDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Handler()
	if err == nil || !strings.Contains(err.Error(), "webhook receiver gh: Secret "+ns+"/absent") || !strings.Contains(err.Error(), "not found") {
		t.Errorf("a missing webhook Secret: %v", err)
	}
	// A Secret without the key is as bad.
	putSecret(t, ns, "nokey", map[string]string{"other": oldToken})
	if cfg, err = LoadConfig(writeConfig(t, config("nokey"))); err != nil {
		t.Fatal(err)
	}
	if d, err = New(cfg, Options{GitCacheDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))}); err != nil {
		t.Fatal(err)
	}
	_, err2 := d.Handler()
	if err2 == nil || err2.Error() != "webhook receiver gh: Secret "+ns+"/nokey has no key token" {
		t.Errorf("a webhook Secret without the key: %v", err2)
	}
	r.noLeak(t, []string{oldToken, newToken}, append(bodies, fmt.Sprint(err), fmt.Sprint(err2))...)
}
