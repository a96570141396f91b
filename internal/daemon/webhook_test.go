package daemon

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

func sign(secret, body string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(body))
	return hex.EncodeToString(mac.Sum(nil))
}

func testDaemon() *Daemon {
	cfg := &Config{Syncs: []SyncConfig{
		{Name: "shop", SyncSpec: SyncSpec{Source: SourceConfig{URL: "https://git.example/org/shop.git", Ref: RefSpec{Branch: "main"}}}},
		{Name: "shop-staging", SyncSpec: SyncSpec{Source: SourceConfig{URL: "git@git.example:org/shop.git", Ref: RefSpec{Branch: "staging"}}}},
		{Name: "other", SyncSpec: SyncSpec{Source: SourceConfig{URL: "https://git.example/org/other"}}},
	}}
	d := &Daemon{cfg: cfg, triggers: map[string]chan struct{}{}}
	for _, s := range cfg.Syncs {
		d.triggers[s.Name] = make(chan struct{}, 1)
	}
	return d
}

func triggered(d *Daemon) []string {
	var out []string
	for _, s := range d.cfg.Syncs {
		select {
		case <-d.triggers[s.Name]:
			out = append(out, s.Name)
		default:
		}
	}
	return out
}

func TestWebhooks(t *testing.T) {
	githubPush := `{"ref":"refs/heads/main","repository":{"clone_url":"https://git.example/org/shop.git","ssh_url":"git@git.example:org/shop.git"}}`
	gitlabPush := `{"ref":"refs/heads/staging","project":{"git_http_url":"https://git.example/org/shop.git"}}`
	bitbucketPush := `{"changes":[{"refId":"refs/heads/main"}],"repository":{"links":{"clone":[{"href":"ssh://git@git.example:7999/org/shop.git"},{"href":"https://git.example/scm/org/shop.git"}]}}}`
	tests := []struct {
		name     string
		receiver *Receiver
		headers  map[string]string
		body     string
		code     int
		want     []string
	}{
		{"github push", &Receiver{Provider: ProviderGitHub, Secret: []byte("s3")}, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sign("s3", githubPush)}, githubPush, 202, []string{"shop"}},
		{"github bad signature", &Receiver{Provider: ProviderGitHub, Secret: []byte("s3")}, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sign("wrong", githubPush)}, githubPush, 401, nil},
		{"github missing signature", &Receiver{Provider: ProviderGitHub, Secret: []byte("s3")}, map[string]string{"X-GitHub-Event": "push"}, githubPush, 401, nil},
		{"github ping is not a push", &Receiver{Provider: ProviderGitHub, Secret: []byte("s3")}, map[string]string{"X-GitHub-Event": "ping", "X-Hub-Signature-256": "sha256=" + sign("s3", `{"zen":"x"}`)}, `{"zen":"x"}`, 202, nil},
		{"gitlab token", &Receiver{Provider: ProviderGitLab, Secret: []byte("tok")}, map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "tok"}, gitlabPush, 202, []string{"shop-staging"}},
		{"gitlab wrong token", &Receiver{Provider: ProviderGitLab, Secret: []byte("tok")}, map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "nope"}, gitlabPush, 401, nil},
		{"gitea", &Receiver{Provider: ProviderGitea, Secret: []byte("g")}, map[string]string{"X-Gitea-Event": "push", "X-Gitea-Signature": sign("g", githubPush)}, githubPush, 202, []string{"shop"}},
		{"bitbucket server", &Receiver{Provider: ProviderBitbucket, Secret: []byte("b")}, map[string]string{"X-Event-Key": "repo:refs_changed", "X-Hub-Signature": "sha256=" + sign("b", bitbucketPush)}, bitbucketPush, 202, []string{"shop"}},
		{"generic", &Receiver{Provider: ProviderGeneric, Secret: []byte("k")}, map[string]string{"X-Signature": "sha256=" + sign("k", githubPush)}, githubPush, 202, []string{"shop"}},
		{"too large", &Receiver{Provider: ProviderGeneric, Secret: []byte("k")}, nil, strings.Repeat("x", maxWebhookBody+1), 413, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := testDaemon()
			tt.receiver.Name = "r"
			h := WebhookHandler([]*Receiver{tt.receiver}, d.OnPush)
			req := httptest.NewRequest(http.MethodPost, "/hooks/r", bytes.NewBufferString(tt.body))
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.code {
				t.Errorf("status %d, want %d: %s", rec.Code, tt.code, rec.Body.String())
			}
			if got := triggered(d); strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("triggered %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWebhookRateLimit(t *testing.T) {
	d := testDaemon()
	h := WebhookHandler([]*Receiver{{Name: "r", Provider: ProviderGitLab, Secret: []byte("t"), PerMinute: 3}}, d.OnPush)
	codes := []int{}
	var retryAfter string
	for range 5 {
		req := httptest.NewRequest(http.MethodPost, "/hooks/r", bytes.NewBufferString("{}"))
		req.Header.Set("X-Gitlab-Token", "t")
		req.Header.Set("X-Gitlab-Event", "Tag Push Hook")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		codes = append(codes, rec.Code)
		retryAfter = rec.Header().Get("Retry-After")
	}
	if codes[2] != 202 || codes[3] != 429 || codes[4] != 429 {
		t.Errorf("codes %v", codes)
	}
	// The window is a minute: the 429 says to come back within it.
	if s, err := strconv.Atoi(retryAfter); err != nil || s < 1 || s > 60 {
		t.Errorf("Retry-After %q, want 1 to 60 seconds", retryAfter)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/hooks/unknown", nil))
	if rec.Code != 404 {
		t.Errorf("unknown receiver: %d", rec.Code)
	}
}

func TestSameRepository(t *testing.T) {
	for _, pair := range [][2]string{
		{"https://git.example/org/shop.git", "git@git.example:org/shop.git"},
		{"https://git.example/org/shop", "ssh://git@git.example:7999/org/shop.git"},
		{"https://user:pw@Git.Example/org/shop/", "https://git.example/org/shop.git"},
	} {
		if !sameRepository(pair[0], pair[1]) {
			t.Errorf("%s and %s differ", pair[0], pair[1])
		}
	}
	if sameRepository("https://git.example/org/shop.git", "https://git.example/org/other.git") {
		t.Error("different repositories are the same")
	}
}

// TestWebhookEmptySecretVerifiesNothing: a receiver whose secret is empty
// (a Secret key holding only white space) refuses a request signed with
// the empty key, which anyone could compute.
func TestWebhookEmptySecretVerifiesNothing(t *testing.T) {
	push := `{"ref":"refs/heads/main","repository":{"clone_url":"https://git.example/org/shop.git"}}`
	for _, provider := range []string{ProviderGitHub, ProviderGitea, ProviderBitbucket, ProviderGeneric, ProviderGitLab} {
		d := testDaemon()
		h := WebhookHandler([]*Receiver{{Name: "r", Provider: provider, Secret: []byte{}}}, d.OnPush)
		req := httptest.NewRequest(http.MethodPost, "/hooks/r", strings.NewReader(push))
		for _, header := range []string{"X-Hub-Signature-256", "X-Hub-Signature", "X-Signature"} {
			req.Header.Set(header, "sha256="+sign("", push))
		}
		req.Header.Set("X-Gitea-Signature", sign("", push))
		req.Header.Set("X-Gitlab-Token", "")
		for _, event := range []string{"X-GitHub-Event", "X-Gitea-Event", "X-Gitlab-Event"} {
			req.Header.Set(event, "push")
		}
		req.Header.Set("X-Event-Key", "repo:refs_changed")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized || len(triggered(d)) != 0 {
			t.Errorf("%s: a request signed with the empty secret got %d and triggered %v", provider, rec.Code, triggered(d))
		}
	}
}

// TestBitbucketPushOfSeveralBranches: Bitbucket Server names every branch
// a push changed; a sync of any of them is triggered.
func TestBitbucketPushOfSeveralBranches(t *testing.T) {
	d := testDaemon()
	body := `{"changes":[{"refId":"refs/heads/feature"},{"refId":"refs/heads/staging"}],"repository":{"links":{"clone":[{"href":"ssh://git@git.example:7999/org/shop.git"}]}}}`
	h := WebhookHandler([]*Receiver{{Name: "r", Provider: ProviderBitbucket, Secret: []byte("s")}}, d.OnPush)
	req := httptest.NewRequest(http.MethodPost, "/hooks/r", strings.NewReader(body))
	req.Header.Set("X-Event-Key", "repo:refs_changed")
	req.Header.Set("X-Hub-Signature", "sha256="+sign("s", body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if got := triggered(d); rec.Code != http.StatusAccepted || len(got) != 1 || got[0] != "shop-staging" {
		t.Errorf("%d, triggered %v; want shop-staging", rec.Code, got)
	}
}

// TestUnsignedRequestsDoNotUseTheLimit: a flood of unsigned requests gets
// 401 each and leaves the receiver's rate limit to the provider's pushes.
func TestUnsignedRequestsDoNotUseTheLimit(t *testing.T) {
	d := testDaemon()
	h := WebhookHandler([]*Receiver{{Name: "r", Provider: ProviderGitLab, Secret: []byte("t"), PerMinute: 2}}, d.OnPush)
	send := func(token string) int {
		req := httptest.NewRequest(http.MethodPost, "/hooks/r", bytes.NewBufferString("{}"))
		req.Header.Set("X-Gitlab-Token", token)
		req.Header.Set("X-Gitlab-Event", "Tag Push Hook")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	for range 10 {
		if code := send("wrong"); code != http.StatusUnauthorized {
			t.Fatalf("unsigned request: %d", code)
		}
	}
	if code := send("t"); code != http.StatusAccepted {
		t.Errorf("a signed request after unsigned ones: %d, want 202", code)
	}
}

// TestPushTriggersSyncResources matches a push to Sync resources as to the
// configuration's syncs, and not to one removed since.
func TestPushTriggersSyncResources(t *testing.T) {
	d := testDaemon()
	d.resourceSyncs = map[string]SyncConfig{}
	team := SyncConfig{Name: ResourceSyncName("team-a", "shop"), SyncSpec: SyncSpec{Source: SourceConfig{URL: "https://git.example/org/shop", Ref: RefSpec{Branch: "main"}}},
		Resource: &ResourceRef{Namespace: "team-a", Name: "shop"}}
	d.resourceSyncs[team.Name] = team
	if n := d.OnPush(Push{Repositories: []string{"https://git.example/org/shop.git"}, Branches: []string{"main"}}); n != 2 {
		t.Errorf("%d syncs triggered, want the file's shop and team-a's", n)
	}
	select {
	case <-d.triggerOf(team.Name):
	default:
		t.Error("the Sync resource was not triggered")
	}
	delete(d.resourceSyncs, team.Name)
	if n := d.OnPush(Push{Repositories: []string{"https://git.example/org/shop.git"}, Branches: []string{"main"}}); n != 1 {
		t.Errorf("%d syncs triggered after the Sync went, want 1", n)
	}
}
