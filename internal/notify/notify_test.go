package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// call is one request a recording server got.
type call struct {
	method, path, query string
	header              http.Header
	body                string
}

// recorder is an HTTP server on loopback that records every call and
// answers with the codes given, then 201.
type recorder struct {
	*httptest.Server
	mu    sync.Mutex
	calls []call
	codes []int
}

func newRecorder(t *testing.T, codes ...int) *recorder {
	r := &recorder{codes: codes}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.calls = append(r.calls, call{req.Method, req.URL.EscapedPath(), req.URL.RawQuery, req.Header.Clone(), string(body)})
		code := http.StatusCreated
		if len(r.codes) > 0 {
			code, r.codes = r.codes[0], r.codes[1:]
		}
		r.mu.Unlock()
		w.WriteHeader(code)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *recorder) got(t *testing.T, n int) []call {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		c := append([]call(nil), r.calls...)
		r.mu.Unlock()
		if len(c) >= n || time.Now().After(deadline) {
			if len(c) != n {
				t.Fatalf("%d calls, want %d: %+v", len(c), n, c)
			}
			return c
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func run(t *testing.T, target Target, opts Options) *Notifier {
	opts.RetryWait = 10 * time.Millisecond
	n := New(target, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return n
}

var event = Event{Sync: "shop", Cluster: "eu-1", Repository: "https://git.example/team-a/shop.git",
	Revision: "0123456789abcdef0123456789abcdef01234567", State: Failure, Reason: "PlanFailed", Message: "cluster eu-1: ConfigMap/x: forbidden"}

// TestCommitStatuses sends a failure to each Git host's API as that host
// takes it: path, token header, state and context per sync and cluster.
func TestCommitStatuses(t *testing.T) {
	const token = "host-token-7c1e"
	for _, c := range []struct {
		provider, path, auth, authHeader string
		state                            func(call) string
	}{
		{GitHub, "/repos/team-a/shop/statuses/" + event.Revision, "Bearer " + token, "Authorization", bodyState},
		{Gitea, "/api/v1/repos/team-a/shop/statuses/" + event.Revision, "token " + token, "Authorization", bodyState},
		{GitLab, "/api/v4/projects/team-a%2Fshop/statuses/" + event.Revision, token, "PRIVATE-TOKEN", func(c call) string {
			if !strings.Contains(c.query, "name=gitk8s%2Fshop%2Feu-1") {
				return "no name in " + c.query
			}
			return strings.Split(strings.Split(c.query, "state=")[1], "&")[0]
		}},
	} {
		t.Run(c.provider, func(t *testing.T) {
			srv := newRecorder(t)
			n := run(t, Target{Name: "host", Provider: c.provider, Address: srv.URL, Token: token}, Options{})
			n.Send(event)
			got := srv.got(t, 1)[0]
			if got.method != http.MethodPost || got.path != c.path || got.header.Get(c.authHeader) != c.auth {
				t.Errorf("%s %s, %s: %q", got.method, got.path, c.authHeader, got.header.Get(c.authHeader))
			}
			want := "failure"
			if c.provider == GitLab {
				want = "failed"
			}
			if s := c.state(got); s != want {
				t.Errorf("state %q, want %q (%s %s)", s, want, got.query, got.body)
			}
			if c.provider != GitLab && !strings.Contains(got.body, `"context":"gitk8s/shop/eu-1"`) {
				t.Errorf("body %s lacks the context", got.body)
			}
		})
	}
}

func bodyState(c call) string {
	var b struct{ State string }
	_ = json.Unmarshal([]byte(c.body), &b)
	return b.State
}

// TestWebhookAndSlack checks the generic webhook's signed JSON body and a
// Slack message's text.
func TestWebhookAndSlack(t *testing.T) {
	const secret = "hook-secret-3f9a"
	hook := newRecorder(t)
	run(t, Target{Name: "ops", Provider: Webhook, Address: hook.URL + "/in", Token: secret}, Options{}).Send(event)
	got := hook.got(t, 1)[0]
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(got.body))
	if sig := got.header.Get("X-Gitk8s-Signature-256"); sig != "sha256="+hex.EncodeToString(mac.Sum(nil)) {
		t.Errorf("signature %q does not sign the body", sig)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(got.body), &body); err != nil || body["sync"] != "shop" || body["state"] != "failure" || body["reason"] != "PlanFailed" {
		t.Errorf("body %s: %v", got.body, err)
	}
	if strings.Contains(got.body, secret) {
		t.Error("the body holds the secret")
	}

	slack := newRecorder(t)
	run(t, Target{Name: "chat", Provider: Slack, Address: slack.URL + "/services/T/B/X"}, Options{}).Send(event)
	got = slack.got(t, 1)[0]
	var msg struct{ Text string }
	if err := json.Unmarshal([]byte(got.body), &msg); err != nil || !strings.Contains(msg.Text, "*shop*") || !strings.Contains(msg.Text, "PlanFailed") || got.path != "/services/T/B/X" {
		t.Errorf("slack: %s %s: %v", got.path, got.body, err)
	}
}

// TestRetriesAndLimits retries a server error and a 429 but not another
// 4xx, and holds to the rate: at 600 a minute with a burst of 2, five
// events take at least 300 ms.
func TestRetriesAndLimits(t *testing.T) {
	srv := newRecorder(t, 500, 429)
	n := run(t, Target{Name: "host", Provider: GitHub, Address: srv.URL, Token: "x"}, Options{})
	n.Send(event)
	srv.got(t, 3)
	if sent, _, failed := n.Counts(); sent != 1 || failed != 0 {
		t.Errorf("sent %d, failed %d", sent, failed)
	}

	refused := newRecorder(t, 401)
	n = run(t, Target{Name: "host", Provider: GitHub, Address: refused.URL, Token: "x"}, Options{})
	n.Send(event)
	refused.got(t, 1)
	time.Sleep(100 * time.Millisecond)
	if _, _, failed := n.Counts(); failed != 1 {
		t.Errorf("a 401 was not given up: failed %d", failed)
	}
	refused.got(t, 1)

	limited := newRecorder(t)
	n = run(t, Target{Name: "host", Provider: GitHub, Address: limited.URL, Token: "x"}, Options{PerMinute: 600, Burst: 2})
	start := time.Now()
	for range 5 {
		n.Send(event)
	}
	limited.got(t, 5)
	if took := time.Since(start); took < 250*time.Millisecond {
		t.Errorf("5 events at 10/s with a burst of 2 took %s, want at least 300 ms", took)
	}
}

// TestFullQueueDropsTheOldest keeps a reconcile from waiting on a slow host.
func TestFullQueueDropsTheOldest(t *testing.T) {
	n := New(Target{Name: "host", Provider: GitHub}, Options{Queue: 2})
	for range 5 {
		n.Send(event) // nothing runs the queue
	}
	if _, dropped, _ := n.Counts(); dropped != 3 {
		t.Errorf("dropped %d, want 3", dropped)
	}
}

// TestErrorsDoNotQuoteTheAddress keeps a Slack webhook's path, which is
// its secret, out of the error a failed delivery logs.
func TestErrorsDoNotQuoteTheAddress(t *testing.T) {
	srv := newRecorder(t, 404)
	n := New(Target{Name: "chat", Provider: Slack, Address: srv.URL + "/services/T000/B000/secret-path-9d1e"}, Options{})
	_, err := n.send(context.Background(), event)
	if err == nil || strings.Contains(err.Error(), "secret-path-9d1e") || !strings.Contains(err.Error(), "404") {
		t.Errorf("error %v", err)
	}
}
