package daemon

import (
	"bytes"
	"context"
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

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gitk8s/gitk8s/internal/testenv"
)

// TestDeployedSyncResources installs deploy/ (the CRD, the daemon's RBAC)
// and the example team of deploy/examples/team.yaml, runs the gitk8s binary
// as a daemon with nothing but a token of the ServiceAccount deploy/
// creates, and a configuration without syncs: a team's Sync, created with
// kubectl, becomes Ready as the team's ServiceAccount; deleting it prunes
// what it applied. The API server refuses no request of the daemon, and no
// request it makes as the team.
func TestDeployedSyncResources(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"00-namespace.yaml", "05-crds.yaml", "10-rbac.yaml"} {
		if out, err := kubectl(t, "", "apply", "--server-side", "-f", filepath.Join(root, "deploy", f)); err != nil {
			t.Fatalf("apply %s: %v\n%s", f, err, out)
		}
	}
	if out, err := kubectl(t, "", "wait", "--for=condition=Established", "--timeout=60s", "crd/syncs.gitk8s.io"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	team, err := os.ReadFile(filepath.Join(root, "deploy", "examples", "team.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	srv := testenv.NewGitServer(t)
	rev := srv.Commit(t, map[string]string{
		"deploy/settings.yaml": configMap("team-a", "shop-settings", "v1"),
		"deploy/service.yaml":  "apiVersion: v1\nkind: Service\nmetadata: {name: shop, namespace: team-a}\nspec:\n  selector: {app: shop}\n  ports: [{port: 80}]\n",
	})
	// The example, with the Sync pointed at the test's repository.
	manifest := strings.Replace(string(team), "https://git.example/team-a/shop.git", srv.URL, 1)
	if !strings.Contains(manifest, srv.URL) {
		t.Fatal("deploy/examples/team.yaml no longer names its example repository")
	}
	ctx := context.Background()
	client := env.Client(t, "")
	t.Cleanup(func() {
		_, _ = kubectl(t, "", "patch", "-n", "team-a", "sync/shop", "--type=merge", "-p", `{"metadata":{"finalizers":null}}`)
		_ = client.CoreV1().Namespaces().Delete(context.Background(), "team-a", metav1.DeleteOptions{})
	})

	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "sa.kubeconfig")
	if err := os.WriteFile(kubeconfig, serviceAccountKubeconfig(t, "gitk8s-system", "gitk8s", ""), 0o600); err != nil {
		t.Fatal(err)
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
webhooks: {listen: "%s"}
leaderElection: {enabled: true}
syncResources: {enabled: true, requireServiceAccount: true}
`, kubeconfig, addr)), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "gitk8s")
	if out, err := exec.Command("go", "build", "-o", bin, filepath.Join(root, "cmd", "gitk8s")).CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	audit := env.MarkAudit(t, "")
	logs := &lockedWriter{w: &bytes.Buffer{}, mu: &sync.Mutex{}}
	logText := func() string {
		logs.mu.Lock()
		defer logs.mu.Unlock()
		return logs.w.String()
	}
	cmd := exec.Command(bin, "daemon", "--config", config, "--git-cache-dir", filepath.Join(dir, "cache"), "--log-format", "json")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	testenv.Within(t, "the daemon serves", 60*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	// A team member applies the team's namespace, account and Sync.
	if out, err := kubectl(t, manifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply the team: %v\n%s", err, out)
	}
	if out, err := kubectl(t, "", "wait", "-n", "team-a", "--for=condition=Ready", "--timeout=120s", "sync/shop"); err != nil {
		out2, _ := kubectl(t, "", "get", "-n", "team-a", "sync/shop", "-o", "yaml")
		t.Fatalf("the team's Sync is not Ready: %v\n%s\n%s\nlogs:\n%s", err, out, out2, logText())
	}
	if got := configMapValue(t, "team-a", "shop-settings"); got != "v1" {
		t.Errorf("shop-settings = %q", got)
	}
	out, _ := kubectl(t, "", "get", "-n", "team-a", "syncs")
	if !strings.Contains(out, rev) {
		t.Errorf("kubectl get syncs does not show the revision %s:\n%s", rev, out)
	}

	if out, err := kubectl(t, "", "delete", "-n", "team-a", "sync/shop", "--timeout=60s"); err != nil {
		t.Fatalf("delete the Sync: %v\n%s\nlogs:\n%s", err, out, logText())
	}
	for _, get := range []func() error{
		func() error {
			_, err := client.CoreV1().ConfigMaps("team-a").Get(ctx, "shop-settings", metav1.GetOptions{})
			return err
		},
		func() error {
			_, err := client.CoreV1().Services("team-a").Get(ctx, "shop", metav1.GetOptions{})
			return err
		},
		func() error {
			_, err := client.CoreV1().Secrets("team-a").Get(ctx, "gitk8s-shop", metav1.GetOptions{})
			return err
		},
	} {
		if err := get(); !apierrors.IsNotFound(err) {
			t.Errorf("left after the Sync was deleted: %v", err)
		}
	}

	const user = "system:serviceaccount:gitk8s-system:gitk8s"
	requests, asTeam := 0, 0
	for _, ev := range audit.Requests(t, "") {
		if ev.User.Username != user {
			continue
		}
		requests++
		if ev.ImpersonatedUser.Username == "system:serviceaccount:team-a:deployer" {
			asTeam++
		}
		if ev.ResponseStatus.Code == http.StatusForbidden {
			t.Errorf("the API server refused the daemon (as %q): %s %s", ev.ImpersonatedUser.Username, ev.Verb, ev.RequestURI)
		}
	}
	if requests == 0 || asTeam == 0 {
		t.Errorf("the audit log holds %d requests of %s, %d of them as the team's ServiceAccount", requests, user, asTeam)
	}
	if strings.Contains(strings.ToLower(logText()), "forbidden") {
		t.Errorf("the daemon's log reports a refusal:\n%s", logText())
	}
}
