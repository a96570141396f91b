package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestWebhookSlowBodyIsCutOff: a client that trickles its body gets 408
// once the body has not arrived within the receiver's BodyTimeout; one
// that is answered before its body is read (an unknown receiver, an
// address over its budget) is answered at once. Either way the connection
// is closed, not held while the server waits for the rest of the body.
func TestWebhookSlowBodyIsCutOff(t *testing.T) {
	const timeout = 500 * time.Millisecond
	tests := []struct {
		name string
		path string
		// spent is how many bad requests the address sent before.
		spent int
		code  int
		after time.Duration
	}{
		{"body read", "/hooks/r", 0, http.StatusRequestTimeout, timeout},
		{"unknown receiver", "/hooks/nowhere", 0, http.StatusNotFound, 0},
		{"address over its budget", "/hooks/r", 1, http.StatusTooManyRequests, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := testDaemon()
			srv := httptest.NewServer(WebhookHandler([]*Receiver{{Name: "r", Provider: ProviderGeneric, Secret: []byte("k"), BodyTimeout: timeout, InvalidBurst: 1}}, d.OnPush))
			defer srv.Close()
			for range tt.spent {
				resp, err := http.Post(srv.URL+tt.path, "application/json", strings.NewReader("{}"))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
			}
			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			if _, err := fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: gitk8s\r\nContent-Length: 100000\r\nX-Signature: sha256=00\r\n\r\n", tt.path); err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				for {
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
						if _, err := conn.Write([]byte("x")); err != nil {
							return
						}
					}
				}
			}()
			_ = conn.SetReadDeadline(time.Now().Add(10 * timeout))
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			took := time.Since(start)
			if err != nil {
				t.Fatalf("no answer after %s: %v", took.Round(time.Millisecond), err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			_, err = br.ReadByte()
			closed := time.Since(start)
			t.Logf("a trickled body: %d after %s, connection closed after %s", resp.StatusCode, took.Round(time.Millisecond), closed.Round(time.Millisecond))
			if resp.StatusCode != tt.code || took < tt.after || took > tt.after+time.Second {
				t.Errorf("%d after %s, want %d after %s", resp.StatusCode, took.Round(time.Millisecond), tt.code, tt.after)
			}
			// The server closes its end: the client sees either EOF or, when
			// unread trickled bytes were still in the server's buffer, a reset.
			if (err != io.EOF && !errors.Is(err, syscall.ECONNRESET)) || closed > tt.after+time.Second {
				t.Errorf("the connection was not closed after the answer: %v after %s", err, closed.Round(time.Millisecond))
			}
		})
	}
}

// TestWebhookServerOptions: the daemon's listener bounds every read and
// write of a connection.
func TestWebhookServerOptions(t *testing.T) {
	o := DefaultServerOptions()
	srv := NewServer(":0", http.NotFoundHandler(), o)
	for name, v := range map[string]time.Duration{
		"ReadHeaderTimeout": srv.ReadHeaderTimeout,
		"ReadTimeout":       srv.ReadTimeout,
		"WriteTimeout":      srv.WriteTimeout,
		"IdleTimeout":       srv.IdleTimeout,
	} {
		if v <= 0 || v > 2*time.Minute {
			t.Errorf("%s is %s, want a bound of at most 2m", name, v)
		}
	}
	if srv.MaxHeaderBytes <= 0 || srv.MaxHeaderBytes > 1<<20 {
		t.Errorf("MaxHeaderBytes is %d", srv.MaxHeaderBytes)
	}
	if srv.WriteTimeout < srv.ReadTimeout || srv.ReadTimeout < DefaultWebhookBodyTimeout {
		t.Errorf("ReadTimeout %s and WriteTimeout %s leave no room for a webhook's body (%s)", srv.ReadTimeout, srv.WriteTimeout, DefaultWebhookBodyTimeout)
	}
}

// TestWebhookFloodOfInvalidRequests: 1,000 badly signed requests from one
// address get 429 once that address's budget is used, cost a bounded
// number of secret reads and signature checks, and a signed push from
// another address gets 202 in the middle of the flood.
func TestWebhookFloodOfInvalidRequests(t *testing.T) {
	d := testDaemon()
	var reads atomic.Int64
	r := &Receiver{Name: "r", Provider: ProviderGitHub, CurrentSecret: func(context.Context) ([]byte, error) {
		reads.Add(1)
		return []byte("s3"), nil
	}}
	h := WebhookHandler([]*Receiver{r}, d.OnPush)
	push := `{"ref":"refs/heads/main","repository":{"clone_url":"https://git.example/org/shop.git"}}`
	post := func(addr, signature string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/hooks/r", strings.NewReader(push))
		req.RemoteAddr = addr
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-Hub-Signature-256", "sha256="+signature)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	const flood, workers = 1000, 8
	var mu sync.Mutex
	codes := map[int]int{}
	retryAfter := 0
	jobs := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for range jobs {
				rec := post("203.0.113.7:40000", sign("wrong", push))
				mu.Lock()
				codes[rec.Code]++
				if rec.Code == http.StatusTooManyRequests && rec.Header().Get("Retry-After") != "" {
					retryAfter++
				}
				mu.Unlock()
			}
		})
	}
	var valid int
	for i := range flood {
		if i == flood/2 {
			valid = post("140.82.112.1:50000", sign("s3", push)).Code
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	took := time.Since(start)
	checked := int(reads.Load()) - 1 // the signed push is read once too
	bound := DefaultWebhookInvalidBurst + int(took.Minutes()*DefaultWebhookInvalidPerMinute) + 1
	t.Logf("%d bad requests in %s: %v; %d secret reads for them (bound %d); the signed push got %d",
		flood, took.Round(time.Millisecond), codes, checked, bound, valid)
	if valid != http.StatusAccepted || len(triggered(d)) != 1 {
		t.Errorf("the signed push during the flood got %d, want 202", valid)
	}
	if checked > bound {
		t.Errorf("%d bad requests were checked, want at most %d", checked, bound)
	}
	if codes[http.StatusUnauthorized] > bound || codes[http.StatusTooManyRequests] < flood-bound {
		t.Errorf("codes %v: want at most %d 401s, the rest 429", codes, bound)
	}
	if retryAfter != codes[http.StatusTooManyRequests] {
		t.Errorf("%d of %d 429s say Retry-After", retryAfter, codes[http.StatusTooManyRequests])
	}
}

// TestWebhookMissingSecretIsReadOncePerPeriod: while a receiver's Secret
// cannot be read, a flood of requests (from as many addresses, so that no
// address runs out of budget) reads it once per SecretRetry, not once per
// request; once it is there, a push goes through within that period.
func TestWebhookMissingSecretIsReadOncePerPeriod(t *testing.T) {
	const retry = 200 * time.Millisecond
	d := testDaemon()
	var reads, heard atomic.Int64
	var present atomic.Bool
	r := &Receiver{Name: "r", Provider: ProviderGitLab, SecretRetry: retry,
		CurrentSecret: func(context.Context) ([]byte, error) {
			reads.Add(1)
			if present.Load() {
				return []byte("t"), nil
			}
			return nil, errors.New(`Secret gitk8s-system/hook: secrets "hook" not found`)
		},
		OnSecretError: func(error) { heard.Add(1) },
	}
	h := WebhookHandler([]*Receiver{r}, d.OnPush)
	post := func(i int) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/hooks/r", strings.NewReader("{}"))
		req.RemoteAddr = fmt.Sprintf("10.%d.%d.1:1234", i/250%250, i%250)
		req.Header.Set("X-Gitlab-Token", "t")
		req.Header.Set("X-Gitlab-Event", "Tag Push Hook")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	codes := map[int]int{}
	retryAfter := 0
	start := time.Now()
	n := 0
	for ; time.Since(start) < 5*retry; n++ {
		rec := post(n)
		codes[rec.Code]++
		if rec.Header().Get("Retry-After") != "" {
			retryAfter++
		}
		time.Sleep(time.Millisecond)
	}
	took := time.Since(start)
	bound := int(took/retry) + 1
	t.Logf("%d requests in %s: %v; the Secret was read %d times (bound %d)", n, took.Round(time.Millisecond), codes, reads.Load(), bound)
	if codes[http.StatusServiceUnavailable] != n || retryAfter != n {
		t.Errorf("codes %v, %d with Retry-After; want 503 with Retry-After for each of %d", codes, retryAfter, n)
	}
	if got := int(reads.Load()); got > bound || got < 2 || heard.Load() != reads.Load() {
		t.Errorf("the Secret was read %d times and %d failures heard, want at most %d of each, and again after %s", got, heard.Load(), bound, retry)
	}

	present.Store(true)
	time.Sleep(retry)
	if rec := post(n); rec.Code != http.StatusAccepted {
		t.Errorf("a push once the Secret is there: %d %s", rec.Code, rec.Body.String())
	}
}

// TestWebhookStandbyChecksBeforeForwarding: a standby checks a request's
// signature before it forwards it, so that the leader sees the client's
// own address and a flood through a standby does not use up the budget
// of the standby's address at the leader.
func TestWebhookStandbyChecksBeforeForwarding(t *testing.T) {
	d := testDaemon()
	d.metrics = newMetrics()
	d.cfg.LeaderElection.Enabled = true
	secretFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(secretFile, []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d.cfg.Webhooks.Receivers = []ReceiverConfig{{Name: "gl", Provider: ProviderGitLab, SecretFile: secretFile}}
	h, err := d.Handler()
	if err != nil {
		t.Fatal(err)
	}
	post := func(token string) int {
		req := httptest.NewRequest(http.MethodPost, "/hooks/gl", strings.NewReader("{}"))
		req.RemoteAddr = "203.0.113.7:40000"
		req.Header.Set("X-Gitlab-Token", token)
		req.Header.Set("X-Gitlab-Event", "Push Hook")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	if code := post("tok"); code != http.StatusServiceUnavailable {
		t.Errorf("a signed push to a standby that knows no leader: %d, want 503", code)
	}
	codes := map[int]int{}
	for range 100 {
		codes[post("wrong")]++
	}
	t.Logf("100 bad requests to a standby: %v", codes)
	if codes[http.StatusServiceUnavailable] != 0 || codes[http.StatusUnauthorized] == 0 || codes[http.StatusTooManyRequests] == 0 {
		t.Errorf("codes %v: want 401, then 429, and none forwarded", codes)
	}
}

// TestWebhookClientKey: budgets are kept per IPv4 address and per IPv6
// /64; the port and an IPv4 address written as IPv6 do not make another.
func TestWebhookClientKey(t *testing.T) {
	tests := []struct {
		name, a, b string
		same       bool
	}{
		{"ports of one address", "192.0.2.1:1000", "192.0.2.1:2000", true},
		{"two IPv4 addresses", "192.0.2.1:1000", "192.0.2.2:1000", false},
		{"IPv4 written as IPv6", "192.0.2.1:1000", "[::ffff:192.0.2.1]:1000", true},
		{"one IPv6 /64", "[2001:db8:1:2::1]:443", "[2001:db8:1:2:ffff::9]:443", true},
		{"two IPv6 /64s", "[2001:db8:1:2::1]:443", "[2001:db8:1:3::1]:443", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := clientKey(tt.a), clientKey(tt.b)
			if !a.IsValid() || (a == b) != tt.same {
				t.Errorf("%s is %s, %s is %s; want same=%v", tt.a, a, tt.b, b, tt.same)
			}
		})
	}
}

// TestWebhookAddressBudgetsAreBounded: past maxTrackedAddresses, new
// addresses share one budget instead of growing the table, and budgets
// that hold nothing make room again.
func TestWebhookAddressBudgetsAreBounded(t *testing.T) {
	var b addressBudgets
	now := time.Now()
	spend := func(i int, at time.Time) bool {
		key := clientKey(fmt.Sprintf("10.%d.%d.%d:1", i>>16&255, i>>8&255, i&255))
		a, _ := b.admit(key, at, 60, 2)
		if a == nil {
			return false
		}
		b.settle(a, false, at)
		return true
	}
	for i := range maxTrackedAddresses + 100 {
		spend(i, now)
	}
	if n := len(b.budgets); n != maxTrackedAddresses {
		t.Errorf("%d budgets kept, want %d", n, maxTrackedAddresses)
	}
	// The 100 past the bound shared two tokens.
	if spend(maxTrackedAddresses+200, now) {
		t.Error("an address past the bound got its own budget")
	}
	// A minute on, every budget is full again: they are dropped and a new
	// address gets its own.
	later := now.Add(time.Minute)
	if !spend(maxTrackedAddresses+300, later) || len(b.budgets) != 1 {
		t.Errorf("after a minute: %d budgets kept, want 1", len(b.budgets))
	}
}

// TestClientBehindTrustedProxy keeps a budget per client behind a trusted
// proxy, read from X-Forwarded-For, and ignores the header from anyone
// else (a client may write it).
func TestClientBehindTrustedProxy(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	for _, c := range []struct{ peer, xff, want string }{
		{"10.1.2.3:443", "203.0.113.7", "203.0.113.7:0"},
		{"10.1.2.3:443", "198.51.100.1, 203.0.113.7, 10.9.9.9", "203.0.113.7:0"}, // a client's own claim comes first
		{"192.0.2.5:1234", "203.0.113.7", "192.0.2.5:1234"},                      // not a proxy: the header is ignored
		{"10.1.2.3:443", "", "10.1.2.3:443"},
		{"10.1.2.3:443", "not-an-address", "10.1.2.3:443"},
	} {
		req := httptest.NewRequest(http.MethodPost, "/hooks/x", nil)
		req.RemoteAddr = c.peer
		if c.xff != "" {
			req.Header.Set("X-Forwarded-For", c.xff)
		}
		if got := clientAddress(req, trusted); got != c.want {
			t.Errorf("peer %s, X-Forwarded-For %q: %s, want %s", c.peer, c.xff, got, c.want)
		}
	}
	if _, err := parseConfig(t, "apiVersion: gitk8s.io/v1alpha1\nkind: Config\nclusters: [{name: a, kubeconfig: {context: a}}]\nsyncs: [{name: s, source: {url: https://git.example/x}, clusters: [a]}]\nwebhooks: {trustedProxies: [10.0.0.0/8, nonsense]}\n"); err == nil || !strings.Contains(err.Error(), `webhooks.trustedProxies[1]: "nonsense" is not an address or CIDR`) {
		t.Errorf("a bad trusted proxy: %v", err)
	}
}
