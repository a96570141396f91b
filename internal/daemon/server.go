package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the daemon's Prometheus metrics, on a registry of its own.
type metrics struct {
	registry       *prometheus.Registry
	reconcile      *prometheus.HistogramVec
	objects        *prometheus.CounterVec
	webhooks       *prometheus.CounterVec
	gitResolve     prometheus.Histogram
	gitFetch       prometheus.Histogram
	appliedRev     *prometheus.GaugeVec
	policyFindings *prometheus.CounterVec
	drift          *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		reconcile: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "gitk8s_reconcile_duration_seconds",
			Help: "Time of one reconcile of a sync, by result.", Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 12)}, []string{"sync", "result"}),
		objects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gitk8s_objects_total",
			Help: "Objects by what a reconcile did to them (created, configured, pruned, …)."}, []string{"sync", "action"}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gitk8s_webhook_requests_total",
			Help: "Webhook requests by receiver and HTTP status."}, []string{"receiver", "code"}),
		gitResolve: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gitk8s_git_resolve_duration_seconds",
			Help: "Time to learn a remote's revision (one ref advertisement).", Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12)}),
		gitFetch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gitk8s_git_fetch_duration_seconds",
			Help: "Time to fetch a new revision into the cache and check it out.", Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 12)}),
		appliedRev: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "gitk8s_sync_last_applied_revision_info",
			Help: "1 for the revision a sync last applied."}, []string{"sync", "revision"}),
		policyFindings: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gitk8s_policy_findings_total",
			Help: "Policy findings by rule and severity."}, []string{"rule", "severity"}),
		drift: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gitk8s_drift_total",
			Help: "Changes someone else made to objects a sync manages."}, []string{"sync"}),
	}
	m.registry.MustRegister(m.reconcile, m.objects, m.webhooks, m.gitResolve, m.gitFetch, m.appliedRev, m.policyFindings, m.drift,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// statusRecorder keeps the HTTP status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	code int
	// forwarded is set when the request went on to the leader, which
	// answered it.
	forwarded bool
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection, to set a
// webhook body's read deadline.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// ServerOptions bound how long a client may hold a connection of the
// daemon's HTTP listener, which anyone on the network may reach.
type ServerOptions struct {
	// ReadHeaderTimeout bounds the reading of a request's headers.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds the reading of a whole request. A webhook's body
	// has its own bound, Receiver.BodyTimeout, from when it is read.
	ReadTimeout time.Duration
	// WriteTimeout bounds the time from the end of a request's headers
	// to the end of its response; it must leave room for a webhook's
	// body, a read of its secret and, on a standby, the leader's answer.
	WriteTimeout time.Duration
	// IdleTimeout bounds how long a kept-alive connection waits for its
	// next request.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the size of a request's headers.
	MaxHeaderBytes int
}

// DefaultServerOptions are the bounds of NewServer when nothing else is
// said: generous for a Git provider's push, short for a client that
// holds a connection open.
func DefaultServerOptions() ServerOptions {
	return ServerOptions{
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
}

// NewServer is the HTTP server of the daemon's API (h, from Handler) at
// addr, with every read and write bounded.
func NewServer(addr string, h http.Handler, o ServerOptions) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: o.ReadHeaderTimeout,
		ReadTimeout:       o.ReadTimeout,
		WriteTimeout:      o.WriteTimeout,
		IdleTimeout:       o.IdleTimeout,
		MaxHeaderBytes:    o.MaxHeaderBytes,
	}
}

// Handler serves the daemon's HTTP API on one listener: /hooks/<receiver>,
// /healthz, /readyz, /metrics, /api/v1/syncs and the status page at /.
//
// /readyz is 200 ("ok: leader" or "ok: standby") once the daemon runs and
// the informers of every drift watch have listed their objects, so that
// drift in them would be seen; until then 503 with the reason.
//
// A standby checks a webhook as the leader would (address budget, body,
// signature) before it forwards it, so that the leader, where the
// standby's requests all share the standby's address, gets only signed
// ones, and a flood through the standby is limited by the sender's own
// address. Serve it with NewServer, whose reads and writes are bounded.
func (d *Daemon) Handler() (http.Handler, error) {
	hooks, err := d.hooksHandler()
	if err != nil {
		return nil, err
	}
	mux := d.statusMux()
	mux.Handle("/hooks/", hooks)
	return mux, nil
}

// Handlers split Handler in two, for two listeners, so that the webhooks
// alone can be exposed: hooks serves /hooks/<receiver> and answers 404 to
// any other path; status serves every other path and answers 404 to
// /hooks/. With leader election, status still takes a webhook that a
// standby checked and forwarded (a standby forwards to the URL the leader
// advertises, its status listener's), and checks it again as hooks would.
// Serve each with NewServer.
func (d *Daemon) Handlers() (status, hooks http.Handler, err error) {
	h, err := d.hooksHandler()
	if err != nil {
		return nil, nil, err
	}
	notFound := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaveUnread(w)
		http.NotFound(w, r)
	})
	mux := d.statusMux()
	mux.Handle("/hooks/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d.cfg.LeaderElection.Enabled && r.Header.Get(forwardedHeader) != "" {
			h.ServeHTTP(w, r)
			return
		}
		notFound(w, r)
	}))
	hooksMux := http.NewServeMux()
	hooksMux.Handle("/hooks/", h)
	hooksMux.Handle("/", notFound)
	return mux, hooksMux, nil
}

// Servers are the daemon's HTTP servers, made with NewServer and o. The
// first is at webhooks.listen; when webhooks.hooksListen is set, it
// serves the status half of Handlers and a second server, at
// hooksListen, the hooks half; otherwise it serves Handler.
func (d *Daemon) Servers(o ServerOptions) ([]*http.Server, error) {
	listen := d.cfg.Webhooks.ListenAddress()
	if d.cfg.Webhooks.HooksListen == "" {
		h, err := d.Handler()
		if err != nil {
			return nil, err
		}
		return []*http.Server{NewServer(listen, h, o)}, nil
	}
	status, hooks, err := d.Handlers()
	if err != nil {
		return nil, err
	}
	return []*http.Server{NewServer(listen, status, o), NewServer(d.cfg.Webhooks.HooksListen, hooks, o)}, nil
}

// hooksHandler serves /hooks/<receiver>: on the leader (or without
// election) it verifies a push and triggers its syncs; a standby checks
// it the same way, then forwards it to the leader.
func (d *Daemon) hooksHandler() (http.Handler, error) {
	var receivers []*Receiver
	for _, rc := range d.cfg.Webhooks.Receivers {
		r := &Receiver{Name: rc.Name, Provider: rc.Provider, PerMinute: rc.PerMinute,
			InvalidBurst: rc.InvalidBurst, InvalidPerMinute: rc.InvalidPerMinute, BodyTimeout: rc.BodyTimeout.Duration,
			TrustedProxies: d.cfg.Webhooks.trustedProxies()}
		if rc.SecretRef != nil {
			// Read once now, so that a missing Secret stops the daemon at
			// start, then on every request through the cache.
			ref := rc.SecretRef
			r.CurrentSecret = func(ctx context.Context) ([]byte, error) {
				v, key, err := d.secretKey(ctx, ref, "token")
				if err != nil {
					return nil, err
				}
				if v = bytes.TrimSpace(v); len(v) == 0 {
					ns := ref.Namespace
					if ns == "" {
						ns = HomeNamespace
					}
					return nil, fmt.Errorf("Secret %s/%s: key %s holds only white space: a webhook secret must not be empty", ns, ref.Name, key)
				}
				return v, nil
			}
			r.OnSecretError = func(err error) { d.log.Error("webhook secret unreadable", "receiver", rc.Name, "error", err) }
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_, err := r.CurrentSecret(ctx)
			cancel()
			if err != nil {
				return nil, fmt.Errorf("webhook receiver %s: %w", rc.Name, err)
			}
		} else {
			secret, err := os.ReadFile(rc.SecretFile)
			if err != nil {
				return nil, fmt.Errorf("webhook receiver %s: %w", rc.Name, err)
			}
			r.Secret = bytes.TrimSpace(secret)
			if len(r.Secret) == 0 {
				return nil, fmt.Errorf("webhook receiver %s: secretFile %s is empty", rc.Name, rc.SecretFile)
			}
		}
		receivers = append(receivers, r)
	}
	known := map[string]bool{}
	for _, r := range receivers {
		known[r.Name] = true
	}
	// count records a webhook's answer, unless this replica forwarded the
	// request: the leader counts those.
	count := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
			h.ServeHTTP(rec, r)
			if rec.forwarded {
				return
			}
			// Paths that name no receiver are counted under one label, so
			// that requests to made-up paths create no series.
			name := strings.TrimPrefix(r.URL.Path, "/hooks/")
			if !known[name] {
				name = "unknown"
			}
			d.metrics.webhooks.WithLabelValues(name, fmt.Sprint(rec.code)).Inc()
		})
	}
	toLeader := d.leaderOnly(count(WebhookHandler(receivers, d.OnPush)))
	checkThenForward := count(newWebhooks(receivers, func(w http.ResponseWriter, r *http.Request, _ *Receiver, body []byte) {
		if rec, ok := w.(*statusRecorder); ok {
			rec.forwarded = true
		}
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		toLeader.ServeHTTP(w, r)
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A standby checks before it forwards; a request another replica
		// forwarded is not forwarded again (leaderOnly refuses it).
		if d.cfg.LeaderElection.Enabled && !d.Leader() && r.Header.Get(forwardedHeader) == "" {
			checkThenForward.ServeHTTP(w, r)
			return
		}
		toLeader.ServeHTTP(w, r)
	}), nil
}

// statusMux serves everything of the daemon's HTTP API but /hooks/:
// health, readiness, metrics, the status API and page.
func (d *Daemon) statusMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if !d.started.Load() {
			http.Error(w, "not started", http.StatusServiceUnavailable)
			return
		}
		if unsynced := d.driftUnsynced(); len(unsynced) > 0 {
			http.Error(w, "drift watches not synced: "+strings.Join(unsynced, "; "), http.StatusServiceUnavailable)
			return
		}
		role := "standby"
		if d.Leader() {
			role = "leader"
		}
		_, _ = w.Write([]byte("ok: " + role + "\n"))
	})
	mux.Handle("/metrics", promhttp.HandlerFor(d.metrics.registry, promhttp.HandlerOpts{}))
	mux.Handle("/api/v1/syncs", d.leaderOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"leader": d.Leader(), "syncs": d.Status()})
	})))
	// Only / itself: a standby forwards no other path to the leader.
	mux.Handle("/{$}", d.leaderOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = statusPage.Execute(w, statusPageData{Leader: d.Leader(), Now: time.Now(), Syncs: d.Status()})
	})))
	return mux
}

// statusPageData is what the status page shows.
type statusPageData struct {
	// Leader tells whether this daemon reconciles or stands by.
	Leader bool
	Now    time.Time
	Syncs  []SyncStatus
}

// statusPage is the read-only overview; html/template escapes everything
// it prints, and nothing it prints holds a Secret value.
var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"short": func(s string) string {
		if len(s) > 12 {
			return s[:12]
		}
		return s
	},
	// utc writes a time in UTC, whatever the daemon's time zone: replicas
	// in several zones show the same time.
	"utc": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"ready": func(s SyncStatus) string {
		c := s.Condition("Ready")
		switch {
		case s.Suspended:
			return "suspended"
		case c.Status == "True":
			return "ready"
		case c.Status == "False":
			return "failing"
		}
		return "pending"
	},
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>gitk8s</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.4em .6em;border-bottom:1px solid #ddd;vertical-align:top}
th,td.name,td.time{white-space:nowrap}
tr.failing td{background:#fde2e1;color:#8a1c1c}
tr.ready td.state{color:#1a7f37}
code{font-size:12px}
p.role{color:#555}
</style></head><body>
<h1>gitk8s</h1>
<p class="role" id="role">{{if .Leader}}This daemon is the <strong>leader</strong>: it reconciles.{{else}}This daemon is on <strong>standby</strong>: another replica reconciles; the status below is this one's last view.{{end}} Page made {{utc .Now}}.</p>
<table>
<tr><th>sync</th><th>clusters</th><th>state</th><th>applied</th><th>attempted</th><th>last change</th><th>unhealthy</th><th>last error</th></tr>
{{range .Syncs}}<tr class="{{ready .}}" data-sync="{{.Name}}">
<td class="name">{{.Name}}</td>
<td class="clusters">{{range $i, $c := .Clusters}}{{if $i}}, {{end}}{{$c}}{{end}}</td>
<td class="state">{{ready .}}{{with .Condition "Ready"}} ({{.Reason}}){{end}}{{if .Suspended}}<br>{{.SuspendedReason}}{{with .SuspendedBy}} — {{.}}{{end}}{{end}}</td>
<td><code>{{short .LastAppliedRevision}}</code></td>
<td><code>{{short .LastAttemptedRevision}}</code></td>
<td class="time">{{with .Condition "Ready"}}{{utc .LastTransitionTime}}{{end}}</td>
<td>{{range .Unhealthy}}{{.}}<br>{{end}}</td>
<td>{{.LastError}}</td>
</tr>{{end}}
</table>
</body></html>
`))
