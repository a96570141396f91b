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
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
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
//
// Its listener is open to anyone on the network, so a request is checked
// in the order of what it costs: first its client address's budget of
// unverified requests (nothing read yet), then its body (bounded in size
// and time), the secret, the signature, and last, for a signed request,
// the receiver's own limit.
type Receiver struct {
	// Name is the receiver's path: /hooks/<name>.
	Name     string
	Provider string
	// Secret is the shared secret (HMAC key, or GitLab's token).
	Secret []byte
	// CurrentSecret, when set, is asked for the secret on every request
	// instead of Secret, so that a rotated secret takes effect without a
	// restart. An error answers 503, and is answered from memory for
	// SecretRetry before CurrentSecret is asked again.
	CurrentSecret func(context.Context) ([]byte, error)
	// OnSecretError hears why CurrentSecret failed (never a value), once
	// per failed read.
	OnSecretError func(error)
	// PerMinute bounds signed requests (default 60); more get 429.
	PerMinute int
	// InvalidBurst and InvalidPerMinute bound, per client address, the
	// requests that are not verified (a bad or missing signature, a body
	// too large or too slow, a secret that cannot be read): once an
	// address has used InvalidBurst, its requests get 429 before their
	// body is read, until it earns them back at InvalidPerMinute a minute
	// (defaults 20 and 30). Signed requests do not use this budget, so a
	// flood from other addresses does not hold up the provider's pushes.
	InvalidBurst     int
	InvalidPerMinute int
	// BodyTimeout bounds the reading of a request's body (default 10s); a
	// slower body gets 408 and its connection is closed.
	BodyTimeout time.Duration
	// SecretRetry is how long a failure of CurrentSecret is remembered
	// (default 5s).
	SecretRetry time.Duration
	// TrustedProxies are the reverse proxies (an Ingress controller) whose
	// X-Forwarded-For says who the client is; without them every client
	// behind a proxy shares the proxy's budget.
	TrustedProxies []netip.Prefix

	mu     sync.Mutex
	window time.Time
	count  int

	unverified addressBudgets

	// secretMu makes one request at a time ask CurrentSecret, so that
	// the requests arriving while a read fails wait for its result
	// instead of each reading again.
	secretMu          sync.Mutex
	secretErr         error
	secretFailedUntil time.Time
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
	return newWebhooks(receivers, func(w http.ResponseWriter, req *http.Request, r *Receiver, body []byte) {
		r.servePush(w, req.Header, body, onPush)
	})
}

// webhooks serves /hooks/<receiver>: it admits, reads and verifies a
// request, and hands a verified one, with its body, to verified.
type webhooks struct {
	receivers map[string]*Receiver
	verified  func(w http.ResponseWriter, req *http.Request, r *Receiver, body []byte)
}

func newWebhooks(receivers []*Receiver, verified func(http.ResponseWriter, *http.Request, *Receiver, []byte)) *webhooks {
	h := &webhooks{receivers: map[string]*Receiver{}, verified: verified}
	for _, r := range receivers {
		h.receivers[r.Name] = r
	}
	return h
}

func (h *webhooks) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r, ok := h.receivers[strings.TrimPrefix(req.URL.Path, "/hooks/")]
	if !ok {
		leaveUnread(w)
		http.NotFound(w, req)
		return
	}
	if req.Method != http.MethodPost {
		leaveUnread(w)
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	burst, perMinute := r.invalidLimits()
	budget, wait := r.unverified.admit(clientKey(clientAddress(req, r.TrustedProxies)), time.Now(), perMinute, burst)
	if budget == nil {
		leaveUnread(w)
		tooManyRequests(w, wait, "too many unverified requests from this address")
		return
	}
	verified := false
	defer func() { r.unverified.settle(budget, verified, time.Now()) }()
	body, code, err := r.readBody(w, req)
	if err != nil {
		leaveUnread(w)
		http.Error(w, err.Error(), code)
		return
	}
	secret, wait, err := r.secret(req.Context())
	if err != nil {
		setRetryAfter(w, wait)
		http.Error(w, "the receiver's secret cannot be read", http.StatusServiceUnavailable)
		return
	}
	if !r.verify(secret, req.Header, body) {
		http.Error(w, "bad or missing signature", http.StatusUnauthorized)
		return
	}
	verified = true
	h.verified(w, req, r, body)
}

// servePush answers a verified request: within the receiver's limit, a
// push triggers onPush.
func (r *Receiver) servePush(w http.ResponseWriter, h http.Header, body []byte, onPush func(Push) int) {
	if wait, ok := r.allow(time.Now()); !ok {
		tooManyRequests(w, wait, "too many requests")
		return
	}
	push, isPush, err := r.parse(h, body)
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
}

// readBody reads a request's body within BodyTimeout and maxWebhookBody;
// an error comes with the status that answers it.
func (r *Receiver) readBody(w http.ResponseWriter, req *http.Request) ([]byte, int, error) {
	timeout := positiveOr(r.BodyTimeout, DefaultWebhookBodyTimeout)
	rc := http.NewResponseController(w)
	// A ResponseWriter that cannot set a deadline (a test's recorder) is
	// left to the server's ReadTimeout.
	_ = rc.SetReadDeadline(time.Now().Add(timeout))
	body, err := io.ReadAll(io.LimitReader(req.Body, maxWebhookBody+1))
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, http.StatusRequestTimeout, fmt.Errorf("the body did not arrive within %s", timeout)
	case err != nil:
		return nil, http.StatusBadRequest, errors.New("cannot read the body")
	case len(body) > maxWebhookBody:
		return nil, http.StatusRequestEntityTooLarge, errors.New("body over 1 MiB")
	}
	// Cleared once read: the server goes on reading in the background
	// while the request is handled, and a deadline there would cancel the
	// request's context (and a standby's forwarding with it).
	_ = rc.SetReadDeadline(time.Time{})
	return body, 0, nil
}

// leaveUnread closes the connection after an answer given before the body
// was read whole. Otherwise the server would read up to 256 KiB of what is
// left of it to keep the connection, as slowly as the client sends it.
func leaveUnread(w http.ResponseWriter) {
	w.Header().Set("Connection", "close")
	_ = http.NewResponseController(w).SetReadDeadline(time.Now())
}

// secret is the receiver's secret. A failure of CurrentSecret is kept for
// SecretRetry and answered from memory, with the time left, so that a
// flood of requests while a Secret is missing becomes neither as many
// requests to the home cluster nor as many log lines.
func (r *Receiver) secret(ctx context.Context) ([]byte, time.Duration, error) {
	if r.CurrentSecret == nil {
		return r.Secret, 0, nil
	}
	r.secretMu.Lock()
	defer r.secretMu.Unlock()
	if left := time.Until(r.secretFailedUntil); r.secretErr != nil && left > 0 {
		return nil, left, r.secretErr
	}
	// Not bound to the request: a client that goes away must not become
	// a failure that the requests after it are answered with.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), webhookSecretTimeout)
	defer cancel()
	secret, err := r.CurrentSecret(ctx)
	if err != nil {
		retry := positiveOr(r.SecretRetry, DefaultWebhookSecretRetry)
		r.secretErr, r.secretFailedUntil = err, time.Now().Add(retry)
		if r.OnSecretError != nil {
			r.OnSecretError(err)
		}
		return nil, retry, err
	}
	r.secretErr = nil
	return secret, 0, nil
}

func (r *Receiver) invalidLimits() (burst, perMinute int) {
	return positiveOr(r.InvalidBurst, DefaultWebhookInvalidBurst), positiveOr(r.InvalidPerMinute, DefaultWebhookInvalidPerMinute)
}

// positiveOr is v, or def when v is not set (zero or less).
func positiveOr[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// allow counts a signed request against PerMinute; when it is over, it
// says how long until the minute's window ends.
func (r *Receiver) allow(now time.Time) (time.Duration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	limit := positiveOr(r.PerMinute, DefaultWebhookPerMinute)
	if now.Sub(r.window) > time.Minute {
		r.window, r.count = now, 0
	}
	r.count++
	return r.window.Add(time.Minute).Sub(now), r.count <= limit
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
		if c.Href != "" {
			push.Repositories = append(push.Repositories, c.Href)
		}
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
	for _, s := range d.syncs() {
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
