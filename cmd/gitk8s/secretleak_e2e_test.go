package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"html"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/daemon"
	"github.com/gitk8s/gitk8s/internal/testenv"
	"github.com/gitk8s/gitk8s/internal/testenv/chartrepo"
)

// leakForms are the texts a value may be found as in an output: as it is;
// in base64 of both alphabets, padded or not; URL-encoded; quoted as Go
// and JSON quote it; HTML-escaped. A value with line breaks is also looked
// for line by line.
func leakForms(v string) []string {
	b := []byte(v)
	forms := []string{v,
		base64.StdEncoding.EncodeToString(b), base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b),
		url.QueryEscape(v), url.PathEscape(v), html.EscapeString(v),
		strings.Trim(strconv.Quote(v), `"`), strings.Trim(strconv.QuoteToASCII(v), `"`),
	}
	if j, err := json.Marshal(v); err == nil {
		forms = append(forms, strings.Trim(string(j), `"`))
	}
	var plain bytes.Buffer
	enc := json.NewEncoder(&plain)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) == nil {
		forms = append(forms, strings.Trim(strings.TrimSpace(plain.String()), `"`))
	}
	if strings.Contains(v, "\n") {
		for _, line := range strings.Split(v, "\n") {
			if len(line) >= 8 {
				forms = append(forms, line)
			}
		}
	}
	return forms
}

// leakOutput is one output of gitk8s: what produced it and its text.
type leakOutput struct {
	what, text string
	// credentialsOnly outputs may show the repository's Secret values by
	// contract (gitk8s render prints the objects it renders), but never a
	// credential.
	credentialsOnly bool
}

// leakSearch gathers every output and searches them all at the end.
type leakSearch struct {
	t       *testing.T
	outputs []leakOutput
}

func (s *leakSearch) add(what, text string) {
	s.outputs = append(s.outputs, leakOutput{what: what, text: text})
}

// cli runs gitk8s with args and records stdout and stderr; it fails the
// test when the exit code is not one of want.
func (s *leakSearch) cli(want []int, args ...string) (stdout, stderr string) {
	s.t.Helper()
	return s.runCLI(false, want, args)
}

// render is cli for gitk8s render, whose stdout is the rendered objects
// with their Secret values masked.
func (s *leakSearch) render(want []int, args ...string) (stdout, stderr string) {
	s.t.Helper()
	return s.runCLI(false, want, append([]string{"render"}, args...))
}

// renderShowingSecrets is gitk8s render --show-secrets, whose stdout holds
// the repository's Secret values by request, but never a credential.
func (s *leakSearch) renderShowingSecrets(want []int, args ...string) (stdout, stderr string) {
	s.t.Helper()
	return s.runCLI(true, want, append([]string{"render", "--show-secrets"}, args...))
}

func (s *leakSearch) runCLI(printsObjects bool, want []int, args []string) (stdout, stderr string) {
	s.t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	what := "gitk8s " + strings.Join(args, " ")
	s.outputs = append(s.outputs, leakOutput{what: what + " (stdout)", text: out.String(), credentialsOnly: printsObjects && code == exitOK})
	s.add(what+" (stderr)", errOut.String())
	for _, w := range want {
		if code == w {
			return out.String(), errOut.String()
		}
	}
	s.t.Errorf("%s: exit %d, want %v\nstdout:\n%s\nstderr:\n%s", what, code, want, out.String(), errOut.String())
	return out.String(), errOut.String()
}

// search reports every planted value found in any output, in any form.
func (s *leakSearch) search(repoValues, credentials map[string]string) {
	s.t.Helper()
	hits := 0
	for _, o := range s.outputs {
		texts := []string{o.text, html.UnescapeString(o.text)}
		check := func(kind, name, value string) {
			for _, form := range leakForms(value) {
				for _, text := range texts {
					if i := strings.Index(text, form); i >= 0 {
						hits++
						from, to := max(0, i-80), min(len(text), i+len(form)+80)
						s.t.Errorf("%s: %s %s found as %q in:\n…%s…", o.what, kind, name, form, text[from:to])
						return
					}
				}
			}
		}
		for name, v := range credentials {
			check("credential", name, v)
		}
		if !o.credentialsOnly {
			for name, v := range repoValues {
				check("Secret value", name, v)
			}
		}
	}
	s.t.Logf("searched %d outputs (%d bytes) for %d values in %d forms each: %d hits", len(s.outputs), s.size(), len(repoValues)+len(credentials), len(leakForms("x")), hits)
}

func (s *leakSearch) size() int {
	n := 0
	for _, o := range s.outputs {
		n += len(o.text)
	}
	return n
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func freeAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestNoSecretValueLeaks plants distinctive values in everything gitk8s
// reads — Secret data and stringData, a multi-line value, a Secret in a
// List, a FederatedSecret's template and overrides, kustomize-generated
// Secrets (literals, files and env files), live values and the
// last-applied annotation of a live Secret, values the API server refuses
// and quotes, Git credentials in every form (user:password in the URL, a
// token as the URL's user or in its query, a password file,
// $GITK8S_GIT_PASSWORD, an SSH identity and its passphrase, Secrets the
// daemon reads), the GitHub and GitLab webhook tokens, an OCI registry's
// password and kubeconfig tokens — then runs every output path, failing
// ones included: render, validate, diff, apply and push in each of their
// formats, status, the daemon's logs, the Events in every cluster, the
// status API and page, /metrics and the webhook answers. No value may appear in any of them,
// plain, in base64, URL-encoded or escaped. Environment literals are not
// planted: gitk8s does not treat them as secret (its diff shows them; the
// secret-in-env-literal policy warns about them).
func TestNoSecretValueLeaks(t *testing.T) {
	ns := env.Namespace(t)
	one, two, three := env.Contexts[0], env.Contexts[1], env.Contexts[2]
	ctx := context.Background()
	r := randomHex(t, 4)
	// A number twelve digits long, which nothing else gitk8s or the
	// clusters print (counts, times, versions) is likely to contain.
	pin, err := rand.Int(rand.Reader, big.NewInt(900000000000))
	if err != nil {
		t.Fatal(err)
	}
	repo := map[string]string{
		"data":             "leak-data-" + r,
		"stringData":       "leak-string-" + r,
		"multi-line":       "leak multi-line " + r + "\nsecond <line> & \"quoted\" " + r,
		"in a List":        "leak-listed-" + r,
		"federated data":   "leak-fed-data-" + r,
		"federated string": "leak-fed-string-" + r,
		"federated over":   "leak-fed-override-" + r,
		"generated":        "leak-generated-" + r,
		"generated file":   "leak-generated-file-" + r,
		"generated env":    "leak-generated-env-" + r,
		"cluster three":    "leak-three-" + r,
		"live":             "leak-live-only-" + r,
		"last-applied":     "leak-last-applied-" + r,
		"changed":          "leak-changed-" + r,
		"refused":          "leak-refused-" + r + "\nrefused second line " + r,
		"refused number":   strconv.FormatInt(pin.Int64()+100000000000, 10),
		"broken literal":   "leak-broken-literal-" + r,
		"sops-encrypted":   "leak-sops-" + r,
	}
	credentials := map[string]string{
		"Git password":                "p@ss/w:rd+" + r,
		"Git token as user":           "ghp_" + randomHex(t, 16),
		"wrong Git password":          "wrong-p@ss-" + r,
		"unreachable Git password":    "unreach-p@ss-" + r,
		"unreachable Git token":       "unreach-token-" + r,
		"daemon's Git password":       "daemon-p@ss-" + r,
		"webhook token":               "whsec-" + randomHex(t, 12),
		"refused kubeconfig token":    "refused-kube-token-" + r,
		"wrong webhook token":         "wrong-whsec-" + r,
		"Git password in environment": "env-p@ss-" + r,
		"Git token in the query":      "glpat-" + randomHex(t, 10),
		"SSH key passphrase":          "ssh-pass/" + r,
		"wrong SSH key passphrase":    "wrong-ssh-pass-" + r,
		"daemon's SSH key passphrase": "daemon-ssh-pass-" + r,
		"daemon's query token":        "daemon-glpat-" + r,
		"GitLab webhook token":        "gitlab-whsec-" + randomHex(t, 12),
		"wrong GitLab webhook token":  "wrong-gitlab-whsec-" + r,
		"OCI password":                "oci-p@ss:" + r,
		"wrong OCI password":          "wrong-oci-p@ss-" + r,
	}
	// SSH identities, each encrypted with its passphrase, for a remote
	// that does not answer (a known_hosts line lets the dial happen).
	sshIdentity := func(passphrase string) string {
		t.Helper()
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		block, err := ssh.MarshalPrivateKeyWithPassphrase(key, "", []byte(passphrase))
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(block))
	}
	credentials["SSH identity"] = sshIdentity(credentials["SSH key passphrase"])
	credentials["daemon's SSH identity"] = sshIdentity(credentials["daemon's SSH key passphrase"])
	hostKey, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshHostKey, err := ssh.NewPublicKey(hostKey)
	if err != nil {
		t.Fatal(err)
	}
	const sshURL = "ssh://git@127.0.0.1:1/x.git"
	knownHosts := knownhosts.Line([]string{knownhosts.Normalize("127.0.0.1:1")}, sshHostKey) + "\n"
	// A Secret encrypted with SOPS: the CLI decrypts it with the key file
	// in its environment, the daemon with the key in a Secret.
	ageKey, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	credentials["SOPS age key"] = ageKey.String()
	t.Setenv("SOPS_AGE_KEY_FILE", writeTemp(t, "keys.txt", ageKey.String()+"\n"))
	leaks := &leakSearch{t: t}
	t.Setenv("XDG_CACHE_HOME", t.TempDir())

	// The objects reach clusters two and three too.
	for _, c := range []string{two, three} {
		client := env.Client(t, c)
		if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	}

	// Cluster three is reached with a service account's token, from a
	// kubeconfig in a Secret.
	threeClient := env.Client(t, three)
	sa := "leak-" + ns
	if _, err := threeClient.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: sa},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: ns}}}
	if _, err := threeClient.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = threeClient.RbacV1().ClusterRoleBindings().Delete(context.Background(), sa, metav1.DeleteOptions{})
	})
	expiry := int64(3600)
	tok, err := threeClient.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Cluster three's token is a credential too, once the API server issued it.
	credentials["cluster three's kube token"] = tok.Status.Token
	raw, err := clientcmd.LoadFromFile(env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	tokenKubeconfig := func(context, token string) []byte {
		t.Helper()
		c := raw.Contexts[context]
		cfg := clientcmdapi.NewConfig()
		cfg.Clusters[context] = raw.Clusters[c.Cluster]
		cfg.AuthInfos["token"] = &clientcmdapi.AuthInfo{Token: token}
		cfg.Contexts[context] = &clientcmdapi.Context{Cluster: context, AuthInfo: "token", Namespace: ns}
		cfg.CurrentContext = context
		data, err := clientcmd.Write(*cfg)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	refusedKubeconfig := writeTemp(t, "kubeconfig", string(tokenKubeconfig(one, credentials["refused kubeconfig token"])))

	// The repository, served by three Git servers: one with a password,
	// one public, one whose password only the daemon's Secret holds.
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	secret := func(value string) string {
		return fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: db, namespace: %s}
type: Opaque
data: {password: %s}
stringData: {token: %s, certificate: %s}
`, ns, b64(value), repo["stringData"], strconv.Quote(repo["multi-line"]))
	}
	files := map[string]string{
		"deploy/secret.yaml": secret(repo["data"]),
		"deploy/sops.yaml": testenv.SOPSEncrypt(t, "sops.yaml", fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: sops-db, namespace: %s}\nstringData: {password: %s}\n", ns, repo["sops-encrypted"]),
			ageKey.Recipient().String()),
		"deploy/list.yaml": fmt.Sprintf(`apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Secret, metadata: {name: listed, namespace: %s}, data: {key: %s}}
- {apiVersion: v1, kind: ConfigMap, metadata: {name: plain, namespace: %s}, data: {visible: not-a-secret}}
`, ns, b64(repo["in a List"]), ns),
		"deploy/federated.yaml": fmt.Sprintf(`apiVersion: types.kubefed.io/v1beta1
kind: FederatedNamespace
metadata: {name: %[1]s, namespace: %[1]s}
spec: {placement: {clusters: [{name: one}, {name: two}]}}
---
apiVersion: types.kubefed.io/v1beta1
kind: FederatedSecret
metadata: {name: federated, namespace: %[1]s}
spec:
  template:
    type: Opaque
    data: {a: %[2]s}
    stringData: {b: %[3]s}
  placement: {clusters: [{name: one}, {name: two}]}
  overrides:
  - clusterName: two
    clusterOverrides:
    - {path: /data/a, value: %[4]s}
`, ns, b64(repo["federated data"]), repo["federated string"], b64(repo["federated over"])),
		"kust/kustomization.yaml": fmt.Sprintf(`namespace: %s
secretGenerator:
- name: generated
  literals: [token=%s]
  files: [config.txt]
  envs: [secret.env]
`, ns, repo["generated"]),
		"kust/config.txt": repo["generated file"],
		"kust/secret.env": "LEAK_ENV=" + repo["generated env"] + "\n",
		"three/objects.yaml": fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: %[1]s}
---
apiVersion: v1
kind: Secret
metadata: {name: three, namespace: %[1]s}
stringData: {value: %[2]s}
`, ns, repo["cluster three"]),
		// A generator literal without "=": kustomize refuses it, quoting it.
		"badrender/kustomization.yaml": fmt.Sprintf("namespace: %s\nsecretGenerator:\n- name: broken\n  literals: [%s]\n", ns, repo["broken literal"]),
		// The API server refuses both, quoting what it refuses.
		"bad/refused.yaml": fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: refused, namespace: %[1]s}
data:
  nested: {inner: %[2]s}
---
apiVersion: v1
kind: Secret
metadata: {name: pin, namespace: %[1]s}
stringData: {pin: %[3]s}
`, ns, strconv.Quote(repo["refused"]), repo["refused number"]),
	}
	private := testenv.NewGitServer(t)
	private.RequireAuth("cli-user", credentials["Git password"])
	public := testenv.NewGitServer(t)
	daemonGit := testenv.NewGitServer(t)
	daemonGit.RequireAuth("daemon-user", credentials["daemon's Git password"])
	// The first revision, which diff --against-ref compares with, has one
	// ConfigMap and no Secret.
	first := map[string]string{"deploy/first.yaml": configMap(ns, "first", "v")}
	// Each server's commit has its own SHA (their times may differ by a
	// second); diff --against-ref reads the public one.
	private.Commit(t, first)
	firstRev := public.Commit(t, first)
	daemonGit.Commit(t, first)
	private.Commit(t, files)
	public.Commit(t, files)
	daemonGit.Commit(t, files)

	withUser := func(raw string, user *url.Userinfo) string {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		u.User = user
		return u.String()
	}
	passwordURL := withUser(private.URL, url.UserPassword("cli-user", credentials["Git password"]))
	tokenURL := withUser(public.URL, url.User(credentials["Git token as user"]))
	refusedTokenURL := withUser(private.URL, url.User(credentials["Git token as user"]))
	unreachableURL := "http://" + url.UserPassword("cli-user", credentials["unreachable Git password"]).String() + "@127.0.0.1:1/repo.git"
	passwordFile := writeTemp(t, "password", credentials["Git password"]+"\n")
	wrongPasswordFile := writeTemp(t, "wrong", credentials["wrong Git password"])
	clusters := writeTemp(t, "clusters.yaml", fmt.Sprintf("clusters:\n- {name: one, context: %s, kubeconfig: %s}\n- {name: two, context: %s, kubeconfig: %s}\n", one, env.Kubeconfig, two, env.Kubeconfig))

	// A live Secret applied by kubectl's client-side apply, then edited:
	// its last-applied annotation and its data hold values Git never had.
	kubectl(t, "apply", "-f", writeTemp(t, "live.yaml", fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: %s}\nstringData: {password: %s}\n", ns, repo["last-applied"])))
	kubectl(t, "patch", "secret", "db", "-n", ns, "--type=merge", "-p", fmt.Sprintf(`{"data":{"password":%q}}`, b64(repo["live"])))

	syncName := "leak-" + strings.TrimPrefix(ns, "t-")
	kc := []string{"--kubeconfig", env.Kubeconfig}
	onBoth := append([]string{"--clusters", clusters, "--sync", syncName}, kc...)
	ok, changes, failed, bad := []int{exitOK}, []int{exitFailed}, []int{exitFailed}, []int{exitError}

	// render masks Secret values as every output does; with --show-secrets
	// its objects are the repository's, values and all, so that output is
	// searched for credentials only.
	for _, src := range [][]string{{passwordURL}, {tokenURL}, {private.URL, "--git-username", "cli-user", "--git-password-file", passwordFile}, {private.Work}} {
		for _, path := range []string{"deploy", "kust"} {
			for _, format := range []string{"yaml", "json"} {
				stdout, _ := leaks.render(ok, append(append([]string{}, src...), "--path", path, "-o", format)...)
				if path == "deploy" && !strings.Contains(stdout, "FederatedSecret") {
					t.Errorf("render %v printed no FederatedSecret:\n%s", src, stdout)
				}
				shown, _ := leaks.renderShowingSecrets(ok, append(append([]string{}, src...), "--path", path, "-o", format)...)
				if path == "deploy" && !strings.Contains(shown, b64(repo["data"])) {
					t.Errorf("render --show-secrets %v did not print the Secret's value", src)
				}
				if path == "kust" && !strings.Contains(shown, b64(repo["generated env"])) {
					t.Errorf("render --show-secrets %v did not print the value generated from the env file", src)
				}
			}
		}
	}
	t.Setenv("GITK8S_GIT_PASSWORD", credentials["Git password in environment"])
	private.RequireAuth("cli-user", credentials["Git password in environment"])
	leaks.render(ok, private.URL, "--git-username", "cli-user", "--path", "deploy")
	private.RequireAuth("cli-user", credentials["Git password"])
	_, stderr := leaks.render(bad, private.URL, "--git-username", "cli-user", "--path", "deploy")
	if !strings.Contains(stderr, "credentials were refused") {
		t.Errorf("a refused password from the environment is not reported:\n%s", stderr)
	}
	os.Unsetenv("GITK8S_GIT_PASSWORD")
	// An SSH identity with its passphrase in the environment, and a token
	// in the URL's query, for remotes that do not answer.
	sshSource := []string{sshURL, "--ssh-key-file", writeTemp(t, "id_ed25519", credentials["SSH identity"]),
		"--known-hosts-file", writeTemp(t, "known_hosts", knownHosts)}
	queryTokenURL := "http://127.0.0.1:1/repo.git?private_token=" + credentials["Git token in the query"]
	t.Setenv("GITK8S_SSH_KEY_PASSPHRASE", credentials["SSH key passphrase"])
	for _, src := range [][]string{{unreachableURL}, {refusedTokenURL}, {private.URL, "--git-username", "cli-user", "--git-password-file", wrongPasswordFile}, sshSource, {queryTokenURL}} {
		for _, format := range []string{"yaml", "json"} {
			leaks.render(bad, append(append([]string{}, src...), "--path", "deploy", "-o", format)...)
		}
	}
	// The identity opens with its passphrase, so the fetch gets as far as
	// the dial; with a wrong one it stops at the key.
	if _, stderr := leaks.render(bad, append(append([]string{}, sshSource...), "--path", "deploy")...); !strings.Contains(stderr, "dial tcp 127.0.0.1:1") {
		t.Errorf("the SSH remote was not dialled:\n%s", stderr)
	}
	t.Setenv("GITK8S_SSH_KEY_PASSPHRASE", credentials["wrong SSH key passphrase"])
	if _, stderr := leaks.render(bad, append(append([]string{}, sshSource...), "--path", "deploy")...); !strings.Contains(stderr, "SSH private key") {
		t.Errorf("a wrong passphrase is not reported:\n%s", stderr)
	}
	t.Setenv("GITK8S_SSH_KEY_PASSPHRASE", credentials["SSH key passphrase"])

	// An OCI registry that wants a password: gitk8s push with it from the
	// environment, with a wrong one, and to a registry that does not
	// answer; render and validate read the artifact back.
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	registry := chartrepo.NewRegistry(t, "ci-pusher", credentials["OCI password"])
	artifact := "oci://" + registry.Host + "/leak/app:v1"
	artifactDir := testenv.WriteFiles(t, map[string]string{"deploy/secret.yaml": files["deploy/secret.yaml"]})
	t.Setenv("GITK8S_OCI_USERNAME", "ci-pusher")
	t.Setenv("GITK8S_OCI_PASSWORD", credentials["OCI password"])
	leaks.cli(ok, "push", artifact, artifactDir, "--source", passwordURL)
	if stdout, _ := leaks.render(ok, artifact, "--path", "deploy"); !strings.Contains(stdout, "kind: Secret") {
		t.Errorf("render of the pushed artifact printed no Secret:\n%s", stdout)
	}
	leaks.cli([]int{exitOK, exitFailed}, "validate", artifact, "--path", "deploy", "-o", "json")
	leaks.cli(failed, "push", "oci://127.0.0.1:1/leak/app:v1", artifactDir)
	t.Setenv("GITK8S_OCI_PASSWORD", credentials["wrong OCI password"])
	leaks.cli(failed, "push", artifact, artifactDir)
	leaks.render(bad, artifact, "--path", "deploy")
	t.Setenv("GITK8S_OCI_USERNAME", "")
	t.Setenv("GITK8S_OCI_PASSWORD", "")

	// A render that fails, through every command that renders.
	for _, format := range []string{"yaml", "json"} {
		leaks.render(bad, passwordURL, "--path", "badrender", "-o", format)
	}
	for _, format := range []string{"text", "json", "sarif"} {
		leaks.cli(bad, "validate", passwordURL, "--path", "badrender", "-o", format)
	}
	for _, format := range []string{"text", "markdown", "json"} {
		leaks.cli(bad, append([]string{"diff", passwordURL, "--path", "badrender", "-o", format}, kc...)...)
	}
	leaks.cli(bad, append([]string{"apply", passwordURL, "--path", "badrender", "-o", "json"}, kc...)...)

	// validate, offline and against the clusters, in every format.
	for _, format := range []string{"text", "json", "sarif"} {
		for _, path := range []string{"deploy", "kust", "bad"} {
			leaks.cli([]int{exitOK, exitFailed}, "validate", passwordURL, "--path", path, "-o", format)
			leaks.cli([]int{exitOK, exitFailed}, append([]string{"validate", tokenURL, "--path", path, "-o", format, "--clusters", clusters}, kc...)...)
		}
		leaks.cli(bad, "validate", unreachableURL, "--path", "deploy", "-o", format)
		leaks.cli(bad, append(append([]string{"validate"}, sshSource...), "--path", "deploy", "-o", format)...)
		leaks.cli(bad, "validate", queryTokenURL, "--path", "deploy", "-o", format)
		leaks.cli(bad, append([]string{"validate", refusedTokenURL, "--path", "deploy", "-o", format}, kc...)...)
	}

	// diff: against the clusters, against an earlier revision, as the
	// daemon would (with --config), refused by the API server, with a
	// kubeconfig whose token is refused, from an unreachable remote.
	var text string
	for _, format := range []string{"text", "markdown", "json"} {
		stdout, _ := leaks.cli(changes, append([]string{"diff", passwordURL, "--path", "deploy", "-o", format, "--color", "always"}, onBoth...)...)
		if format == "text" {
			text = stdout
		}
		leaks.cli(changes, "diff", tokenURL, "--path", "deploy", "--against-ref", firstRev, "-o", format, "--kubeconfig", "/nonexistent")
		leaks.cli(changes, append([]string{"diff", private.Work, "--path", "kust", "-o", format, "--sync", syncName + "-kust"}, kc...)...)
		leaks.cli(bad, append([]string{"diff", passwordURL, "--path", "bad", "-o", format, "--sync", syncName + "-bad"}, kc...)...)
		leaks.cli(bad, "diff", passwordURL, "--path", "deploy", "-o", format, "--kubeconfig", refusedKubeconfig)
		leaks.cli(bad, append([]string{"diff", unreachableURL, "--path", "deploy", "-o", format}, kc...)...)
		leaks.cli(bad, append(append(append([]string{"diff"}, sshSource...), "--path", "deploy", "-o", format), kc...)...)
		leaks.cli(bad, append([]string{"diff", queryTokenURL, "--path", "deploy", "-o", format}, kc...)...)
	}
	for _, want := range []string{"~ Secret/" + ns + "/db (configured)", "+ Secret/" + ns + "/listed (created)", "+ Secret/" + ns + "/federated (created)", "<secret #"} {
		if !strings.Contains(text, want) {
			t.Errorf("the diff lacks %q:\n%s", want, text)
		}
	}

	// apply: the failing one first, so that the live Secret still holds
	// its own values when the refusal is reported.
	for _, format := range []string{"text", "json"} {
		_, stderr := leaks.cli(failed, append([]string{"apply", passwordURL, "--path", "bad", "-o", format, "--sync", syncName + "-bad"}, kc...)...)
		if format == "text" && !strings.Contains(stderr, "expected string") {
			t.Errorf("the API server's refusal is not reported:\n%s", stderr)
		}
		leaks.cli(ok, append([]string{"apply", passwordURL, "--path", "deploy", "--dry-run", "-o", format}, onBoth...)...)
		leaks.cli(bad, "apply", passwordURL, "--path", "deploy", "-o", format, "--kubeconfig", refusedKubeconfig)
		leaks.cli(bad, append(append(append([]string{"apply"}, sshSource...), "--path", "deploy", "-o", format), kc...)...)
		leaks.cli(bad, append([]string{"apply", queryTokenURL, "--path", "deploy", "-o", format}, kc...)...)
	}
	leaks.cli(ok, append([]string{"apply", passwordURL, "--path", "deploy", "--wait", "1m"}, onBoth...)...)
	leaks.cli(ok, append([]string{"apply", tokenURL, "--path", "kust", "-o", "json", "--sync", syncName + "-kust"}, kc...)...)
	leaks.cli(ok, append([]string{"apply", private.Work, "--path", "deploy", "-o", "json"}, onBoth...)...)

	// status of the clusters.
	for _, format := range []string{"text", "json"} {
		leaks.cli(ok, append([]string{"status", "-o", format, "--clusters", clusters}, kc...)...)
		leaks.cli(failed, "status", "-o", format, "--kubeconfig", refusedKubeconfig)
	}

	// The daemon: its credentials are Secrets in the home cluster.
	home := env.Client(t, one)
	if _, err := home.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: daemon.HomeNamespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	homeSecret := func(name string, data map[string][]byte) {
		t.Helper()
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: daemon.HomeNamespace}, Data: data}
		if _, err := home.CoreV1().Secrets(daemon.HomeNamespace).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = home.CoreV1().Secrets(daemon.HomeNamespace).Delete(context.Background(), name, metav1.DeleteOptions{})
		})
	}
	homeSecret(syncName+"-git", map[string][]byte{"username": []byte("daemon-user"), "password": []byte(credentials["daemon's Git password"])})
	homeSecret(syncName+"-age", map[string][]byte{"identity.agekey": []byte(credentials["SOPS age key"])})
	homeSecret(syncName+"-webhook", map[string][]byte{"token": []byte(credentials["webhook token"])})
	homeSecret(syncName+"-gitlab-webhook", map[string][]byte{"token": []byte(credentials["GitLab webhook token"])})
	homeSecret(syncName+"-ssh", map[string][]byte{"identity": []byte(credentials["daemon's SSH identity"]),
		"passphrase": []byte(credentials["daemon's SSH key passphrase"]), "known_hosts": []byte(knownHosts)})
	homeSecret(syncName+"-kubeconfig", map[string][]byte{"value": tokenKubeconfig(three, credentials["cluster three's kube token"])})
	homeSecret(syncName+"-refused-kubeconfig", map[string][]byte{"kubeconfig": tokenKubeconfig(one, credentials["refused kubeconfig token"])})
	listen := freeAddress(t)
	unreachableTokenURL := "http://" + credentials["unreachable Git token"] + "@127.0.0.1:1/repo.git"
	configPath := writeTemp(t, "config.yaml", fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: one, kubeconfig: {context: %[1]s, path: %[2]s}}
- {name: two, kubeconfig: {context: %[3]s, path: %[2]s}}
- {name: three, kubeconfig: {secretRef: {name: %[4]s-kubeconfig}}}
- {name: refused, kubeconfig: {secretRef: {name: %[4]s-refused-kubeconfig}}}
syncs:
- name: %[4]s
  source: {url: %[5]s, ref: {branch: main}, path: deploy, interval: 1h, auth: {secretRef: {name: %[4]s-git}}, decryption: {provider: sops, secretRef: {name: %[4]s-age}}}
  clusters: [one, two]
  namespace: %[6]s
  prune: true
- name: %[4]s-kust
  source: {url: %[5]s, ref: {branch: main}, path: kust, interval: 1h, auth: {secretRef: {name: %[4]s-git}}}
  clusters: [one]
- name: %[4]s-bad
  source: {url: %[5]s, ref: {branch: main}, path: bad, interval: 1h, auth: {secretRef: {name: %[4]s-git}}}
  clusters: [one]
- name: %[4]s-three
  source: {url: %[5]s, ref: {branch: main}, path: three, interval: 1h, auth: {secretRef: {name: %[4]s-git}}}
  clusters: [three]
- name: %[4]s-refused
  source: {url: %[5]s, ref: {branch: main}, path: kust, interval: 1h, auth: {secretRef: {name: %[4]s-git}}}
  clusters: [refused]
- name: %[4]s-render
  source: {url: %[5]s, ref: {branch: main}, path: badrender, interval: 1h, auth: {secretRef: {name: %[4]s-git}}}
  clusters: [one]
- name: %[4]s-unreachable
  source: {url: %[7]s, ref: {branch: main}, interval: 1h, timeout: 5s}
  clusters: [one]
- name: %[4]s-ssh
  source: {url: %[9]s, ref: {branch: main}, interval: 1h, timeout: 5s, auth: {secretRef: {name: %[4]s-ssh}}}
  clusters: [one]
- name: %[4]s-query
  source: {url: %[10]q, ref: {branch: main}, interval: 1h, timeout: 5s}
  clusters: [one]
webhooks:
  listen: %[8]s
  receivers:
  - {name: leak, provider: github, secretRef: {name: %[4]s-webhook}}
  - {name: leak-gitlab, provider: gitlab, secretRef: {name: %[4]s-gitlab-webhook}}
`, one, env.Kubeconfig, two, syncName, daemonGit.URL, ns, unreachableTokenURL, listen,
		sshURL, "http://127.0.0.1:1/repo.git?private_token="+credentials["daemon's query token"]))
	t.Cleanup(func() {
		for _, c := range env.Contexts {
			for _, suffix := range []string{"", "-kust", "-bad", "-three", "-refused", "-render", "-unreachable", "-ssh", "-query"} {
				_ = env.Client(t, c).CoreV1().Secrets(apply.DefaultInventoryNamespace).Delete(context.Background(), "gitk8s-"+syncName+suffix, metav1.DeleteOptions{})
			}
		}
	})

	// The pull-request check predicts the daemon from the same file.
	for _, format := range []string{"text", "markdown", "json"} {
		leaks.cli([]int{exitOK, exitFailed}, append([]string{"diff", "--config", configPath, "--sync", syncName, daemonGit.Work, "-o", format}, kc...)...)
		leaks.cli(bad, append([]string{"diff", "--config", configPath, "--sync", syncName + "-bad", daemonGit.Work, "-o", format}, kc...)...)
	}

	// startDaemon runs gitk8s daemon in this process with logs in format;
	// the func it returns stops the daemon and returns what it wrote. The
	// daemon points klog at its logger, and klog keeps it afterwards:
	// resetting it races with client-go's goroutines that still log.
	startDaemon := func(format string) func() string {
		runCtx, stop := context.WithCancel(ctx)
		var out lockedBuffer
		done := make(chan struct{})
		go func() {
			defer close(done)
			run(runCtx, []string{"daemon", "--config", configPath, "--git-cache-dir", t.TempDir(), "--log-format", format, "--kubeconfig", env.Kubeconfig}, &out, &out)
		}()
		var once sync.Once
		finish := func() string {
			once.Do(func() {
				stop()
				select {
				case <-done:
				case <-time.After(time.Minute):
					t.Error("the daemon did not stop within a minute")
				}
			})
			return out.String()
		}
		t.Cleanup(func() { finish() })
		return finish
	}

	base := "http://" + listen
	client := &http.Client{Timeout: 10 * time.Second}
	get := func(path string) string {
		t.Helper()
		resp, err := client.Get(base + path)
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	statuses := func() map[string]daemon.SyncStatus {
		var body struct {
			Syncs []daemon.SyncStatus `json:"syncs"`
		}
		out := map[string]daemon.SyncStatus{}
		if json.Unmarshal([]byte(get("/api/v1/syncs")), &body) == nil {
			for _, s := range body.Syncs {
				out[s.Name] = s
			}
		}
		return out
	}
	wantReasons := map[string]string{syncName: daemon.ReasonSucceeded, syncName + "-kust": daemon.ReasonSucceeded, syncName + "-bad": daemon.ReasonPlanFailed,
		syncName + "-three": daemon.ReasonSucceeded, syncName + "-refused": daemon.ReasonClusterUnavailable, syncName + "-render": daemon.ReasonRenderFailed, syncName + "-unreachable": daemon.ReasonSourceUnavailable,
		syncName + "-ssh": daemon.ReasonSourceUnavailable, syncName + "-query": daemon.ReasonSourceUnavailable}
	settled := func(rev string) func() bool {
		return func() bool {
			st := statuses()
			for name, reason := range wantReasons {
				s, ok := st[name]
				if !ok || s.LastAttempt.IsZero() || s.Condition("Ready").Reason != reason {
					return false
				}
			}
			return rev == "" || st[syncName].LastAppliedRevision == rev
		}
	}
	// A daemon logging text reconciles every sync once; then one logging
	// JSON takes the webhooks and serves what is read below.
	stopDaemon := startDaemon("text")
	testenv.Within(t, "every sync's first reconcile", 2*time.Minute, settled(""))
	textLogs := stopDaemon()
	leaks.add("daemon logs (text)", textLogs)
	stopDaemon = startDaemon("json")
	testenv.Within(t, "every sync's first reconcile after a restart", 2*time.Minute, settled(""))

	// A push, signed, brings a changed value; an unsigned one and one
	// signed with another token are refused.
	rev := daemonGit.Commit(t, map[string]string{"deploy/secret.yaml": secret(repo["changed"])})
	push := []byte(fmt.Sprintf(`{"ref":"refs/heads/main","repository":{"clone_url":%q}}`, daemonGit.URL))
	hook := func(token string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, base+"/hooks/leak", bytes.NewReader(push))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			mac := hmac.New(sha256.New, []byte(token))
			mac.Write(push)
			req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		leaks.add(fmt.Sprintf("webhook answer %d", resp.StatusCode), resp.Status+"\n"+fmt.Sprint(resp.Header)+"\n"+string(body))
		return resp.StatusCode
	}
	if code := hook(""); code != http.StatusUnauthorized {
		t.Errorf("unsigned push: %d", code)
	}
	if code := hook(credentials["wrong webhook token"]); code != http.StatusUnauthorized {
		t.Errorf("push signed with another token: %d", code)
	}
	if code := hook(credentials["webhook token"]); code/100 != 2 {
		t.Fatalf("signed push: %d", code)
	}
	testenv.Within(t, "the pushed revision applied", 2*time.Minute, settled(rev))

	// GitLab's receiver compares a plain token: missing and wrong ones are
	// refused, the right one triggers the syncs of the repository.
	gitlabPush := []byte(fmt.Sprintf(`{"object_kind":"push","ref":"refs/heads/main","project":{"git_http_url":%q}}`, daemonGit.URL))
	gitlabHook := func(token string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, base+"/hooks/leak-gitlab", bytes.NewReader(gitlabPush))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Gitlab-Event", "Push Hook")
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("X-Gitlab-Token", token)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		leaks.add(fmt.Sprintf("GitLab webhook answer %d", resp.StatusCode), resp.Status+"\n"+fmt.Sprint(resp.Header)+"\n"+string(body))
		return resp.StatusCode
	}
	if code := gitlabHook(""); code != http.StatusUnauthorized {
		t.Errorf("GitLab push without a token: %d", code)
	}
	if code := gitlabHook(credentials["wrong GitLab webhook token"]); code != http.StatusUnauthorized {
		t.Errorf("GitLab push with another token: %d", code)
	}
	if code := gitlabHook(credentials["GitLab webhook token"]); code/100 != 2 {
		t.Errorf("GitLab push with its token: %d", code)
	}
	testenv.Within(t, "the syncs settled after the GitLab push", 2*time.Minute, settled(rev))

	st := statuses()
	if e := st[syncName+"-bad"].LastError; !strings.Contains(e, "<secret #") {
		t.Errorf("the refused sync's error shows no mask: %s", e)
	}
	if e := st[syncName+"-ssh"].LastError; !strings.Contains(e, "dial tcp 127.0.0.1:1") {
		t.Errorf("the daemon did not dial the SSH remote with its identity: %s", e)
	}
	leaks.cli(failed, "status", "--daemon", base)
	leaks.cli([]int{exitOK, exitFailed}, "status", "--daemon", base, "-o", "json")
	leaks.add("GET /api/v1/syncs", get("/api/v1/syncs"))
	page := get("/")
	leaks.add("GET / (status page)", page)
	if !strings.Contains(page, syncName+"-bad") {
		t.Errorf("the status page lacks the syncs:\n%s", page)
	}
	metrics := get("/metrics")
	leaks.add("GET /metrics", metrics)
	for _, receiver := range []string{"leak", "leak-gitlab"} {
		if !strings.Contains(metrics, `gitk8s_webhook_requests_total{code="401",receiver="`+receiver+`"}`) {
			t.Errorf("metrics lack the refused webhooks of %s:\n%s", receiver, metrics)
		}
	}
	leaks.add("GET /readyz", get("/readyz"))
	leaks.add("GET /healthz", get("/healthz"))

	// Events, once the refused sync's warning has been recorded.
	events := func(c string) (string, []corev1.Event) {
		list, err := env.Client(t, c).CoreV1().Events("").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		data, _ := json.Marshal(list)
		return string(data), list.Items
	}
	testenv.Within(t, "the PlanFailed event", time.Minute, func() bool {
		_, items := events(one)
		for _, e := range items {
			if e.Reason == daemon.ReasonPlanFailed && e.InvolvedObject.Name == "gitk8s-"+syncName+"-bad" {
				return true
			}
		}
		return false
	})
	jsonLogs := stopDaemon()
	for _, c := range env.Contexts {
		text, _ := events(c)
		leaks.add("Events in "+c, text)
	}
	leaks.add("daemon logs (JSON)", jsonLogs)
	for _, logs := range []string{textLogs, jsonLogs} {
		for _, want := range []string{"sync failed", "source unavailable", "cluster unavailable", "<secret #"} {
			if !strings.Contains(logs, want) {
				t.Errorf("the logs lack %q:\n%s", want, logs)
			}
		}
	}
	leaks.search(repo, credentials)
}
