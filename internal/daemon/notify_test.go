package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gitk8s/gitk8s/internal/testenv"
)

// hostCall is one request a fake Git host or chat got.
type hostCall struct {
	Path, Auth, Body string
}

// fakeHost records every request on loopback and answers 201.
type fakeHost struct {
	*httptest.Server
	mu    sync.Mutex
	calls []hostCall
}

func newFakeHost(t *testing.T) *fakeHost {
	h := &fakeHost{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.calls = append(h.calls, hostCall{r.URL.Path, r.Header.Get("Authorization"), string(body)})
		h.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *fakeHost) wait(t *testing.T, n int) []hostCall {
	t.Helper()
	testenv.Within(t, fmt.Sprintf("%d notifications", n), 10*time.Second, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.calls) >= n
	})
	time.Sleep(300 * time.Millisecond) // and no more
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hostCall(nil), h.calls...)
}

// TestNotifications runs a sync with a GitHub commit status and a Slack
// alert against recording servers on loopback: a good revision is pending
// then success in its cluster's context, a broken one is a failure with
// its reason, a retry of it says nothing again, and no call carries a
// Secret value of the repository or the token outside its header.
func TestNotifications(t *testing.T) {
	ensureHomeNamespace(t)
	ns := env.Namespace(t)
	github, slack := newFakeHost(t), newFakeHost(t)
	const token, planted = "gh-token-0b7e2d", "planted-value-5c8a1f"
	secretName := "notify-" + ns
	putSecret(t, HomeNamespace, secretName, map[string]string{"token": token})
	srv := testenv.NewGitServer(t)
	rev := srv.Commit(t, map[string]string{
		"cm.yaml":     configMap(ns, "settings", "one"),
		"secret.yaml": fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: %s}\nstringData: {password: %s}\n", ns, planted),
	})
	srv.Take()
	// The Git host serves the repository as team/shop, as GitHub would.
	target, _ := url.Parse(srv.URL)
	host := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.Out.URL.Path = "/repo.git" + strings.TrimPrefix(r.In.URL.Path, "/team/shop.git")
	}})
	t.Cleanup(host.Close)
	name := "notified-" + ns
	d := newDaemon(t, fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: %s, path: %s}}
syncs:
- name: %s
  source: {url: "%s/team/shop.git"}
  clusters: [local]
  notify:
  - {provider: github, address: %q, secretRef: {name: %s}}
  - {provider: slack, address: %q}
`, env.Contexts[0], env.Kubeconfig, name, host.URL, github.URL, secretName, slack.URL+"/services/T/B/X"))
	ctx := context.Background()
	s, _ := d.cfg.Sync(name)
	if err := d.Reconcile(ctx, s); err != nil {
		t.Fatal(err)
	}
	type status struct{ State, Context, Description string }
	decode := func(c hostCall) status {
		var st status
		if err := json.Unmarshal([]byte(c.Body), &st); err != nil {
			t.Fatalf("%s: %v", c.Body, err)
		}
		return st
	}
	calls := github.wait(t, 2)
	wantPath := "/repos/team/shop/statuses/" + rev
	for i, want := range []string{"pending", "success"} {
		if st := decode(calls[i]); calls[i].Path != wantPath || st.State != want || st.Context != "gitk8s/"+name+"/local" || calls[i].Auth != "Bearer "+token {
			t.Errorf("call %d: %s %+v auth %q, want %s %s", i, calls[i].Path, st, calls[i].Auth, wantPath, want)
		}
	}
	if got := slack.wait(t, 1); !strings.Contains(got[0].Body, "Succeeded") {
		t.Errorf("slack: %+v", got)
	}

	bad := srv.Commit(t, map[string]string{"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings\n"})
	for range 2 { // the retry says nothing new
		if err := d.Reconcile(ctx, s); err == nil {
			t.Fatal("a broken revision reconciled")
		}
	}
	calls = github.wait(t, 4)
	if len(calls) != 4 {
		t.Fatalf("%d commit statuses, want 4 (a retry says nothing again): %+v", len(calls), calls)
	}
	if st := decode(calls[3]); calls[3].Path != "/repos/team/shop/statuses/"+bad || st.State != "failure" || !strings.HasPrefix(st.Description, ReasonRenderFailed) || len(st.Description) > 140 {
		t.Errorf("failure: %s %+v", calls[3].Path, st)
	}
	alerts := slack.wait(t, 2)
	if len(alerts) != 2 || !strings.Contains(alerts[1].Body, ReasonRenderFailed) {
		t.Errorf("slack alerts: %+v", alerts)
	}
	for _, c := range append(calls, alerts...) {
		for _, v := range []string{planted, token} {
			if strings.Contains(c.Body, v) || strings.Contains(c.Path, v) {
				t.Errorf("a notification holds the Secret value %q: %+v", v, c)
			}
		}
	}
}
