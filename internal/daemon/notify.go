package daemon

import (
	"context"
	"crypto/sha256"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gitk8s/gitk8s/internal/notify"
	"github.com/gitk8s/gitk8s/internal/source"
)

// notifierKey identifies a notifier by where it sends and with what.
type notifierKey struct {
	provider, address string
	token             [sha256.Size]byte
}

// notifiers are the daemon's notifiers, each with a queue and sender of
// its own, shared by the syncs that send to the same place.
type notifiers struct {
	mu   sync.Mutex
	byID map[notifierKey]*notify.Notifier
	// alerted is what each notifier last said of a sync in a cluster,
	// revision/reason: news goes out when it changes.
	alerted map[string]string
	ctx     context.Context
	cancel  context.CancelFunc
}

func newNotifiers() *notifiers {
	ctx, cancel := context.WithCancel(context.Background())
	return &notifiers{byID: map[notifierKey]*notify.Notifier{}, alerted: map[string]string{}, ctx: ctx, cancel: cancel}
}

// commitRE is a Git commit id.
var commitRE = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)

// boundNotifier is a notifier of one sync.
type boundNotifier struct {
	index    int
	provider string
	n        *notify.Notifier
}

// notifiersOf are a sync's notifiers, their tokens read now (through the
// Secret cache). One that cannot be built is logged and left out: news is
// not worth failing a reconcile.
func (d *Daemon) notifiersOf(ctx context.Context, s SyncConfig) []boundNotifier {
	var out []boundNotifier
	for i, c := range s.Notify {
		t := notify.Target{Name: fmt.Sprintf("%s/notify[%d]", s.Name, i), Provider: c.Provider, Address: c.Address}
		if c.SecretRef != nil {
			ref := *c.SecretRef
			ref.Key = ""
			keys := []string{"token"}
			if c.SecretRef.Key != "" {
				keys = []string{c.SecretRef.Key}
			}
			token, _, err := d.secretKey(ctx, &ref, keys...)
			if err != nil && (notify.IsCommitStatus(c.Provider) || c.Address != "") {
				d.log.Warn("notifier without its token", "sync", s.Name, "notifier", i, "error", err)
				if notify.IsCommitStatus(c.Provider) {
					continue
				}
			}
			t.Token = string(token)
			if t.Address == "" {
				address, _, err := d.secretKey(ctx, &ref, "address")
				if err != nil {
					d.log.Warn("notifier without its address", "sync", s.Name, "notifier", i, "error", err)
					continue
				}
				t.Address = string(address)
			}
		}
		key := notifierKey{provider: t.Provider, address: t.Address, token: sha256.Sum256([]byte(t.Token))}
		d.notify.mu.Lock()
		n, ok := d.notify.byID[key]
		if !ok {
			n = notify.New(t, notify.Options{Logger: d.log})
			d.notify.byID[key] = n
			go n.Run(d.notify.ctx)
		}
		d.notify.mu.Unlock()
		out = append(out, boundNotifier{index: i, provider: c.Provider, n: n})
	}
	return out
}

// notifyPending sets the commit status of a revision being applied to
// pending in each of the sync's clusters.
func (d *Daemon) notifyPending(ctx context.Context, s SyncConfig, rev string, clusters []string) {
	if len(s.Notify) == 0 || !commitRE.MatchString(rev) || source.IsOCI(s.Source.URL) {
		return
	}
	for _, b := range d.notifiersOf(ctx, s) {
		if !notify.IsCommitStatus(b.provider) {
			continue
		}
		for _, c := range clusters {
			// A revision retried after a failure is not pending again.
			if !d.changed(s.Name, c, b.index, rev, "", true) {
				continue
			}
			b.n.Send(notify.Event{Sync: s.Name, Cluster: c, Repository: s.Source.URL, Revision: rev, State: notify.Pending,
				Reason: ReasonProgressing, Message: "applying", At: time.Now()})
		}
	}
}

// changed records what a notifier says of a sync in a cluster, and
// reports whether it differs from what it said last: the same revision
// with the same reason is said once. With anyReason, any word on the
// revision counts as said.
func (d *Daemon) changed(syncName, clusterName string, index int, rev, reason string, anyReason bool) bool {
	key := syncName + "/" + clusterName + "/" + strconv.Itoa(index)
	d.notify.mu.Lock()
	defer d.notify.mu.Unlock()
	last := d.notify.alerted[key]
	if anyReason {
		if strings.HasPrefix(last, rev+"/") {
			return false
		}
	} else if last == rev+"/"+reason {
		return false
	}
	d.notify.alerted[key] = rev + "/" + reason
	return true
}

// notifyResult tells how a revision ended in a cluster, once per revision
// and outcome: a retry that ends as the last one did says nothing again.
func (d *Daemon) notifyResult(ctx context.Context, s SyncConfig, rev, clusterName, reason string, err error) {
	if len(s.Notify) == 0 {
		return
	}
	e := notify.Event{Sync: s.Name, Cluster: clusterName, Repository: s.Source.URL, Revision: rev, State: notify.Success, Reason: reason, At: time.Now()}
	if err != nil {
		e.State, e.Message = notify.Failure, err.Error()
	}
	for _, b := range d.notifiersOf(ctx, s) {
		if notify.IsCommitStatus(b.provider) && (!commitRE.MatchString(rev) || source.IsOCI(s.Source.URL)) {
			continue
		}
		if d.changed(s.Name, clusterName, b.index, rev, reason, false) {
			b.n.Send(e)
		}
	}
}
