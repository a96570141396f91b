// Package notify tells people what a sync did: a commit status on the Git
// host for each revision a sync applies or fails (GitHub, GitLab, Gitea),
// and alerts to a generic webhook or a Slack-compatible incoming webhook.
// Each notifier sends from a queue of its own, at a bounded rate, retrying
// a failed delivery a few times with backoff; a full queue drops the
// oldest news rather than blocking a reconcile. Messages come from the
// engine, whose errors are masked: they carry no Secret value.
package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Providers.
const (
	GitHub  = "github"
	GitLab  = "gitlab"
	Gitea   = "gitea"
	Webhook = "webhook"
	Slack   = "slack"
)

// IsCommitStatus reports whether a provider writes commit statuses.
func IsCommitStatus(provider string) bool {
	return provider == GitHub || provider == GitLab || provider == Gitea
}

// State is where a revision is in a cluster.
type State string

// States of a revision.
const (
	Pending State = "pending"
	Success State = "success"
	Failure State = "failure"
)

// Event is one piece of news of a sync.
type Event struct {
	// Sync and Cluster name what the news is of.
	Sync, Cluster string
	// Repository is the sync's source URL, Revision the commit.
	Repository, Revision string
	State                State
	// Reason is the engine's (Succeeded, PlanFailed, ...); Message says
	// more, masked.
	Reason, Message string
	At              time.Time
}

// Context is the commit-status context of an event: one per sync and
// cluster.
func (e Event) Context() string { return "gitk8s/" + e.Sync + "/" + e.Cluster }

// Target is where one notifier sends.
type Target struct {
	// Name is the notifier's, for logs.
	Name     string
	Provider string
	// Address is the API's base URL (commit statuses: default
	// https://api.github.com for GitHub, the repository's host for GitLab
	// and Gitea) or the webhook's URL.
	Address string
	// Token authenticates to the Git host's API, or signs a generic
	// webhook's body (X-Gitk8s-Signature-256: sha256=HMAC).
	Token string
}

// Options tune a Notifier.
type Options struct {
	// PerMinute bounds deliveries (default 60); Burst (default 10).
	PerMinute, Burst int
	// Retries after a failed delivery (default 3), with backoff from
	// RetryWait (default 1s), doubling.
	Retries   int
	RetryWait time.Duration
	// Queue is how many events wait at most (default 100).
	Queue int
	// Client sends the requests (default: 10 s timeout).
	Client *http.Client
	Logger *slog.Logger
}

// Notifier sends events to one target.
type Notifier struct {
	target  Target
	opts    Options
	limiter *rate.Limiter
	mu      sync.Mutex
	queue   []Event
	wake    chan struct{}
	// Dropped counts events a full queue dropped; Failed those not
	// delivered after every retry.
	Dropped, Failed, Sent int
}

// New makes a Notifier; Run sends its queue.
func New(t Target, opts Options) *Notifier {
	if opts.PerMinute <= 0 {
		opts.PerMinute = 60
	}
	if opts.Burst <= 0 {
		opts.Burst = 10
	}
	if opts.Retries == 0 {
		opts.Retries = 3
	}
	if opts.RetryWait <= 0 {
		opts.RetryWait = time.Second
	}
	if opts.Queue <= 0 {
		opts.Queue = 100
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Notifier{target: t, opts: opts, wake: make(chan struct{}, 1),
		limiter: rate.NewLimiter(rate.Limit(float64(opts.PerMinute)/60), opts.Burst)}
}

// Send queues an event without waiting.
func (n *Notifier) Send(e Event) {
	n.mu.Lock()
	if len(n.queue) >= n.opts.Queue {
		n.queue = n.queue[1:]
		n.Dropped++
	}
	n.queue = append(n.queue, e)
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// Counts returns how many events were sent, dropped and failed.
func (n *Notifier) Counts() (sent, dropped, failed int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.Sent, n.Dropped, n.Failed
}

// Run delivers queued events until ctx ends.
func (n *Notifier) Run(ctx context.Context) {
	for {
		n.mu.Lock()
		var e Event
		ok := len(n.queue) > 0
		if ok {
			e, n.queue = n.queue[0], n.queue[1:]
		}
		n.mu.Unlock()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-n.wake:
				continue
			}
		}
		err := n.deliver(ctx, e)
		n.mu.Lock()
		if err != nil {
			n.Failed++
		} else {
			n.Sent++
		}
		n.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			n.opts.Logger.Warn("notification not delivered", "notifier", n.target.Name, "provider", n.target.Provider, "sync", e.Sync, "error", err)
		}
	}
}

// deliver sends one event, retrying.
func (n *Notifier) deliver(ctx context.Context, e Event) error {
	wait := n.opts.RetryWait
	var err error
	for attempt := 0; attempt <= n.opts.Retries; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
			wait *= 2
		}
		if err = n.limiter.Wait(ctx); err != nil {
			return err
		}
		var retry bool
		if retry, err = n.send(ctx, e); err == nil || !retry {
			return err
		}
	}
	return err
}

// send makes one request; retry says whether another attempt may succeed.
func (n *Notifier) send(ctx context.Context, e Event) (retry bool, err error) {
	req, err := n.request(ctx, e)
	if err != nil {
		return false, err
	}
	req.Header.Set("User-Agent", "gitk8s")
	resp, err := n.opts.Client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text holds the whole URL
		}
		return true, fmt.Errorf("%s: %w", redactURL(req.URL), err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode >= 300 {
		return resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests,
			fmt.Errorf("%s answered %s", redactURL(req.URL), resp.Status)
	}
	return false, nil
}

// redactURL names where a request went by scheme and host only: a
// webhook's path and query can be its secret (a Slack incoming-webhook
// URL is one).
func redactURL(u *url.URL) string {
	return u.Scheme + "://" + u.Host
}

// description is a status's one line, within the hosts' bounds.
func description(e Event) string {
	d := e.Reason
	if e.Message != "" {
		d += ": " + strings.ReplaceAll(e.Message, "\n", "; ")
	}
	if len(d) > 140 {
		d = d[:137] + "..."
	}
	return d
}

func (n *Notifier) request(ctx context.Context, e Event) (*http.Request, error) {
	t := n.target
	jsonRequest := func(u string, body any) (*http.Request, error) {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(data))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		return req, nil
	}
	switch t.Provider {
	case GitHub, Gitea:
		base, owner, repo, err := repositoryAPI(t, e.Repository)
		if err != nil {
			return nil, err
		}
		state := string(e.State)
		path := "/repos/"
		if t.Provider == Gitea {
			path = "/api/v1/repos/"
		}
		req, err := jsonRequest(base+path+url.PathEscape(owner)+"/"+url.PathEscape(repo)+"/statuses/"+url.PathEscape(e.Revision),
			map[string]string{"state": state, "context": e.Context(), "description": description(e)})
		if err != nil {
			return nil, err
		}
		if t.Provider == GitHub {
			req.Header.Set("Authorization", "Bearer "+t.Token)
			req.Header.Set("Accept", "application/vnd.github+json")
		} else {
			req.Header.Set("Authorization", "token "+t.Token)
		}
		return req, nil
	case GitLab:
		base, owner, repo, err := repositoryAPI(t, e.Repository)
		if err != nil {
			return nil, err
		}
		state := map[State]string{Pending: "running", Success: "success", Failure: "failed"}[e.State]
		q := url.Values{"state": {state}, "name": {e.Context()}, "description": {description(e)}}
		u := base + "/api/v4/projects/" + url.PathEscape(owner+"/"+repo) + "/statuses/" + url.PathEscape(e.Revision) + "?" + q.Encode()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("PRIVATE-TOKEN", t.Token)
		return req, nil
	case Slack:
		icon := map[State]string{Pending: "⏳", Success: "✅", Failure: "❌"}[e.State]
		text := fmt.Sprintf("%s gitk8s sync *%s* in cluster *%s* at %s: %s", icon, e.Sync, e.Cluster, shortRevision(e.Revision), e.Reason)
		if e.Message != "" {
			text += "\n" + e.Message
		}
		return jsonRequest(t.Address, map[string]string{"text": text})
	case Webhook:
		body, err := json.Marshal(map[string]any{"sync": e.Sync, "cluster": e.Cluster, "repository": e.Repository, "revision": e.Revision,
			"state": e.State, "reason": e.Reason, "message": e.Message, "at": e.At.UTC().Format(time.RFC3339)})
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.Address, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		if t.Token != "" {
			mac := hmac.New(sha256.New, []byte(t.Token))
			mac.Write(body)
			req.Header.Set("X-Gitk8s-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
		}
		return req, nil
	}
	return nil, fmt.Errorf("notifier %s: provider %q is not one of github, gitlab, gitea, webhook, slack", t.Name, t.Provider)
}

func shortRevision(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

// repositoryAPI is the API base and the owner and name of a repository
// given by its clone URL (https://host/owner/repo.git or git@host:owner/repo).
func repositoryAPI(t Target, repository string) (base, owner, repo string, err error) {
	host, path := "", ""
	if u, perr := url.Parse(repository); perr == nil && u.Host != "" {
		host, path = u.Scheme+"://"+u.Host, u.Path
		if u.Scheme != "http" && u.Scheme != "https" {
			host = "https://" + u.Hostname()
		}
	} else if at := strings.Index(repository, "@"); at >= 0 {
		h, p, _ := strings.Cut(repository[at+1:], ":")
		host, path = "https://"+h, p
	}
	path = strings.TrimSuffix(strings.Trim(path, "/"), ".git")
	i := strings.LastIndex(path, "/")
	if i <= 0 {
		return "", "", "", fmt.Errorf("notifier %s: %s names no owner/repository for a commit status", t.Name, repository)
	}
	owner, repo = path[:i], path[i+1:]
	base = strings.TrimSuffix(t.Address, "/")
	if base == "" {
		base = host
		if t.Provider == GitHub {
			base = "https://api.github.com"
		}
	}
	return base, owner, repo, nil
}
