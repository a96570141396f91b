package daemon

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gitk8s/gitk8s/internal/testenv"
	"github.com/gitk8s/gitk8s/test/bench"
)

// BenchmarkWebhookToApplied measures, on the local control plane, the time
// from a push webhook to the changed object being applied, for a one-object
// change in the 1,000-object workload; and the cost of an interval tick of
// ten syncs when nothing moved.
func BenchmarkWebhookToApplied(b *testing.B) {
	srv := testenv.NewGitServer(b)
	work := b.TempDir()
	bench.WriteWorkload(b, work, 0)
	files := map[string]string{}
	entries, _ := os.ReadDir(work)
	for _, e := range entries {
		data, _ := os.ReadFile(filepath.Join(work, e.Name()))
		files[e.Name()] = string(data)
	}
	srv.Commit(b, files)
	secret := filepath.Join(b.TempDir(), "secret")
	_ = os.WriteFile(secret, []byte("bench-secret"), 0o600)
	var syncs bytes.Buffer
	fmt.Fprintf(&syncs, "- name: s0\n  source: {url: %s, ref: {branch: main}, interval: 1h}\n  clusters: [local]\n", srv.URL)
	// Nine more syncs, each of a small repository of its own, for the
	// tick; suspended until then.
	for i := 1; i < 10; i++ {
		small := testenv.NewGitServer(b)
		small.Commit(b, map[string]string{"cm.yaml": fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: tick-%d, namespace: default}\ndata: {a: b}\n", i)})
		fmt.Fprintf(&syncs, "- name: s%d\n  source: {url: %s, ref: {branch: main}, interval: 1h}\n  clusters: [local]\n  suspend: true\n", i, small.URL)
	}
	cfg, err := LoadConfig(writeConfigB(b, fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: %s, path: %s}}
syncs:
%swebhooks:
  receivers: [{name: push, provider: generic, secretFile: %s}]
`, env.Contexts[0], env.Kubeconfig, syncs.String(), secret)))
	if err != nil {
		b.Fatal(err)
	}
	d, err := New(cfg, Options{GitCacheDir: b.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = d.Run(ctx) }()
	h, err := d.Handler()
	if err != nil {
		b.Fatal(err)
	}
	hook := httptest.NewServer(h)
	defer hook.Close()
	client := env.Client(b, "")
	value := func() string {
		cm, err := client.CoreV1().ConfigMaps("bench-00").Get(context.Background(), "config-0", metav1.GetOptions{})
		if err != nil {
			return ""
		}
		return cm.Data["version"]
	}
	waitFor := func(want string, within time.Duration) time.Duration {
		start := time.Now()
		for value() != want {
			if time.Since(start) > within {
				b.Fatalf("version %q not applied within %s: %+v", want, within, d.Status()[0])
			}
			time.Sleep(5 * time.Millisecond)
		}
		return time.Since(start)
	}
	waitFor("1", 3*time.Minute)
	for d.Status()[0].Condition("Ready").Status != "True" {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(10 * time.Second) // let the controllers settle

	var latencies []time.Duration
	current := "1"
	for round := range 7 {
		version := fmt.Sprint(round + 2)
		files["bench-00.yaml"] = strings.Replace(files["bench-00.yaml"], `name: config-0, namespace: bench-00}
data: {version: "`+current+`"`, `name: config-0, namespace: bench-00}
data: {version: "`+version+`"`, 1)
		current = version
		srv.Commit(b, map[string]string{"bench-00.yaml": files["bench-00.yaml"]})
		body := []byte(fmt.Sprintf(`{"ref":"refs/heads/main","repository":{"clone_url":%q}}`, srv.URL))
		mac := hmac.New(sha256.New, []byte("bench-secret"))
		mac.Write(body)
		req, _ := http.NewRequest(http.MethodPost, hook.URL+"/hooks/push", bytes.NewReader(body))
		req.Header.Set("X-Signature", "sha256="+hex.EncodeToString(mac.Sum(nil)))
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusAccepted {
			b.Fatalf("webhook: %v %v", err, resp)
		}
		resp.Body.Close()
		waitFor(version, 30*time.Second)
		latencies = append(latencies, time.Since(start))
	}
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	median := latencies[len(latencies)/2]

	// Ten syncs, nothing moved: one tick each.
	for i := range cfg.Syncs {
		cfg.Syncs[i].Suspend = false
	}
	for i := 1; i < 10; i++ { // bring the others to Ready once
		if err := d.Reconcile(ctx, cfg.Syncs[i]); err != nil {
			b.Fatal(err)
		}
	}
	srv.Take()
	tickStart := time.Now()
	for i := range 10 {
		if err := d.Reconcile(ctx, cfg.Syncs[i]); err != nil {
			b.Fatal(err)
		}
	}
	tick := time.Since(tickStart)
	requests := len(srv.Take()) // the big repository's server: one advertisement
	fmt.Printf("\nwebhook to applied, 1 of 1,000 objects changed: median %s (min %s, max %s, %d pushes)\n", median.Round(time.Millisecond), latencies[0].Round(time.Millisecond), latencies[len(latencies)-1].Round(time.Millisecond), len(latencies))
	fmt.Printf("interval tick of 10 unchanged syncs: %s in all (one ref advertisement each; %d request to the 1,000-object repository)\n", tick.Round(time.Millisecond), requests)
	b.ReportMetric(float64(median.Milliseconds()), "webhook-to-applied-ms")
	b.ReportMetric(float64(tick.Milliseconds()), "10-sync-tick-ms")
	for b.Loop() {
	}
}

func writeConfigB(b *testing.B, content string) string {
	p := filepath.Join(b.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		b.Fatal(err)
	}
	return p
}
