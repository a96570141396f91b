package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/gitk8s/gitk8s/internal/cluster"
	"github.com/gitk8s/gitk8s/internal/controlplane"
)

// KubeconfigEnv names a kubeconfig of a running control plane to use
// instead of starting one.
const KubeconfigEnv = "GITK8S_TEST_KUBECONFIG"

// Env is the control plane of one test package.
type Env struct {
	// Kubeconfig has one context per cluster.
	Kubeconfig string
	// Contexts are the cluster contexts, the default one first.
	Contexts []string
	// ControlPlane is the started control plane; nil when reused.
	ControlPlane *controlplane.ControlPlane
	// BinDir holds kubectl and the control plane binaries.
	BinDir string

	dir string
}

// Main starts a control plane with the given number of clusters, runs the
// tests, stops it and exits. It is meant to be the whole of TestMain.
func Main(m *testing.M, env **Env, clusters int) {
	e, err := Start(clusters)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testenv: cannot start the local control plane: %v\n", err)
		os.Exit(1)
	}
	*env = e
	code := m.Run()
	e.Stop()
	os.Exit(code)
}

// Start starts a control plane, or reuses the one KubeconfigEnv names.
func Start(clusters int) (*Env, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(root, ".cache", "bin")
	if kc := os.Getenv(KubeconfigEnv); kc != "" {
		raw, err := clientcmd.LoadFromFile(kc)
		if err != nil {
			return nil, fmt.Errorf("%s=%s: %w", KubeconfigEnv, kc, err)
		}
		contexts := []string{raw.CurrentContext}
		for name := range raw.Contexts {
			if name != raw.CurrentContext {
				contexts = append(contexts, name)
			}
		}
		if len(contexts) < clusters {
			return nil, fmt.Errorf("%s=%s has %d contexts; these tests need %d clusters", KubeconfigEnv, kc, len(contexts), clusters)
		}
		return &Env{Kubeconfig: kc, Contexts: contexts, BinDir: bin}, nil
	}
	return startOwn(root, bin, clusters)
}

// startOwn starts a control plane of this process's own.
func startOwn(root, bin string, clusters int) (*Env, error) {
	dir, err := os.MkdirTemp("", "gitk8s-testenv-")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cp, err := controlplane.Start(ctx, controlplane.Options{
		Dir:        dir,
		BinDir:     bin,
		KwokStages: filepath.Join(root, ".cache", "kwok-stages.yaml"),
		Clusters:   clusters,
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	env := &Env{Kubeconfig: cp.Kubeconfig, ControlPlane: cp, BinDir: bin, dir: dir}
	for _, c := range cp.Clusters {
		env.Contexts = append(env.Contexts, c.Name)
	}
	return env, nil
}

// Stop stops a control plane this Env started and removes its files.
func (e *Env) Stop() {
	if e.ControlPlane == nil {
		return
	}
	if err := e.ControlPlane.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: stop: %v\n", err)
	}
	os.RemoveAll(e.dir)
}

// Target is a gitk8s Target for a context ("" for the first cluster).
func (e *Env) Target(t testing.TB, context string) *cluster.Target {
	t.Helper()
	if context == "" {
		context = e.Contexts[0]
	}
	opts := cluster.DefaultOptions()
	opts.Kubeconfig = e.Kubeconfig
	target, err := cluster.FromKubeconfig(opts, context)
	if err != nil {
		t.Fatal(err)
	}
	return target
}

// Client is a typed client for a context ("" for the first cluster).
func (e *Env) Client(t testing.TB, context string) kubernetes.Interface {
	t.Helper()
	client, err := kubernetes.NewForConfig(e.Target(t, context).Config)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// Namespace creates a namespace of its own for the test in the first
// cluster and deletes it when the test ends.
func (e *Env) Namespace(t testing.TB) string {
	t.Helper()
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	name := fmt.Sprintf("t-%s", hex.EncodeToString(suffix))
	client := e.Client(t, "")
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"gitk8s.io/test": sanitize(t.Name())}}}
	if _, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		err := client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete namespace %s: %v", name, err)
		}
	})
	return name
}

// AuditLog is the audit log of a cluster of a control plane this Env
// started ("" for the first cluster).
func (e *Env) AuditLog(t testing.TB, context string) string {
	t.Helper()
	if e.ControlPlane == nil {
		t.Fatalf("the audit log is only known for a control plane the tests started; unset %s", KubeconfigEnv)
	}
	if context == "" {
		context = e.Contexts[0]
	}
	for _, c := range e.ControlPlane.Clusters {
		if c.Name == context {
			return filepath.Join(e.dir, c.Name, "audit.log")
		}
	}
	t.Fatalf("no cluster %s", context)
	return ""
}

// Kubectl is the path of the kubectl built with the control plane.
func (e *Env) Kubectl() string { return filepath.Join(e.BinDir, "kubectl") }

// RepoRoot finds the root of the gitk8s module from the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "cmd", "gitk8s")); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("cannot find the gitk8s repository root above the working directory")
		}
		dir = parent
	}
}
