package main

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/gitk8s/gitk8s/internal/daemon"
	"github.com/gitk8s/gitk8s/internal/testenv"
)

// TestSuspendCommand runs gitk8s suspend and resume against the control
// plane: what the ConfigMap holds, names that no sync can have, concurrent
// suspends, resuming what is not suspended.
func TestSuspendCommand(t *testing.T) {
	ns := env.Namespace(t)
	client := env.Client(t, "")
	ctx := context.Background()
	suspensions := func() map[string]daemon.Suspension {
		t.Helper()
		got, err := daemon.Suspensions(ctx, client, ns)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}

	before := time.Now().UTC().Add(-time.Second)
	stdout, stderr, code := gitk8s(t, "suspend", "shop", "--reason", "release freeze", "--namespace", ns)
	if code != exitOK || stdout != "sync shop suspended\n" {
		t.Fatalf("suspend: exit %d\n%s%s", code, stdout, stderr)
	}
	s := suspensions()["shop"]
	if s.Reason != "release freeze" || s.By == "" || s.At.Before(before) || s.At.After(time.Now()) || s.At.Location() != time.UTC {
		t.Errorf("suspension %+v", s)
	}

	_, stderr, code = gitk8s(t, "suspend", "Shop_1", "--namespace", ns)
	if code != exitError || !strings.Contains(stderr, `sync "Shop_1": not a sync's name, which is a lowercase DNS label`) {
		t.Errorf("a name that is not a DNS label: exit %d, %s", code, stderr)
	}
	if _, ok := suspensions()["Shop_1"]; ok {
		t.Error("a name that is not a DNS label was written")
	}

	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i, name := range []string{"web", "api"} {
		wg.Go(func() { _, _, codes[i] = gitk8s(t, "suspend", name, "--namespace", ns) })
	}
	wg.Wait()
	got := suspensions()
	if codes[0] != exitOK || codes[1] != exitOK || len(got) != 3 {
		t.Errorf("concurrent suspends: exits %v, suspensions %v", codes, got)
	}

	if _, stderr, code = gitk8s(t, "resume", "shop", "--namespace", ns); code != exitOK {
		t.Errorf("resume: exit %d %s", code, stderr)
	}
	if _, ok := suspensions()["shop"]; ok {
		t.Error("resume left the sync suspended")
	}
	_, stderr, code = gitk8s(t, "resume", "shop", "--namespace", ns)
	if code != exitError || !strings.Contains(stderr, "not suspended (a sync with suspend: true in the daemon's configuration can only be resumed there)") {
		t.Errorf("resume of a sync that is not suspended: exit %d, %s", code, stderr)
	}
}

// TestSuspendNeedsTheRole checks the Role of deploy/10-rbac.yaml that the
// docs name: a user without it cannot suspend; bound to it, the user can,
// and is recorded as the one who did.
func TestSuspendNeedsTheRole(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"00-namespace.yaml", "10-rbac.yaml"} {
		kubectl(t, "apply", "--server-side", "-f", filepath.Join(root, "deploy", f))
	}
	user := "oncall-" + strings.TrimPrefix(env.Namespace(t), "t-")
	raw, err := clientcmd.LoadFromFile(env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	admin := raw.Contexts[raw.CurrentContext].AuthInfo
	as := *raw.AuthInfos[admin]
	as.Impersonate = user
	raw.AuthInfos["as-user"] = &as
	c := *raw.Contexts[raw.CurrentContext]
	c.AuthInfo = "as-user"
	raw.Contexts["as-user"] = &c
	raw.CurrentContext = "as-user"
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*raw, kubeconfig); err != nil {
		t.Fatal(err)
	}
	syncName := "rbac-" + strings.TrimPrefix(user, "oncall-")
	asUser := func(args ...string) (string, int) {
		var out, errOut strings.Builder
		code := run(context.Background(), append(args, "--kubeconfig", kubeconfig), &out, &errOut)
		return errOut.String(), code
	}
	if stderr, code := asUser("suspend", syncName); code != exitError || !strings.Contains(stderr, "forbidden") {
		t.Fatalf("a user without the role: exit %d %s", code, stderr)
	}
	kubectl(t, "-n", daemon.HomeNamespace, "create", "rolebinding", user, "--role", "gitk8s-suspend", "--user", user)
	t.Cleanup(func() { kubectl(t, "-n", daemon.HomeNamespace, "delete", "rolebinding", user) })
	// RBAC reaches the authorizer's cache within moments.
	deadline := time.Now().Add(10 * time.Second)
	for {
		stderr, code := asUser("suspend", syncName, "--reason", "incident")
		if code == exitOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a user with the role: exit %d %s", code, stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
	got, err := daemon.Suspensions(context.Background(), env.Client(t, ""), daemon.HomeNamespace)
	if err != nil {
		t.Fatal(err)
	}
	if s := got[syncName]; s.By != user || s.Reason != "incident" {
		t.Errorf("suspension %+v, want by %s", s, user)
	}
	if stderr, code := asUser("resume", syncName); code != exitOK {
		t.Errorf("resume with the role: exit %d %s", code, stderr)
	}
	cm, err := env.Client(t, "").CoreV1().ConfigMaps(daemon.HomeNamespace).Get(context.Background(), daemon.SuspendedConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cm.Data[syncName]; ok {
		t.Error("resume left the sync listed")
	}
}
