package daemon

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/gitk8s/gitk8s/internal/testenv"
)

// TestDeployedRBACIsEnough runs the gitk8s binary as a daemon with the
// credentials of the ServiceAccount deploy/ creates (a token for it, no
// more) and syncs examples/course from a private Git server, with the Git
// credentials and the webhook secret in Secrets of gitk8s-system: the RBAC
// in deploy/ must be enough for the daemon, its credentials and what the
// course contains, including its drift watches and policy reads. Any
// request of the daemon the API server refuses fails the test, whether the
// daemon reported it or not.
func TestDeployedRBACIsEnough(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	kubectl := func(args ...string) {
		t.Helper()
		out, err := exec.Command(env.Kubectl(), append([]string{"--kubeconfig", env.Kubeconfig}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
	}
	for _, f := range []string{"00-namespace.yaml", "10-rbac.yaml", "11-grant-course.yaml"} {
		kubectl("apply", "--server-side", "-f", filepath.Join(root, "deploy", f))
	}
	ctx := context.Background()
	client := env.Client(t, "")
	tok, err := client.CoreV1().ServiceAccounts("gitk8s-system").CreateToken(ctx, "gitk8s",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	admin := env.Target(t, "").Config
	kc := clientcmdapi.NewConfig()
	kc.Clusters["local"] = &clientcmdapi.Cluster{Server: admin.Host, CertificateAuthorityData: admin.CAData}
	kc.AuthInfos["gitk8s"] = &clientcmdapi.AuthInfo{Token: tok.Status.Token}
	kc.Contexts["gitk8s"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "gitk8s"}
	kc.CurrentContext = "gitk8s"
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "sa.kubeconfig")
	if err := clientcmd.WriteToFile(*kc, kubeconfig); err != nil {
		t.Fatal(err)
	}

	srv := testenv.NewGitServer(t)
	files := map[string]string{}
	entries, err := os.ReadDir(filepath.Join(root, "examples", "course"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(root, "examples", "course", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = string(data)
	}
	rev := srv.Commit(t, files)
	const gitPassword, hookToken = "deploy-pw-6f3a2b", "deploy-hook-8e1c4d"
	srv.RequireAuth("gitk8s-bot", gitPassword)
	for name, data := range map[string]map[string]string{
		"gitk8s-test-git":     {"username": "gitk8s-bot", "password": gitPassword},
		"gitk8s-test-webhook": {"token": hookToken},
	} {
		putSecret(t, "gitk8s-system", name, data)
		t.Cleanup(func() {
			_ = client.CoreV1().Secrets("gitk8s-system").Delete(context.Background(), name, metav1.DeleteOptions{})
		})
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	config := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {path: %s, context: gitk8s}}
syncs:
- name: course
  source: {url: %s, interval: 2s, auth: {secretRef: {name: gitk8s-test-git}}}
  clusters: [local]
  prune: true
  wait: {timeout: 2m}
webhooks:
  listen: "%s"
  receivers: [{name: github, provider: github, secretRef: {name: gitk8s-test-webhook}}]
leaderElection: {enabled: true}
`, kubeconfig, srv.URL, addr)), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "gitk8s")
	if out, err := exec.Command("go", "build", "-o", bin, filepath.Join(root, "cmd", "gitk8s")).CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	// The API server's audit log records every request refused to the
	// daemon, including reads whose failure the daemon only logs or treats
	// as unknown (policy checks, drift watches).
	audit := env.MarkAudit(t, "")
	logs := &lockedWriter{w: &bytes.Buffer{}, mu: &sync.Mutex{}}
	logText := func() string {
		logs.mu.Lock()
		defer logs.mu.Unlock()
		return logs.w.String()
	}
	// As deploy/ runs it: JSON logs.
	cmd := exec.Command(bin, "daemon", "--config", config, "--git-cache-dir", filepath.Join(dir, "cache"), "--log-format", "json")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	status := func() (leader bool, st SyncStatus) {
		var body struct {
			Leader bool         `json:"leader"`
			Syncs  []SyncStatus `json:"syncs"`
		}
		resp, err := http.Get("http://" + addr + "/api/v1/syncs")
		if err != nil {
			return false, st
		}
		defer resp.Body.Close()
		if json.NewDecoder(resp.Body).Decode(&body) != nil || len(body.Syncs) != 1 {
			return false, st
		}
		return body.Leader, body.Syncs[0]
	}
	waitFor := func(what string, ok func(SyncStatus) bool) SyncStatus {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			leader, st := status()
			if ok(st) {
				if !leader {
					t.Error("the only daemon does not lead")
				}
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s with the ServiceAccount's rights: %+v\n%s", what, st, logText())
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	synced := waitFor("the daemon did not sync the course", func(st SyncStatus) bool {
		return st.LastAppliedRevision == rev && st.Condition("Ready").Status == "True"
	})
	dep, err := client.AppsV1().Deployments("course").Get(ctx, "web", metav1.GetOptions{})
	if err != nil || dep.Status.ReadyReplicas != 3 {
		t.Errorf("course/web: %v %v", dep.Status, err)
	}

	// Someone else takes over a field of the course's Secret: the drift
	// watch on Secrets, which only the course's grant allows, must see it
	// and the daemon must set it back.
	takeover := []byte(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"web-credentials","namespace":"course"},"data":{"DB_USER":"` + base64.StdEncoding.EncodeToString([]byte("intruder")) + `"}}`)
	if _, err := client.CoreV1().Secrets("course").Patch(ctx, "web-credentials", types.ApplyPatchType, takeover,
		metav1.PatchOptions{FieldManager: "someone-else", Force: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	waitFor("the daemon did not heal drift of the course's Secret", func(st SyncStatus) bool {
		return st.DriftedObjects > 0 && st.LastAttempt.After(synced.LastAttempt) && st.Condition("Ready").Status == "True"
	})
	if s, err := client.CoreV1().Secrets("course").Get(ctx, "web-credentials", metav1.GetOptions{}); err != nil || string(s.Data["DB_USER"]) != "course" {
		t.Errorf("course/web-credentials was not set back: DB_USER %q, %v", s.Data["DB_USER"], err)
	}

	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz answered %d", resp.StatusCode)
	}
	const user = "system:serviceaccount:gitk8s-system:gitk8s"
	requests := 0
	for _, ev := range audit.Requests(t, "") {
		if ev.User.Username != user {
			continue
		}
		requests++
		if ev.ResponseStatus.Code == http.StatusForbidden {
			t.Errorf("the API server refused the daemon: %s %s", ev.Verb, ev.RequestURI)
		}
	}
	if requests == 0 {
		t.Errorf("the audit log holds no request of %s", user)
	}
	if strings.Contains(strings.ToLower(logText()), "forbidden") {
		t.Errorf("the daemon's log reports a refusal:\n%s", logText())
	}
	for _, v := range []string{gitPassword, hookToken} {
		if strings.Contains(logText(), v) {
			t.Errorf("the daemon's log holds the Secret value %q", v)
		}
	}
	// Every line is JSON, client-go's own (leader election, watches)
	// included, and each step of a sync is a line naming the sync, the
	// cluster where there is one, and the revision.
	steps := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(logText()), "\n") {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Errorf("a log line is not JSON: %q", line)
			continue
		}
		msg, _ := entry["msg"].(string)
		switch msg {
		case "rendered", "policy gate passed", "applied", "synced":
			if entry["sync"] != "course" || entry["revision"] != rev || (msg != "rendered" && msg != "synced" && entry["cluster"] != "local") {
				t.Errorf("log line %q lacks its sync, cluster or revision: %s", msg, line)
			}
			steps[msg] = true
		}
	}
	for _, step := range []string{"rendered", "policy gate passed", "applied", "synced"} {
		if !steps[step] {
			t.Errorf("no %q line in the daemon's log:\n%s", step, logText())
		}
	}
}

// TestDeployedBaseRoleReadsNoSecrets asks the API server whether a
// ServiceAccount bound to gitk8s-daemon-base alone, as deploy/ defines it,
// may read Secrets: it must not, so that reading them is only ever what a
// repository's grant adds. The reads the base role is for must be allowed,
// or the refusals would prove nothing.
func TestDeployedBaseRoleReadsNoSecrets(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(env.Kubectl(), "--kubeconfig", env.Kubeconfig, "apply", "--server-side",
		"-f", filepath.Join(root, "deploy", "00-namespace.yaml"), "-f", filepath.Join(root, "deploy", "10-rbac.yaml")).CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	ctx := context.Background()
	client := env.Client(t, "")
	ns := env.Namespace(t)
	if _, err := client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "base-only"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "gitk8s-base-only-" + ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "gitk8s-daemon-base"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "base-only", Namespace: ns}},
	}
	if _, err := client.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = client.RbacV1().ClusterRoleBindings().Delete(context.Background(), binding.Name, metav1.DeleteOptions{})
	})

	tests := []struct {
		name string
		attr authorizationv1.ResourceAttributes
		want bool
	}{
		{"list secrets in the namespace", authorizationv1.ResourceAttributes{Namespace: ns, Verb: "list", Resource: "secrets"}, false},
		{"get a secret in the namespace", authorizationv1.ResourceAttributes{Namespace: ns, Verb: "get", Resource: "secrets", Name: "any"}, false},
		{"watch secrets in the namespace", authorizationv1.ResourceAttributes{Namespace: ns, Verb: "watch", Resource: "secrets"}, false},
		{"list secrets in every namespace", authorizationv1.ResourceAttributes{Verb: "list", Resource: "secrets"}, false},
		{"list secrets in gitk8s-system", authorizationv1.ResourceAttributes{Namespace: "gitk8s-system", Verb: "list", Resource: "secrets"}, false},
		{"list configmaps, a kind only grants add", authorizationv1.ResourceAttributes{Namespace: ns, Verb: "list", Resource: "configmaps"}, false},
		{"list resourcequotas in every namespace", authorizationv1.ResourceAttributes{Verb: "list", Resource: "resourcequotas"}, true},
		{"get the namespace", authorizationv1.ResourceAttributes{Verb: "get", Resource: "namespaces", Name: ns}, true},
		{"get a clusterrole", authorizationv1.ResourceAttributes{Verb: "get", Group: "rbac.authorization.k8s.io", Resource: "clusterroles", Name: "any"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			attr := tt.attr
			review, err := client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User:               "system:serviceaccount:" + ns + ":base-only",
				Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
				ResourceAttributes: &attr,
			}}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if review.Status.Allowed != tt.want {
				t.Errorf("allowed = %v, want %v (%s)", review.Status.Allowed, tt.want, review.Status.Reason)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
