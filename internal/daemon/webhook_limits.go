package daemon

import (
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Defaults of a Receiver's limits.
const (
	// DefaultWebhookPerMinute bounds a receiver's signed requests.
	DefaultWebhookPerMinute = 60
	// DefaultWebhookInvalidBurst and DefaultWebhookInvalidPerMinute bound
	// one client address's requests that are not verified.
	DefaultWebhookInvalidBurst     = 20
	DefaultWebhookInvalidPerMinute = 30
	// DefaultWebhookBodyTimeout bounds the reading of a request's body.
	DefaultWebhookBodyTimeout = 10 * time.Second
	// DefaultWebhookSecretRetry is how long a failure to read a
	// receiver's secret is remembered.
	DefaultWebhookSecretRetry = 5 * time.Second
)

// webhookSecretTimeout bounds one read of a receiver's secret, which is
// not bound to the request that asked for it.
const webhookSecretTimeout = 10 * time.Second

// maxTrackedAddresses bounds how many client addresses a receiver keeps a
// budget for. Past it, new addresses share one budget: an attacker with
// many addresses grows neither the daemon's memory nor the work it does
// for them.
const maxTrackedAddresses = 10_000

// addressBudgets are one receiver's budgets of unverified requests, one
// per client address, checked before a request costs anything (its body,
// its secret, its HMAC). A request is admitted only while its address
// has a token left for it; one that fails verification spends the token,
// a signed one gives it back. An admitted request holds its token until
// it is settled, so that many at once from one address are not all
// checked. Its zero value is ready: admit sets the limits on first use.
type addressBudgets struct {
	mu       sync.Mutex
	limit    rate.Limit
	burst    int
	budgets  map[netip.Prefix]*addressBudget
	overflow *addressBudget
	swept    time.Time
}

// addressBudget is one address's tokens and the requests of it that are
// being handled.
type addressBudget struct {
	tokens  *rate.Limiter
	pending int
}

// admit takes a token of key's budget for a request, or says how long
// until one is free.
func (b *addressBudgets) admit(key netip.Prefix, now time.Time, perMinute, burst int) (*addressBudget, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.budgets == nil {
		b.limit, b.burst = rate.Every(time.Minute/time.Duration(perMinute)), burst
		b.budgets = map[netip.Prefix]*addressBudget{}
		b.overflow = b.newBudget()
	}
	a := b.budget(key, now)
	free := a.tokens.TokensAt(now) - float64(a.pending)
	if free < 1 {
		return nil, time.Duration((1 - free) / float64(b.limit) * float64(time.Second))
	}
	a.pending++
	return a, 0
}

// settle ends an admitted request: an unverified one spends its token.
func (b *addressBudgets) settle(a *addressBudget, verified bool, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a.pending--
	if !verified {
		a.tokens.AllowN(now, 1)
	}
}

func (b *addressBudgets) newBudget() *addressBudget {
	return &addressBudget{tokens: rate.NewLimiter(b.limit, b.burst)}
}

// budget is key's budget. When the table is full, budgets that hold
// nothing (no request pending, every token back) are dropped, at most
// once a second so that a stream of new addresses does not make each of
// their requests walk the table; if it is still full, key shares the
// overflow budget.
func (b *addressBudgets) budget(key netip.Prefix, now time.Time) *addressBudget {
	if a, ok := b.budgets[key]; ok {
		return a
	}
	if len(b.budgets) >= maxTrackedAddresses && now.Sub(b.swept) >= time.Second {
		b.swept = now
		for k, a := range b.budgets {
			if a.pending == 0 && a.tokens.TokensAt(now) >= float64(b.burst) {
				delete(b.budgets, k)
			}
		}
	}
	if len(b.budgets) >= maxTrackedAddresses {
		return b.overflow
	}
	a := b.newBudget()
	b.budgets[key] = a
	return a
}

// clientAddress is who sent a request: the peer, or, when the peer is a
// trusted proxy, the last address in X-Forwarded-For that is not one (the
// proxies append; what a client wrote itself comes before). Without
// trusted proxies the header is not read: any client can write it.
func clientAddress(req *http.Request, trusted []netip.Prefix) string {
	peer, err := netip.ParseAddrPort(req.RemoteAddr)
	if err != nil || !inAny(peer.Addr().Unmap(), trusted) {
		return req.RemoteAddr
	}
	var hops []string
	for _, h := range req.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(h, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		ip, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return req.RemoteAddr // a malformed hop: the proxy's budget
		}
		if !inAny(ip.Unmap(), trusted) {
			return netip.AddrPortFrom(ip.Unmap(), 0).String()
		}
	}
	return req.RemoteAddr
}

func inAny(ip netip.Addr, prefixes []netip.Prefix) bool {
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// clientKey is the address a request's budget is kept under: the peer's
// IP, or for IPv6 its /64, which one subscriber usually holds whole.
func clientKey(remoteAddr string) netip.Prefix {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.Prefix{} // addresses that do not parse share one budget
	}
	ip := ap.Addr().Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// tooManyRequests answers 429, saying in Retry-After (whole seconds, at
// least one) when to try again.
func tooManyRequests(w http.ResponseWriter, wait time.Duration, msg string) {
	setRetryAfter(w, wait)
	http.Error(w, msg, http.StatusTooManyRequests)
}

func setRetryAfter(w http.ResponseWriter, wait time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
}
