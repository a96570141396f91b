package faults

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gitk8s/gitk8s/internal/daemon"
	"github.com/gitk8s/gitk8s/internal/testenv"
)

// push is one request of the storm.
type push struct {
	kind string
	// from is the loopback address it is sent from.
	from string
	body []byte
	// header is set on the request.
	header map[string]string
}

// stormResult is what one request got.
type stormResult struct {
	kind string
	code int // 0: no answer
	err  error
}

// TestFaultWebhookStorm sends 1,000 pushes within 20 s at the daemon's
// GitHub receiver, 600 signed and 400 invalid (bad or missing signatures,
// malformed events, oversized bodies, from ten other addresses), while Git
// moves ten times. The status API answers throughout; every invalid push
// is refused and every signed one accepted; the last commit is applied;
// and the pushes are coalesced into far fewer reconciles than pushes.
func TestFaultWebhookStorm(t *testing.T) {
	ns := env.Namespace(t)
	c := client(t, "")
	srv := testenv.NewGitServer(t)
	value := "s0"
	rev := srv.Commit(t, map[string]string{"cm.yaml": configMapYAML(ns, "storm", value)})
	const secret = "storm-webhook-secret-5e2a"
	secretFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	name := "storm-" + ns
	d := startDaemon(t, daemonSpec{
		Syncs: fmt.Sprintf(`- name: %s
  source: {url: %s, ref: {branch: main}, interval: 1h}
  clusters: [c1]
  prune: true
  policies: {skip: true}
`, name, srv.URL),
		Receivers: fmt.Sprintf("[{name: github, provider: github, secretFile: %s, perMinute: 1000}]", secretFile),
	})
	d.waitSynced(t, name, rev, time.Minute)

	sign := func(body []byte) string {
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		return "sha256=" + hex.EncodeToString(mac.Sum(nil))
	}
	event := []byte(fmt.Sprintf(`{"ref":"refs/heads/main","repository":{"clone_url":%q}}`, srv.URL))
	var pushes []push
	add := func(n int, kind string, fromAttacker bool, body []byte, header map[string]string) {
		for i := range n {
			from := "127.0.0.1"
			if fromAttacker {
				from = fmt.Sprintf("127.0.0.%d", 2+i%10)
			}
			pushes = append(pushes, push{kind: kind, from: from, body: body, header: header})
		}
	}
	add(600, "signed", false, event, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": sign(event)})
	add(180, "bad signature", true, event, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + strings.Repeat("ab", 32)})
	add(100, "no signature", true, event, map[string]string{"X-GitHub-Event": "push"})
	malformed := []byte(`{"ref":"refs/heads/main","repository":`)
	add(100, "malformed event", true, malformed, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": sign(malformed)})
	huge := bytes.Repeat([]byte(" "), 1<<20+1)
	add(20, "oversized", true, huge, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": sign(huge)})
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(pushes), func(i, j int) { pushes[i], pushes[j] = pushes[j], pushes[i] })

	clients := map[string]*http.Client{}
	for _, p := range pushes {
		if clients[p.from] == nil {
			dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(p.from)}, Timeout: 5 * time.Second}
			clients[p.from] = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: dialer.DialContext, MaxIdleConnsPerHost: 16}}
		}
	}

	requests := markRequests(t)
	reconcilesBefore := d.reconciles(t, "")
	srv.Take()
	// The status API is asked every 100 ms throughout.
	statusDone, statusStop := make(chan struct{}), make(chan struct{})
	var latencies []time.Duration
	var statusFailures []string
	// appliedAt is when the status API first showed each revision applied.
	var mu sync.Mutex
	appliedAt := map[string]time.Time{}
	go func() {
		defer close(statusDone)
		for {
			select {
			case <-statusStop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			start := time.Now()
			code, body, err := d.get("/api/v1/syncs")
			latencies = append(latencies, time.Since(start))
			var st struct {
				Syncs []daemon.SyncStatus `json:"syncs"`
			}
			if err == nil && code == http.StatusOK {
				err = json.Unmarshal(body, &st)
			}
			if err != nil || code != http.StatusOK || len(st.Syncs) != 1 {
				statusFailures = append(statusFailures, fmt.Sprintf("%d %v", code, err))
				continue
			}
			mu.Lock()
			if rev := st.Syncs[0].LastAppliedRevision; appliedAt[rev].IsZero() {
				appliedAt[rev] = time.Now()
			}
			mu.Unlock()
		}
	}()

	const storm = 20 * time.Second
	queue := make(chan push)
	results := make(chan stormResult, len(pushes))
	var senders sync.WaitGroup
	for range 16 {
		senders.Go(func() {
			for p := range queue {
				req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, d.URL+"/hooks/github", bytes.NewReader(p.body))
				if err != nil {
					results <- stormResult{kind: p.kind, err: err}
					continue
				}
				for k, v := range p.header {
					req.Header.Set(k, v)
				}
				resp, err := clients[p.from].Do(req)
				if err != nil {
					results <- stormResult{kind: p.kind, err: err}
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				results <- stormResult{kind: p.kind, code: resp.StatusCode}
			}
		})
	}
	start := time.Now()
	commits := 0
	var committedAt time.Time
	for i, p := range pushes {
		// Git moves ten times in the first 80% of the storm.
		if i%80 == 40 && commits < 10 {
			commits++
			value = fmt.Sprintf("s%d", commits)
			rev = srv.Commit(t, map[string]string{"cm.yaml": configMapYAML(ns, "storm", value)})
			committedAt = time.Now()
		}
		if wait := time.Until(start.Add(storm * time.Duration(i) / time.Duration(len(pushes)))); wait > 0 {
			time.Sleep(wait)
		}
		queue <- p
	}
	close(queue)
	senders.Wait()
	sent := time.Now()
	close(results)
	close(statusStop)
	<-statusDone

	codes := map[string]map[int]int{}
	for r := range results {
		if codes[r.kind] == nil {
			codes[r.kind] = map[int]int{}
		}
		codes[r.kind][r.code]++
		switch {
		case r.err != nil && r.kind != "oversized":
			t.Errorf("%s push: %v", r.kind, r.err)
		case r.kind == "signed" && r.code != http.StatusAccepted:
			t.Errorf("a signed push got %d", r.code)
		case r.kind != "signed" && r.code >= 200 && r.code < 300:
			t.Errorf("a push with %s was accepted: %d", r.kind, r.code)
		}
	}
	kinds := make([]string, 0, len(codes))
	for k := range codes {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		t.Logf("%s: answers %v (0: connection cut)", k, codes[k])
	}
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	if len(latencies) == 0 {
		t.Fatal("the status API was never asked")
	}
	t.Logf("%d pushes in %s; status API asked %d times: median %s, slowest %s, %d failures",
		len(pushes), sent.Sub(start).Round(100*time.Millisecond), len(latencies),
		latencies[len(latencies)/2].Round(time.Millisecond), latencies[len(latencies)-1].Round(time.Millisecond), len(statusFailures))
	if len(statusFailures) > 0 {
		t.Errorf("the status API failed during the storm: %v", statusFailures)
	}
	if slowest := latencies[len(latencies)-1]; slowest > 2*time.Second {
		t.Errorf("the status API took %s to answer during the storm", slowest)
	}

	// Converged: from the last commit until the status API showed it
	// applied.
	d.waitSynced(t, name, rev, 30*time.Second)
	converged := time.Since(committedAt)
	mu.Lock()
	if at, ok := appliedAt[rev]; ok {
		converged = at.Sub(committedAt)
	}
	mu.Unlock()
	reconciles := d.reconciles(t, "") - reconcilesBefore
	applied := d.reconciles(t, "applied")
	git := srv.Take()
	t.Logf("%d commits; %d reconciles for %d signed pushes (%d applied a new revision since the daemon started); %d Git requests",
		commits, reconciles, codes["signed"][http.StatusAccepted], applied, len(git))
	if reconciles > len(pushes)/10 {
		t.Errorf("%d reconciles for %d pushes: they were not coalesced", reconciles, len(pushes))
	}
	lost, _ := configMapsLost(t, c, ns, map[string]string{"storm": value})
	figures(t, "webhook storm of 1,000 pushes in 20 s", converged, requests.sent(t), lost)
}
