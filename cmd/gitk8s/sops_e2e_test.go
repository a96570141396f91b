package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gitk8s/gitk8s/internal/reconcile"
	"github.com/gitk8s/gitk8s/internal/testenv"
)

// TestSOPSCLIAndDaemon applies, from Git, a Secret the sops CLI encrypted
// for an age key: the CLI decrypts it with $SOPS_AGE_KEY_FILE, the daemon
// with the sync's decryption Secret, and the cluster gets the plain
// values; without the key, or with another, the revision fails naming the
// file and nothing of it is applied; diff --against-ref without keys shows
// that the encrypted values changed. No output of any of it holds a plain
// value, in the clear or base64.
func TestSOPSCLIAndDaemon(t *testing.T) {
	ns := env.Namespace(t)
	key, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	other, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	values := []string{"sops-e2e-pw-5521", "sops-e2e-pw-7734"}
	secret := func(v string) string {
		plain := fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ntype: Opaque\nstringData:\n  password: %s\n", v)
		return testenv.SOPSEncrypt(t, "secret.yaml", plain, key.Recipient().String())
	}
	app := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  mode: plain\n"
	srv := testenv.NewGitServer(t)
	first := srv.Commit(t, map[string]string{"deploy/secret.yaml": secret(values[0]), "deploy/app.yaml": app})

	var outputs []string
	cli := func(args ...string) (string, string, int) {
		t.Helper()
		stdout, stderr, code := gitk8s(t, args...)
		outputs = append(outputs, stdout, stderr)
		return stdout, stderr, code
	}
	client := env.Client(t, "")
	flags := []string{srv.URL, "--path", "deploy", "-n", ns, "--no-policy"}

	// No key: the revision fails, naming the file, and nothing is applied.
	t.Setenv("SOPS_AGE_KEY_FILE", "")
	t.Setenv("SOPS_AGE_KEY", "")
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	_, stderr, code := cli(append([]string{"apply"}, flags...)...)
	if code == exitOK || !strings.Contains(stderr, "deploy/secret.yaml") || !strings.Contains(stderr, "SOPS_AGE_KEY_FILE") {
		t.Errorf("apply without a key: exit %d, want a failure naming deploy/secret.yaml and the key to give\n%s", code, stderr)
	}
	if _, err := client.CoreV1().ConfigMaps(ns).Get(context.Background(), "app", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a revision that failed to decrypt was applied in part: %v", err)
	}

	keyFile := filepath.Join(t.TempDir(), "keys.txt")
	if err := os.WriteFile(keyFile, []byte(key.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOPS_AGE_KEY_FILE", keyFile)
	for _, format := range []string{"text", "json", "markdown"} {
		if _, _, code := cli(append([]string{"diff", "-o", format}, flags...)...); code != exitFailed {
			t.Errorf("diff -o %s: exit %d, want 1 (changes)", format, code)
		}
	}
	cli("render", srv.URL, "--path", "deploy")
	cli("validate", srv.URL, "--path", "deploy")
	if stdout, stderr, code := cli(append([]string{"apply", "-o", "json"}, flags...)...); code != exitOK {
		t.Fatalf("apply with the key: exit %d\n%s\n%s", code, stdout, stderr)
	}
	s, err := client.CoreV1().Secrets(ns).Get(context.Background(), "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(s.Data["password"]) != values[0] {
		t.Errorf("the applied Secret holds %d bytes, not the decrypted value", len(s.Data["password"]))
	}
	if _, ok := s.Annotations["sops"]; ok || strings.Contains(fmt.Sprint(s.Annotations), "ENC[") {
		t.Error("the applied Secret carries SOPS metadata")
	}

	// A new revision, reviewed without keys: the encrypted value changed.
	srv.Commit(t, map[string]string{"deploy/secret.yaml": secret(values[1])})
	t.Setenv("SOPS_AGE_KEY_FILE", "")
	stdout, stderr, code := cli("diff", srv.URL, "--path", "deploy", "--against-ref", first, "--kubeconfig", "/nonexistent", "--color", "never")
	if code != exitFailed || !strings.Contains(stdout, "Secret/db") || !strings.Contains(stdout, "<secret #") {
		t.Errorf("diff --against-ref without keys: exit %d, want the Secret's masked change\n%s\n%s", code, stdout, stderr)
	}

	// The daemon: its key is a Secret of its namespace.
	keySecret := "sops-key-" + ns
	daemonSecret(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: keySecret},
		Data: map[string][]byte{"identity.agekey": []byte(key.String())}})
	name := "sops-" + ns
	d, cfg, configPath := daemonFor(t, fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: %s, path: %s}}
syncs:
- name: %s
  source:
    url: %s
    ref: {branch: main}
    path: deploy
    decryption: {provider: sops, secretRef: {name: %s}}
  clusters: [local]
  namespace: %s
  policies: {skip: true}
`, env.Contexts[0], env.Kubeconfig, name, srv.URL, keySecret, ns))
	cli("diff", "--config", configPath, "--sync", name, srv.Work)
	if err := d.Reconcile(context.Background(), cfg.Syncs[0]); err != nil {
		t.Fatal(err)
	}
	st := statusOf(t, d, name)
	outputs = append(outputs, st.LastError, fmt.Sprint(st))
	if r := st.Condition("Ready").Reason; r != string(reconcile.Succeeded) {
		t.Fatalf("daemon: %s: %s", r, st.LastError)
	}
	if s, err := client.CoreV1().Secrets(ns).Get(context.Background(), "db", metav1.GetOptions{}); err != nil || string(s.Data["password"]) != values[1] {
		t.Errorf("the daemon did not apply the decrypted value: %v", err)
	}

	// A revision encrypted for another key: RenderFailed, the last good
	// state stays.
	wrong := fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: %s\n", values[0])
	srv.Commit(t, map[string]string{"deploy/secret.yaml": testenv.SOPSEncrypt(t, "secret.yaml", wrong, other.Recipient().String()),
		"deploy/app.yaml": strings.Replace(app, "mode: plain", "mode: changed", 1)})
	_ = d.Reconcile(context.Background(), cfg.Syncs[0])
	st = statusOf(t, d, name)
	outputs = append(outputs, st.LastError, fmt.Sprint(st))
	if r := st.Condition("Ready").Reason; r != string(reconcile.RenderFailed) || !strings.Contains(st.LastError, "deploy/secret.yaml") {
		t.Errorf("a revision for another key: %s: %s; want RenderFailed naming deploy/secret.yaml", r, st.LastError)
	}
	if cm, err := client.CoreV1().ConfigMaps(ns).Get(context.Background(), "app", metav1.GetOptions{}); err != nil || cm.Data["mode"] != "plain" {
		t.Errorf("the failed revision changed the cluster: %v %v", cm.Data, err)
	}

	for _, out := range outputs {
		for _, v := range values {
			for _, form := range []string{v, base64.StdEncoding.EncodeToString([]byte(v))} {
				if strings.Contains(out, form) {
					t.Errorf("an output holds a decrypted value:\n%s", out)
				}
			}
		}
		if strings.Contains(out, key.String()) {
			t.Errorf("an output holds the age key:\n%s", out)
		}
	}
	t.Logf("searched %d outputs for %d values", len(outputs), len(values))
}
