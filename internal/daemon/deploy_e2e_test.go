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
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
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
	// The course's grant is an example, which deploy/ does not apply.
	for _, f := range []string{"00-namespace.yaml", "10-rbac.yaml", "examples/grant-course.yaml"} {
		kubectl("apply", "--server-side", "-f", filepath.Join(root, "deploy", f))
	}
	ctx := context.Background()
	client := env.Client(t, "")
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "sa.kubeconfig")
	if err := os.WriteFile(kubeconfig, serviceAccountKubeconfig(t, "gitk8s-system", "gitk8s", ""), 0o600); err != nil {
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

	// As deploy/ runs it: the status and the webhooks on two listeners.
	var addrs []string
	for range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, l.Addr().String())
		l.Close()
	}
	addr, hooksAddr := addrs[0], addrs[1]
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
  hooksListen: "%s"
  receivers: [{name: github, provider: github, secretRef: {name: gitk8s-test-webhook}}]
leaderElection: {enabled: true}
`, kubeconfig, srv.URL, addr, hooksAddr)), 0o644); err != nil {
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

	// Each path on its own listener only.
	push := fmt.Sprintf(`{"ref":"refs/heads/main","repository":{"clone_url":%q}}`, srv.URL)
	for _, c := range []struct {
		method, url, body string
		want              int
	}{
		{http.MethodGet, "http://" + addr + "/readyz", "", http.StatusOK},
		{http.MethodGet, "http://" + hooksAddr + "/readyz", "", http.StatusNotFound},
		{http.MethodGet, "http://" + hooksAddr + "/api/v1/syncs", "", http.StatusNotFound},
		{http.MethodGet, "http://" + hooksAddr + "/metrics", "", http.StatusNotFound},
		{http.MethodGet, "http://" + hooksAddr + "/", "", http.StatusNotFound},
		{http.MethodPost, "http://" + addr + "/hooks/github", push, http.StatusNotFound},
		{http.MethodPost, "http://" + hooksAddr + "/hooks/github", push, http.StatusAccepted},
	} {
		req, err := http.NewRequest(c.method, c.url, strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		if c.body != "" {
			req.Header.Set("X-GitHub-Event", "push")
			req.Header.Set("X-Hub-Signature-256", "sha256="+sign(hookToken, c.body))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s answered %d, want %d", c.method, c.url, resp.StatusCode, c.want)
		}
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

// TestDeployManifests applies deploy/ as the docs say, `kubectl apply -f
// deploy/`, as a server-side dry run: the API server must accept every
// object; the directory must grant the daemon nothing of what repositories
// contain (that is the examples' grant, opt-in); the configuration must
// load and split the status from /hooks/; and the Deployment, Services and
// NetworkPolicy must agree on its two ports, the webhook port open to
// anyone and the status port to the cluster's own namespaces only.
func TestDeployManifests(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	kubectl := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command(env.Kubectl(), append([]string{"--kubeconfig", env.Kubeconfig}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, stderr.String())
		}
		return out
	}
	kubectl("apply", "--server-side", "-f", filepath.Join(root, "deploy", "00-namespace.yaml"))
	out := kubectl("apply", "--server-side", "--dry-run=server", "-o", "json", "-f", filepath.Join(root, "deploy"))
	var list struct {
		Kind  string            `json:"kind"`
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatalf("kubectl's output: %v\n%s", err, out)
	}
	if list.Kind != "List" {
		list.Items = []json.RawMessage{out}
	}
	objects := map[string]json.RawMessage{}
	for _, item := range list.Items {
		var o metav1.PartialObjectMetadata
		if err := json.Unmarshal(item, &o); err != nil {
			t.Fatal(err)
		}
		objects[o.Kind+"/"+o.Name] = item
	}
	decode := func(id string, into any) {
		t.Helper()
		raw, ok := objects[id]
		if !ok {
			t.Fatalf("deploy/ has no %s", id)
		}
		if err := json.Unmarshal(raw, into); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
	}

	var grants []string
	for id, raw := range objects {
		if !strings.HasPrefix(id, "ClusterRole/") {
			continue
		}
		var role rbacv1.ClusterRole
		if err := json.Unmarshal(raw, &role); err != nil {
			t.Fatal(err)
		}
		if role.Labels["gitk8s.io/aggregate-to-daemon"] == "true" {
			grants = append(grants, role.Name)
		}
	}
	if diff := cmp.Diff([]string{"gitk8s-daemon-base"}, grants); diff != "" {
		t.Errorf("ClusterRoles deploy/ aggregates into the daemon's (-want +got):\n%s", diff)
	}

	var cm corev1.ConfigMap
	decode("ConfigMap/gitk8s-config", &cm)
	cfg, err := LoadConfig(writeConfig(t, cm.Data["config.yaml"]))
	if err != nil {
		t.Fatalf("deploy/20-config.yaml: %v", err)
	}
	port := func(addr string) int32 {
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatalf("%q: %v", addr, err)
		}
		n, err := strconv.ParseInt(p, 10, 32)
		if err != nil {
			t.Fatalf("%q: %v", addr, err)
		}
		return int32(n)
	}
	if cfg.Webhooks.HooksListen == "" {
		t.Fatal("deploy/20-config.yaml serves /hooks/ with the status: set webhooks.hooksListen")
	}
	wantPorts := map[string]int32{"status": port(cfg.Webhooks.ListenAddress()), "hooks": port(cfg.Webhooks.HooksListen)}

	var dep appsv1.Deployment
	decode("Deployment/gitk8s", &dep)
	ports := map[string]int32{}
	for _, p := range dep.Spec.Template.Spec.Containers[0].Ports {
		ports[p.Name] = p.ContainerPort
	}
	if diff := cmp.Diff(wantPorts, ports); diff != "" {
		t.Errorf("the Deployment's ports against the configuration (-want +got):\n%s", diff)
	}
	for name, want := range map[string]string{"gitk8s": "status", "gitk8s-hooks": "hooks"} {
		var svc corev1.Service
		decode("Service/"+name, &svc)
		var got []string
		for _, p := range svc.Spec.Ports {
			got = append(got, p.TargetPort.String())
		}
		if diff := cmp.Diff([]string{want}, got); diff != "" {
			t.Errorf("Service %s's target ports (-want +got):\n%s", name, diff)
		}
	}

	var np networkingv1.NetworkPolicy
	decode("NetworkPolicy/gitk8s", &np)
	if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) ||
		np.Spec.PodSelector.MatchLabels["app.kubernetes.io/name"] != dep.Spec.Template.Labels["app.kubernetes.io/name"] {
		t.Errorf("the NetworkPolicy does not select the daemon's pods for ingress: %+v", np.Spec)
	}
	from := map[string][]networkingv1.NetworkPolicyPeer{}
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			from[p.Port.String()] = rule.From
		}
	}
	if peers, ok := from["hooks"]; !ok || len(peers) != 0 {
		t.Errorf("the webhook port is not open to anyone: %+v", from["hooks"])
	}
	wantStatus := []networkingv1.NetworkPolicyPeer{
		{PodSelector: &metav1.LabelSelector{}},
		{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"gitk8s.io/status-access": "true"}}},
	}
	if diff := cmp.Diff(wantStatus, from["status"]); diff != "" {
		t.Errorf("who may reach the status port (-want +got):\n%s", diff)
	}
	if len(from) != 2 {
		t.Errorf("the NetworkPolicy opens other ports: %v", from)
	}
}

func ptr[T any](v T) *T { return &v }

// serviceAccountKubeconfig is a kubeconfig of the test cluster holding
// only a token of the ServiceAccount namespace/name (context "gitk8s",
// its namespace defaultNamespace when given).
func serviceAccountKubeconfig(t *testing.T, namespace, name, defaultNamespace string) []byte {
	t.Helper()
	tok, err := env.Client(t, "").CoreV1().ServiceAccounts(namespace).CreateToken(context.Background(), name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	admin := env.Target(t, "").Config
	kc := clientcmdapi.NewConfig()
	kc.Clusters["local"] = &clientcmdapi.Cluster{Server: admin.Host, CertificateAuthorityData: admin.CAData}
	kc.AuthInfos["gitk8s"] = &clientcmdapi.AuthInfo{Token: tok.Status.Token}
	kc.Contexts["gitk8s"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "gitk8s", Namespace: defaultNamespace}
	kc.CurrentContext = "gitk8s"
	data, err := clientcmd.Write(*kc)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
