package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/gitk8s/gitk8s/internal/testenv"
)

// TestDeployedRBACIsEnough runs the gitk8s binary as a daemon with the
// credentials of the ServiceAccount deploy/ creates (a token for it, no
// more) and syncs examples/course from a private Git server, with the Git
// credentials and the webhook secret in Secrets of gitk8s-system: the RBAC
// in deploy/ must be enough for the daemon, its credentials and what the
// course contains.
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

	srv := newGitServer(t)
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
	rev := srv.commit(t, files)
	const gitPassword, hookToken = "deploy-pw-6f3a2b", "deploy-hook-8e1c4d"
	srv.requireAuth("gitk8s-bot", gitPassword)
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
`, kubeconfig, srv.url, addr)), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "gitk8s")
	if out, err := exec.Command("go", "build", "-o", bin, filepath.Join(root, "cmd", "gitk8s")).CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	var logs strings.Builder
	cmd := exec.Command(bin, "daemon", "--config", config, "--git-cache-dir", filepath.Join(dir, "cache"))
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	deadline := time.Now().Add(2 * time.Minute)
	for {
		var body struct {
			Leader bool         `json:"leader"`
			Syncs  []SyncStatus `json:"syncs"`
		}
		resp, err := http.Get("http://" + addr + "/api/v1/syncs")
		if err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
		}
		if len(body.Syncs) == 1 && body.Syncs[0].LastAppliedRevision == rev && body.Syncs[0].Condition("Ready").Status == "True" {
			if !body.Leader {
				t.Error("the only daemon does not lead")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not sync the course with the ServiceAccount's rights: %+v\n%s", body, logs.String())
		}
		time.Sleep(500 * time.Millisecond)
	}
	dep, err := client.AppsV1().Deployments("course").Get(ctx, "web", metav1.GetOptions{})
	if err != nil || dep.Status.ReadyReplicas != 3 {
		t.Errorf("course/web: %v %v", dep.Status, err)
	}
	for _, v := range []string{gitPassword, hookToken} {
		if strings.Contains(logs.String(), v) {
			t.Errorf("the daemon's log holds the Secret value %q", v)
		}
	}
}

func ptr[T any](v T) *T { return &v }
