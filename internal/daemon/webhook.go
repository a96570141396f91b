package daemon

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"hash"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Providers of push webhooks.
const (
	ProviderGitHub    = "github"
	ProviderGitLab    = "gitlab"
	ProviderGitea     = "gitea"
	ProviderBitbucket = "bitbucket-server"
	ProviderGeneric   = "generic"
)

// maxWebhookBody is the largest request body a receiver reads.
const maxWebhookBody = 1 << 20

// Receiver checks one provider's push webhooks.
type Receiver struct {
	// Name is the receiver's path: /hooks/<name>.
	Name     string
	Provider string
	// Secret is the shared secret (HMAC key, or GitLab's token).
	Secret []byte
	// CurrentSecret, when set, is asked for the secret on every request
	// instead of Secret, so that a rotated secret takes effect without a
	// restart. An error answers 503.
	CurrentSecret func(context.Context) ([]byte, error)
	// OnSecretError hears why CurrentSecret failed (never a value).
	OnSecretError func(error)
	// PerMinute bounds requests (default 60); more get 429.
	PerMinute int

	mu     sync.Mutex
	window time.Time
	count  int
}

// Push is what a push event says: which repository and branch moved.
type Push struct {
	Repositories []string // clone URLs, any form the provider gives
	// Branches are the branches the push changed (Bitbucket Server sends
	// several in one event); a tag's ref is kept whole (refs/tags/…).
	Branches []string
}

// WebhookHandler serves /hooks/<receiver> and calls onPush for every
// verified push.
func WebhookHandler(receivers []*Receiver, onPush func(Push) int) http.Handler {
	byName := map[string]*Receiver{}
	for _, r := range receivers {
		byName[r.Name] = r
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r, ok := byName[strings.TrimPrefix(req.URL.Path, "/hooks/")]
		if !ok {
			http.NotFound(w, req)
			return
		}
		if req.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(io.LimitReader(req.Body, maxWebhookBody+1))
		if err != nil {
			http.Error(w, "cannot read the body", http.StatusBadRequest)
			return
		}
		if len(body) > maxWebhookBody {
			http.Error(w, "body over 1 MiB", http.StatusRequestEntityTooLarge)
			return
		}
		secret := r.Secret
		if r.CurrentSecret != nil {
			if secret, err = r.CurrentSecret(req.Context()); err != nil {
				if r.OnSecretError != nil {
					r.OnSecretError(err)
				}
				http.Error(w, "the receiver's secret cannot be read", http.StatusServiceUnavailable)
				return
			}
		}
		if !r.verify(secret, req.Header, body) {
			http.Error(w, "bad or missing signature", http.StatusUnauthorized)
			return
		}
		// Only signed requests count against the limit: unsigned ones
		// cannot use it up for the provider's real pushes.
		if !r.allow() {
			http.Error(w, "too many requests", http.StatusTooManyRequests)
			return
		}
		push, isPush, err := r.parse(req.Header, body)
		if err != nil {
			http.Error(w, "not a push event this receiver understands: "+err.Error(), http.StatusBadRequest)
			return
		}
		if !isPush {
			w.WriteHeader(http.StatusAccepted) // not a push: nothing to do
			return
		}
		n := onPush(push)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_ = json.NewEncoder(w).Encode(map[string]int{"triggered": n})
	})
}

func (r *Receiver) allow() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	limit := r.PerMinute
	if limit <= 0 {
		limit = 60
	}
	if time.Since(r.window) > time.Minute {
		r.window, r.count = time.Now(), 0
	}
	r.count++
	return r.count <= limit
}

// verify checks the request's signature or token in constant time. An
// empty secret verifies nothing: anyone could sign with it.
func (r *Receiver) verify(secret []byte, h http.Header, body []byte) bool {
	if len(secret) == 0 {
		return false
	}
	sig := func(header, prefix string, newHash func() hash.Hash) bool {
		got := h.Get(header)
		if !strings.HasPrefix(got, prefix) {
			return false
		}
		want, err := hex.DecodeString(strings.TrimPrefix(got, prefix))
		if err != nil {
			return false
		}
		mac := hmac.New(newHash, secret)
		mac.Write(body)
		return hmac.Equal(mac.Sum(nil), want)
	}
	switch r.Provider {
	case ProviderGitHub:
		return sig("X-Hub-Signature-256", "sha256=", sha256.New)
	case ProviderGitea:
		return sig("X-Gitea-Signature", "", sha256.New)
	case ProviderBitbucket:
		return sig("X-Hub-Signature", "sha256=", sha256.New) || sig("X-Hub-Signature", "sha1=", sha1.New)
	case ProviderGeneric:
		return sig("X-Signature", "sha256=", sha256.New)
	case ProviderGitLab:
		got := []byte(h.Get("X-Gitlab-Token"))
		return len(got) > 0 && subtle.ConstantTimeCompare(got, secret) == 1
	}
	return false
}

// parse reads a push event; other events are not pushes.
func (r *Receiver) parse(h http.Header, body []byte) (Push, bool, error) {
	event := map[string]string{
		ProviderGitHub:    h.Get("X-GitHub-Event"),
		ProviderGitLab:    h.Get("X-Gitlab-Event"),
		ProviderGitea:     h.Get("X-Gitea-Event"),
		ProviderBitbucket: h.Get("X-Event-Key"),
		ProviderGeneric:   "push",
	}[r.Provider]
	switch r.Provider {
	case ProviderGitHub, ProviderGitea:
		if event != "push" {
			return Push{}, false, nil
		}
	case ProviderGitLab:
		if event != "Push Hook" {
			return Push{}, false, nil
		}
	case ProviderBitbucket:
		if event != "repo:refs_changed" {
			return Push{}, false, nil
		}
	}
	var p struct {
		Ref        string `json:"ref"`
		Repository struct {
			CloneURL string `json:"clone_url"`
			SSHURL   string `json:"ssh_url"`
			HTMLURL  string `json:"html_url"`
			GitHTTP  string `json:"git_http_url"`
			GitSSH   string `json:"git_ssh_url"`
			URL      string `json:"url"`
			Links    struct {
				Clone []struct {
					Href string `json:"href"`
				} `json:"clone"`
			} `json:"links"`
		} `json:"repository"`
		Project struct {
			GitHTTP string `json:"git_http_url"`
			GitSSH  string `json:"git_ssh_url"`
		} `json:"project"`
		Changes []struct {
			RefID string `json:"refId"`
		} `json:"changes"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return Push{}, false, err
	}
	var push Push
	if p.Ref != "" {
		push.Branches = append(push.Branches, strings.TrimPrefix(p.Ref, "refs/heads/"))
	}
	for _, c := range p.Changes {
		push.Branches = append(push.Branches, strings.TrimPrefix(c.RefID, "refs/heads/"))
	}
	for _, u := range []string{p.Repository.CloneURL, p.Repository.SSHURL, p.Repository.HTMLURL, p.Repository.GitHTTP, p.Repository.GitSSH, p.Repository.URL, p.Project.GitHTTP, p.Project.GitSSH} {
		if u != "" {
			push.Repositories = append(push.Repositories, u)
		}
	}
	for _, c := range p.Repository.Links.Clone {
		push.Repositories = append(push.Repositories, c.Href)
	}
	if len(push.Repositories) == 0 {
		return Push{}, false, errors.New("the event names no repository")
	}
	return push, true, nil
}

// sameRepository compares repository addresses by host and path, ignoring
// scheme, user, a trailing .git and case.
func sameRepository(a, b string) bool {
	return repoKey(a) == repoKey(b)
}

func repoKey(raw string) string {
	s := raw
	if u, err := url.Parse(raw); err == nil && u.Host != "" {
		s = u.Hostname() + u.Path
	} else if at := strings.Index(raw, "@"); at >= 0 && strings.Contains(raw[at:], ":") {
		// scp-like: git@host:org/repo.git
		rest := raw[at+1:]
		host, path, _ := strings.Cut(rest, ":")
		s = host + "/" + path
	}
	s = strings.TrimSuffix(strings.TrimSuffix(strings.ToLower(s), "/"), ".git")
	return strings.TrimPrefix(s, "/")
}

// OnPush triggers every sync whose source is the pushed repository and
// branch (a sync without a branch follows the default branch and is
// triggered by any push to its repository); it returns how many.
func (d *Daemon) OnPush(p Push) int {
	n := 0
	for _, s := range d.cfg.Syncs {
		matched := false
		for _, r := range p.Repositories {
			if sameRepository(r, s.Source.URL) {
				matched = true
			}
		}
		if !matched || (s.Source.Ref.Branch != "" && !slices.Contains(p.Branches, s.Source.Ref.Branch)) {
			continue
		}
		if d.Trigger(s.Name) {
			n++
		}
	}
	return n
}
