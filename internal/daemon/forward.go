package daemon

import (
	"net/http"
	"net/http/httputil"
	"net/url"
)

// forwardedHeader marks a request a standby forwarded to the leader, so
// that it is forwarded once at most.
const forwardedHeader = "X-Gitk8s-Forwarded-By"

// leaderOnly serves h on the leader (or when there is no election). A
// standby forwards the request to the leader at the URL the leader
// advertised in its Lease, so that a push reaching any replica behind a
// Service triggers the syncs, and status shows what the leader knows. A
// forwarded request that reaches a daemon that no longer leads, or a
// standby that knows no leader, gets 503: the sender tries again.
func (d *Daemon) leaderOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !d.cfg.LeaderElection.Enabled || d.Leader() {
			h.ServeHTTP(w, r)
			return
		}
		if r.Header.Get(forwardedHeader) != "" {
			http.Error(w, "this replica no longer leads; try again", http.StatusServiceUnavailable)
			return
		}
		leader := d.LeaderURL()
		if leader == "" {
			http.Error(w, "standby: no leader that advertises its URL is known yet; try again", http.StatusServiceUnavailable)
			return
		}
		target, err := url.Parse(leader)
		if err != nil || target.Host == "" {
			http.Error(w, "standby: the leader advertises no usable URL", http.StatusServiceUnavailable)
			return
		}
		proxy := &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(target)
				pr.SetXForwarded()
				pr.Out.Header.Set(forwardedHeader, d.advertiseURL)
			},
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				d.log.Warn("forwarding to the leader failed", "leader", leader, "error", err)
				http.Error(w, "standby: the leader did not answer; try again", http.StatusBadGateway)
			},
		}
		proxy.ServeHTTP(w, r)
	})
}
