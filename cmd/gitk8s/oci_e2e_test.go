package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gitk8s/gitk8s/internal/daemon"
	"github.com/gitk8s/gitk8s/internal/reconcile"
	"github.com/gitk8s/gitk8s/internal/testenv"
	"github.com/gitk8s/gitk8s/internal/testenv/chartrepo"
)

// TestOCISourceCLIAndDaemon: CI pushes a folder with gitk8s push to a
// registry on loopback that wants a password; the CLI applies the
// artifact, and the daemon syncs it with credentials from a
// .dockerconfigjson Secret: an unchanged tag costs a manifest HEAD, a
// moved tag is applied, and a deleted tag or a corrupted layer leaves the
// sync SourceUnavailable with what was applied kept.
func TestOCISourceCLIAndDaemon(t *testing.T) {
	const user, password = "ci-pusher", "oci-e2e-pw-8812"
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	ns := env.Namespace(t)
	reg := chartrepo.NewRegistry(t, user, password)
	url := "oci://" + reg.Host + "/team/app:v1"
	configMap := func(value string) map[string]string {
		return map[string]string{"deploy/app.yaml": fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  version: %s\n", value)}
	}
	var outputs []string
	cli := func(wantCode int, args ...string) string {
		t.Helper()
		stdout, stderr, code := gitk8s(t, args...)
		outputs = append(outputs, stdout, stderr)
		if code != wantCode {
			t.Fatalf("gitk8s %s: exit %d, want %d\n%s\n%s", strings.Join(args, " "), code, wantCode, stdout, stderr)
		}
		return stdout
	}

	t.Setenv("GITK8S_OCI_USERNAME", user)
	t.Setenv("GITK8S_OCI_PASSWORD", password)
	out := cli(exitOK, "push", url, testenv.WriteFiles(t, configMap("one")), "--source", "https://git.example/app.git", "--revision", "main@sha1:0123")
	if !strings.Contains(out, "@sha256:") {
		t.Errorf("push does not say the digest: %s", out)
	}
	cli(exitOK, "apply", url, "--path", "deploy", "-n", ns, "--no-policy")
	client := env.Client(t, "")
	version := func() string {
		cm, err := client.CoreV1().ConfigMaps(ns).Get(context.Background(), "app", metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		return cm.Data["version"]
	}
	if v := version(); v != "one" {
		t.Fatalf("after the CLI's apply: %s", v)
	}
	t.Setenv("GITK8S_OCI_USERNAME", "")
	t.Setenv("GITK8S_OCI_PASSWORD", "")

	secretName := "oci-auth-" + ns
	docker := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, reg.Host, base64.StdEncoding.EncodeToString([]byte(user+":"+password)))
	daemonSecret(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: secretName}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{".dockerconfigjson": []byte(docker)}})
	name := "oci-" + ns
	d, cfg, _ := daemonFor(t, fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: %s, path: %s}}
syncs:
- name: %s
  source:
    url: oci://%s/team/app
    ref: {tag: v1}
    path: deploy
    auth: {secretRef: {name: %s}}
  clusters: [local]
  namespace: %s
  policies: {skip: true}
`, env.Contexts[0], env.Kubeconfig, name, reg.Host, secretName, ns))
	reconcileOnce := func() daemon.SyncStatus {
		t.Helper()
		_ = d.Reconcile(context.Background(), cfg.Syncs[0])
		st := statusOf(t, d, name)
		outputs = append(outputs, st.LastError, fmt.Sprint(st))
		return st
	}
	st := reconcileOnce()
	if r := st.Condition("Ready").Reason; r != string(reconcile.Succeeded) || !strings.HasPrefix(st.LastAppliedRevision, "sha256:") {
		t.Fatalf("daemon: %s at %q: %s", r, st.LastAppliedRevision, st.LastError)
	}
	before := len(reg.Requests())
	reconcileOnce()
	for _, r := range reg.Requests()[before:] {
		if !strings.HasPrefix(r, "HEAD ") {
			t.Errorf("a reconcile of an unchanged tag made %s", r)
		}
	}

	t.Setenv("GITK8S_OCI_USERNAME", user)
	t.Setenv("GITK8S_OCI_PASSWORD", password)
	cli(exitOK, "push", url, testenv.WriteFiles(t, configMap("two")))
	if st := reconcileOnce(); st.Condition("Ready").Reason != string(reconcile.Succeeded) || version() != "two" {
		t.Errorf("a moved tag: %s, version %s: %s", st.Condition("Ready").Reason, version(), st.LastError)
	}

	reg.CorruptBlobs(true)
	cli(exitOK, "push", url, testenv.WriteFiles(t, configMap("three")))
	st = reconcileOnce()
	reg.CorruptBlobs(false)
	if st.Condition("Ready").Reason != string(reconcile.SourceUnavailable) || !strings.Contains(st.LastError, "digest") || version() != "two" {
		t.Errorf("a corrupted layer: %s, version %s: %s", st.Condition("Ready").Reason, version(), st.LastError)
	}

	reg.Delete(t, "team/app", "v1")
	st = reconcileOnce()
	if st.Condition("Ready").Reason != string(reconcile.SourceUnavailable) || !strings.Contains(st.LastError, "team/app:v1") || version() != "two" {
		t.Errorf("a deleted tag: %s, version %s: %s", st.Condition("Ready").Reason, version(), st.LastError)
	}
	for _, o := range outputs {
		if strings.Contains(o, password) || strings.Contains(o, base64.StdEncoding.EncodeToString([]byte(user+":"+password))) {
			t.Errorf("an output holds the registry's password:\n%s", o)
		}
	}
}
