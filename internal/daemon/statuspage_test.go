package daemon

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"image/png"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitk8s/gitk8s/internal/testenv"
)

// chromiumPath is Debian's Chromium, which make chromium installs.
const chromiumPath = "/usr/bin/chromium"

// screenshotEnv names a file the status page test copies its screenshot
// of a failing sync to (docs/status-page.png is made so).
const screenshotEnv = "GITK8S_STATUS_PAGE_PNG"

// chromium runs headless Chromium on a page with the given arguments and
// returns what it printed on stdout.
func chromium(t *testing.T, url string, args ...string) []byte {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("%s is missing: run make chromium (it installs Debian's chromium): %v", chromiumPath, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	all := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir()}, args...)
	cmd := exec.CommandContext(ctx, chromiumPath, append(all, url)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return stdout.Bytes()
}

// failingPixels counts the pixels of a screenshot in the failing row's
// background colour, #fde2e1.
func failingPixels(t *testing.T, url string) (int, []byte) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "page.png")
	chromium(t, url, "--screenshot="+file, "--window-size=1200,600", "--hide-scrollbars")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if r>>8 == 0xfd && g>>8 == 0xe2 && bl>>8 == 0xe1 {
				n++
			}
		}
	}
	return n, data
}

// TestStatusPage looks at the status page in headless Chromium: both syncs
// with their clusters, the failing one in red without the value of the
// Secret that made it fail, and no red left once Git is fixed.
func TestStatusPage(t *testing.T) {
	ns := env.Namespace(t)
	good, bad := testenv.NewGitServer(t), testenv.NewGitServer(t)
	cm := func(name string) string {
		return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s, namespace: %s}\ndata: {k: v}\n", name, ns)
	}
	value := fmt.Sprint(100000000 + rand.IntN(900000000)) // a number, which the API server refuses and quotes
	good.Commit(t, map[string]string{"cm.yaml": cm("good")})
	bad.Commit(t, map[string]string{"cm.yaml": cm("bad"),
		"secret.yaml": fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: %s}\nstringData: {pin: %s}\n", ns, value)})
	d := newDaemon(t, fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: %s, path: %s}, labels: {region: test}}
syncs:
- name: good-%s
  source: {url: %s, ref: {branch: main}, interval: 1h}
  clusters: [local]
- name: bad-%s
  source: {url: %s, ref: {branch: main}, interval: 1h}
  clusterSelector: {matchLabels: {region: test}}
`, env.Contexts[0], env.Kubeconfig, ns, good.URL, ns, bad.URL))
	h, err := d.Handler()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h) // loopback
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.RunElected(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor := func(what string, ok func(byName map[string]SyncStatus) bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			byName := map[string]SyncStatus{}
			for _, s := range d.Status() {
				byName[s.Name] = s
			}
			if ok(byName) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not happen: %+v", what, d.Status())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitFor("one sync applied, the other failed", func(s map[string]SyncStatus) bool {
		return s["good-"+ns].Condition("Ready").Status == "True" && s["bad-"+ns].Condition("Ready").Reason == ReasonPlanFailed
	})

	dom := string(chromium(t, srv.URL, "--dump-dom"))
	for _, want := range []string{
		`<tr class="ready" data-sync="good-` + ns + `">`,
		`<tr class="failing" data-sync="bad-` + ns + `">`,
		`<td class="clusters">local</td>`,
		"Secret/" + ns + "/db", // the error is shown…
		"&lt;secret #",         // …masked
		"UTC",
		"<strong>leader</strong>",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the page lacks %q:\n%s", want, dom)
		}
	}
	for _, leak := range []string{value, base64.StdEncoding.EncodeToString([]byte(value))} {
		if strings.Contains(dom, leak) {
			t.Errorf("the page shows a Secret value (%s):\n%s", leak, dom)
		}
	}
	red, shot := failingPixels(t, srv.URL)
	if red == 0 {
		t.Errorf("no pixel of the failing colour while a sync fails")
	}
	if p := os.Getenv(screenshotEnv); p != "" {
		if err := os.WriteFile(p, shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	if err := os.Remove(filepath.Join(bad.Work, "secret.yaml")); err != nil {
		t.Fatal(err)
	}
	bad.Commit(t, map[string]string{"cm.yaml": cm("bad")})
	d.Trigger("bad-" + ns)
	waitFor("the fixed sync applied", func(s map[string]SyncStatus) bool {
		return s["bad-"+ns].Condition("Ready").Status == "True"
	})
	if red, _ := failingPixels(t, srv.URL); red != 0 {
		t.Errorf("%d pixels of the failing colour once every sync is ready", red)
	}
}
