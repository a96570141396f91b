package cluster

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
)

// State is what a readiness probe found.
type State string

// The states of a cluster.
const (
	Ready        State = "Ready"
	Offline      State = "Offline"
	Unauthorized State = "Unauthorized"
)

// Health is one probe's result.
type Health struct {
	State State
	// Reason says why a cluster is not Ready.
	Reason string
}

// Probe asks the API server's /readyz once.
func Probe(ctx context.Context, t *Target) Health {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	client, err := kubernetes.NewForConfig(t.Config)
	if err != nil {
		return Health{State: Offline, Reason: err.Error()}
	}
	var status int
	err = client.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).StatusCode(&status).Error()
	switch {
	case err == nil && status == http.StatusOK:
		return Health{State: Ready}
	case apierrors.IsUnauthorized(err) || apierrors.IsForbidden(err) || status == http.StatusUnauthorized || status == http.StatusForbidden:
		return Health{State: Unauthorized, Reason: fmt.Sprintf("the API server at %s refused the credentials of context %s", t.Server, t.Name)}
	case err != nil:
		return Health{State: Offline, Reason: err.Error()}
	default:
		return Health{State: Offline, Reason: fmt.Sprintf("%s/readyz answered %d", t.Server, status)}
	}
}

// Prober keeps a cluster's state across probes, changing it only after
// FailureThreshold failed probes in a row (to Offline or Unauthorized) or
// SuccessThreshold good ones (back to Ready), so that one lost request does
// not take a cluster out of a sync.
type Prober struct {
	FailureThreshold int
	SuccessThreshold int

	mu        sync.Mutex
	state     Health
	failures  int
	successes int
	probed    bool
}

// Observe records one probe result and returns the state.
func (p *Prober) Observe(h Health) Health {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.probed {
		p.probed, p.state = true, h
		return p.state
	}
	if h.State == Ready {
		p.failures = 0
		p.successes++
		if p.state.State != Ready && p.successes >= max(1, p.SuccessThreshold) {
			p.state = h
		}
	} else {
		p.successes = 0
		p.failures++
		if p.state.State == Ready && p.failures >= max(1, p.FailureThreshold) {
			p.state = h
		} else if p.state.State != Ready {
			p.state = h // keep the newest reason
		}
	}
	return p.state
}

// State returns the current state.
func (p *Prober) State() Health {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}
