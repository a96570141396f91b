// Package fuzz holds fuzz targets that cannot live in the package they
// test because its TestMain starts a control plane, which Go would start
// again in every fuzzing worker. They use the package's exported API only.
package fuzz

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"hash"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gitk8s/gitk8s/internal/daemon"
)

const webhookSecret = "fuzz-secret"

// webhookProviders are the receivers' providers with the event header each
// sends and the event that is a push.
var webhookProviders = []struct {
	name, eventHeader, push string
}{
	{daemon.ProviderGitHub, "X-GitHub-Event", "push"},
	{daemon.ProviderGitLab, "X-Gitlab-Event", "Push Hook"},
	{daemon.ProviderGitea, "X-Gitea-Event", "push"},
	{daemon.ProviderBitbucket, "X-Event-Key", "repo:refs_changed"},
	{daemon.ProviderGeneric, "", ""},
}

// signWebhook sets the header that proves body comes from whoever holds
// secret, as the provider does.
func signWebhook(h http.Header, provider, secret string, body []byte) {
	mac := func(newHash func() hash.Hash) string {
		m := hmac.New(newHash, []byte(secret))
		m.Write(body)
		return hex.EncodeToString(m.Sum(nil))
	}
	switch provider {
	case daemon.ProviderGitHub:
		h.Set("X-Hub-Signature-256", "sha256="+mac(sha256.New))
	case daemon.ProviderGitLab:
		h.Set("X-Gitlab-Token", secret)
	case daemon.ProviderGitea:
		h.Set("X-Gitea-Signature", mac(sha256.New))
	case daemon.ProviderBitbucket:
		if len(body)%2 == 0 {
			h.Set("X-Hub-Signature", "sha256="+mac(sha256.New))
		} else {
			h.Set("X-Hub-Signature", "sha1="+mac(sha1.New))
		}
	case daemon.ProviderGeneric:
		h.Set("X-Signature", "sha256="+mac(sha256.New))
	}
}

// FuzzWebhookPush sends any body, as any provider's event, signed with the
// receiver's secret or with another, and checks the answer: no panic; an
// unsigned request is refused with 401 and triggers nothing; a signed one
// that is not a push is accepted and triggers nothing; a signed push whose
// body is not JSON, or names no repository, is refused with 400 and an
// error; and an accepted push names at least one repository and no empty
// one.
func FuzzWebhookPush(f *testing.F) {
	pushes := []string{
		`{"ref":"refs/heads/main","before":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","after":"59b20b8d5c6ff8d09518454d4dd8b7b30f095ab5","repository":{"id":35129377,"name":"shop","full_name":"org/shop","html_url":"https://github.com/org/shop","clone_url":"https://github.com/org/shop.git","ssh_url":"git@github.com:org/shop.git"},"pusher":{"name":"alice"},"commits":[{"id":"59b20b8d5c6ff8d09518454d4dd8b7b30f095ab5","message":"deploy v2","added":["deploy/web.yaml"]}]}`,
		`{"object_kind":"push","event_name":"push","ref":"refs/heads/staging","checkout_sha":"da1560886d4f094c3e6c9ef40349f7d38b5d27d7","project":{"id":15,"name":"shop","web_url":"https://gitlab.example/org/shop","git_ssh_url":"git@gitlab.example:org/shop.git","git_http_url":"https://gitlab.example/org/shop.git"},"repository":{"name":"shop","url":"git@gitlab.example:org/shop.git","git_http_url":"https://gitlab.example/org/shop.git","git_ssh_url":"git@gitlab.example:org/shop.git"},"total_commits_count":1}`,
		`{"eventKey":"repo:refs_changed","date":"2024-01-01T00:00:00+0000","actor":{"name":"admin"},"repository":{"slug":"shop","project":{"key":"ORG"},"links":{"clone":[{"href":"ssh://git@bitbucket.example:7999/org/shop.git","name":"ssh"},{"href":"https://bitbucket.example/scm/org/shop.git","name":"http"}]}},"changes":[{"ref":{"id":"refs/heads/main","displayId":"main","type":"BRANCH"},"refId":"refs/heads/main","fromHash":"ecddabb624f6f5ba43816f5926e580a5f680a932","toHash":"178864a7d521b6f5e720b386b2c2b0ef8563e0dc","type":"UPDATE"}]}`,
		`{"ref":"refs/tags/v1.2.0","repository":{"clone_url":"https://gitea.example/org/shop.git"}}`,
		`{"ref":"refs/heads/main","repository":{}}`,
		`{"repository":{"links":{"clone":[{"href":""}]}}}`,
		`{"ref":"refs/heads/main","repository":{"clone_url":7}}`,
		`{"zen":"Design for failure.","hook_id":1}`,
		`not json`,
		`{"ref":"refs/heads/main","repository":{"clone_url":"https://git.example/org/shop.git"}}trailing`,
		``,
		`null`,
		`[]`,
	}
	for i := range webhookProviders {
		for _, body := range pushes {
			f.Add(uint8(i), webhookProviders[i].push, []byte(body), true)
		}
		f.Add(uint8(i), "ping", []byte(pushes[7]), true)
		f.Add(uint8(i), webhookProviders[i].push, []byte(pushes[0]), false)
	}
	f.Fuzz(func(t *testing.T, provider uint8, event string, body []byte, signed bool) {
		p := webhookProviders[int(provider)%len(webhookProviders)]
		receiver := &daemon.Receiver{Name: "r", Provider: p.name, Secret: []byte(webhookSecret), PerMinute: math.MaxInt}
		var pushes []daemon.Push
		h := daemon.WebhookHandler([]*daemon.Receiver{receiver}, func(push daemon.Push) int {
			pushes = append(pushes, push)
			return len(push.Repositories)
		})
		req := httptest.NewRequest(http.MethodPost, "/hooks/r", bytes.NewReader(body))
		if p.eventHeader != "" {
			req.Header.Set(p.eventHeader, event)
		}
		secret := webhookSecret
		if !signed {
			secret = "another-secret"
		}
		signWebhook(req.Header, p.name, secret, body)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		isPush := p.eventHeader == "" || event == p.push
		switch {
		case !signed:
			if rec.Code != http.StatusUnauthorized || len(pushes) > 0 {
				t.Fatalf("signed with another secret: %d, %d pushes", rec.Code, len(pushes))
			}
		case !isPush:
			if rec.Code != http.StatusAccepted || len(pushes) > 0 {
				t.Fatalf("event %q is not a push: %d, %d pushes", event, rec.Code, len(pushes))
			}
		case !json.Valid(body):
			if rec.Code != http.StatusBadRequest || len(pushes) > 0 || !strings.Contains(rec.Body.String(), "not a push event") {
				t.Fatalf("a body that is not JSON: %d %q, %d pushes", rec.Code, rec.Body.String(), len(pushes))
			}
		case rec.Code == http.StatusBadRequest:
			if len(pushes) > 0 || strings.TrimSpace(rec.Body.String()) == "" {
				t.Fatalf("refused with no error, or after %d pushes", len(pushes))
			}
		case rec.Code == http.StatusAccepted:
			if len(pushes) != 1 {
				t.Fatalf("a push accepted with %d pushes", len(pushes))
			}
			push := pushes[0]
			if len(push.Repositories) == 0 {
				t.Fatalf("a push of no repository, on %v", push.Branches)
			}
			for _, r := range push.Repositories {
				if r == "" {
					t.Fatalf("a push names an empty repository: %q", push.Repositories)
				}
			}
			var answer struct{ Triggered int }
			if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil || answer.Triggered != len(push.Repositories) {
				t.Fatalf("answer %q, want %d triggered", rec.Body.String(), len(push.Repositories))
			}
		default:
			t.Fatalf("a signed push answered %d %q", rec.Code, rec.Body.String())
		}
	})
}
