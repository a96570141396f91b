package render

import (
	"fmt"
	"net"
	"net/http"
	"time"
)

// closeNetwork is the renderer child's network: none at all unless remote
// bases are allowed, and then requests that give up when a server is slow.
// Kustomize fetches any http(s) path it is given — a resource, a patch, a
// generator's files, a transformer, an OpenAPI schema — through Go's
// default transport, so replacing it in the child covers them all.
func closeNetwork(allowRemote bool) {
	if !allowRemote {
		http.DefaultTransport = refusingTransport{}
		return
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	http.DefaultTransport = &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		MaxIdleConns:          4,
	}
}

// refusingTransport answers every request with an error and never dials.
type refusingTransport struct{}

func (refusingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return nil, fmt.Errorf("%w: gitk8s does not fetch %s://%s while remote bases are off; vendor the file into the repository, or allow remote bases for this sync", ErrRemoteBase, req.URL.Scheme, req.URL.Host)
}
