package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gitk8s/gitk8s/internal/testenv"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// lockedBuffer is a bytes.Buffer safe for the watcher and the test at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestApplyWatch edits files under a running `apply --watch`: changes are
// applied, a broken file is reported while the last good state stays, and
// files in a new folder are picked up.
func TestApplyWatch(t *testing.T) {
	ns := env.Namespace(t)
	dir := testenv.WriteFiles(t, map[string]string{"cm.yaml": configMap(ns, "live", "one")})
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr lockedBuffer
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"apply", dir, "--watch", "--kubeconfig", env.Kubeconfig, "--inventory", "watch-" + ns}, &stdout, &stderr)
	}()
	client := env.Client(t, "")
	value := func(name string) string {
		cm, err := client.CoreV1().ConfigMaps(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return ""
		}
		return cm.Data["value"]
	}
	eventually := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not happen\nstdout:\n%s\nstderr:\n%s", what, stdout.String(), stderr.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	eventually("first apply", func() bool { return value("live") == "one" && strings.Contains(stderr.String(), "watching") })

	if err := os.WriteFile(filepath.Join(dir, "cm.yaml"), []byte(configMap(ns, "live", "two")), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually("edit applied", func() bool { return value("live") == "two" })

	if err := os.WriteFile(filepath.Join(dir, "cm.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [broken\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually("broken file reported", func() bool { return strings.Contains(stderr.String(), "cm.yaml: invalid YAML") })
	if value("live") != "two" {
		t.Errorf("the broken edit changed the cluster")
	}

	if err := os.WriteFile(filepath.Join(dir, "cm.yaml"), []byte(configMap(ns, "live", "three")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "more", "deeper"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "more", "deeper", "extra.yaml"), []byte(configMap(ns, "extra", "new")), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually("fix and new folder applied", func() bool { return value("live") == "three" && value("extra") == "new" })

	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("watch ended with exit %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not stop")
	}
}
