package daemon

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaderElectionConfig makes several daemons share the work: one leads and
// reconciles, the others stand by (serving status) until its Lease lapses.
type LeaderElectionConfig struct {
	Enabled bool `json:"enabled,omitempty"`
	// Cluster holds the Lease (default: the first cluster).
	Cluster string `json:"cluster,omitempty"`
	// Namespace and Name of the Lease (default gitk8s-system/gitk8s-daemon).
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	// LeaseDuration is how long a standby waits after the leader's last
	// renewal (default 15s); the leader renews well within it.
	LeaseDuration Duration `json:"leaseDuration,omitempty"`
}

// RunElected runs the daemon when it holds the Lease, and stands by when
// another daemon does, until ctx ends. Without leader election it is Run.
//
// No object is applied by two daemons at once:
//   - a leader that loses its Lease (it could not renew it within the
//     renew deadline) cancels its reconciles at once, before a standby can
//     take the Lease, which takes the whole lease duration;
//   - a leader asked to stop takes no new work but keeps renewing its Lease
//     until its reconciles in flight have ended (ShutdownGrace at most), and
//     only then releases it, so that a standby takes over at once;
//   - a daemon starts a new term only after its last one has ended.
func (d *Daemon) RunElected(ctx context.Context) error {
	// Every replica follows the suspensions, so that its status shows them.
	if err := d.watchSuspensions(ctx); err != nil {
		return err
	}
	// And every replica knows the Sync resources, for webhooks and status.
	if err := d.watchSyncResources(ctx); err != nil {
		return err
	}
	le := d.cfg.LeaderElection
	if !le.Enabled {
		d.leader.Store(true)
		return d.Run(ctx)
	}
	name := d.cfg.HomeCluster()
	t, ok := d.targets[name]
	if !ok {
		return fmt.Errorf("leaderElection.cluster %s is not in clusters", name)
	}
	client, err := kubernetes.NewForConfig(t.Config)
	if err != nil {
		return err
	}
	ns, leaseName := le.Namespace, le.Name
	if ns == "" {
		ns = HomeNamespace
	}
	if leaseName == "" {
		leaseName = "gitk8s-daemon"
	}
	host, _ := os.Hostname()
	identity := host + "-" + rand.String(6)
	if d.advertiseURL != "" {
		identity += " " + d.advertiseURL
	}
	lease := le.LeaseDuration.Duration
	if lease == 0 {
		lease = 15 * time.Second
	}
	if _, err := client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		return fmt.Errorf("leader election: namespace %s of the Lease: %w", ns, err)
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: leaseName, Namespace: ns},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: identity},
	}
	d.started.Store(true)
	for ctx.Err() == nil {
		electing, stopElecting := context.WithCancel(context.WithoutCancel(ctx))
		var led atomic.Bool
		termOver := make(chan struct{})
		written := &writtenLock{Interface: lock}
		elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:          written,
			LeaseDuration: lease,
			RenewDeadline: lease * 2 / 3,
			RetryPeriod:   lease / 6,
			// Released by hand below, once the term's reconciles have ended:
			// client-go would release it when told to stop, before they have.
			ReleaseOnCancel: false,
			Name:            "gitk8s",
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(lead context.Context) {
					defer close(termOver)
					led.Store(true)
					d.log.Info("leading", "identity", identity)
					work, stopWork := context.WithCancel(lead)
					defer stopWork()
					defer context.AfterFunc(ctx, stopWork)()
					// It stops counting as the leader once it takes no new work:
					// a push forwarded to it then gets 503 (providers that retry
					// send it again; otherwise the next interval catches up).
					if !d.waitForSuspensions(work) || !d.waitForSyncResources(work) {
						return
					}
					d.leader.Store(true)
					defer context.AfterFunc(work, func() { d.leader.Store(false) })()
					d.run(work, lead)
					d.leader.Store(false)
				},
				OnStoppedLeading: func() {
					if led.Load() {
						d.leader.Store(false)
						d.log.Info("standing by", "identity", identity)
					}
				},
			},
		})
		if err != nil {
			stopElecting()
			return err
		}
		d.elector.Store(elector)
		// Asked to stop: a standby stops electing at once; a leader keeps
		// renewing until its term is over.
		// client-go starts OnStartedLeading in a goroutine of its own, so
		// led may not be set yet when the Lease was just acquired; a record
		// written for this daemon says it was, and that the term will start.
		leading := func() bool { return led.Load() || written.wrote.Load() }
		stopWhenDone := context.AfterFunc(ctx, func() {
			if leading() {
				<-termOver
			}
			stopElecting()
		})
		elector.Run(electing)
		stopWhenDone()
		stopElecting()
		if leading() {
			<-termOver
			if ctx.Err() != nil {
				d.releaseLease(lock, identity)
			}
		}
	}
	return nil
}

// writtenLock notes that a leader election record naming this daemon was
// written: client-go writes one only when it acquires or renews the Lease.
type writtenLock struct {
	resourcelock.Interface
	wrote atomic.Bool
}

// Create implements resourcelock.Interface.
func (l *writtenLock) Create(ctx context.Context, rec resourcelock.LeaderElectionRecord) error {
	err := l.Interface.Create(ctx, rec)
	if err == nil {
		l.wrote.Store(true)
	}
	return err
}

// Update implements resourcelock.Interface.
func (l *writtenLock) Update(ctx context.Context, rec resourcelock.LeaderElectionRecord) error {
	err := l.Interface.Update(ctx, rec)
	if err == nil {
		l.wrote.Store(true)
	}
	return err
}

// releaseLease gives up the Lease when this daemon still holds it, so that
// a standby takes over without waiting for it to lapse.
func (d *Daemon) releaseLease(lock *resourcelock.LeaseLock, identity string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rec, _, err := lock.Get(ctx)
	if err != nil || rec.HolderIdentity != identity {
		return
	}
	now := metav1.NewTime(time.Now())
	if err := lock.Update(ctx, resourcelock.LeaderElectionRecord{
		LeaderTransitions:    rec.LeaderTransitions,
		LeaseDurationSeconds: 1,
		RenewTime:            now,
		AcquireTime:          now,
	}); err != nil {
		d.log.Warn("could not release the Lease; a standby takes over when it lapses", "error", err)
		return
	}
	d.log.Info("released the Lease", "identity", identity)
}

// LeaderURL is where the leader serves its HTTP API, as it advertised in
// its Lease identity; empty when unknown or when this daemon leads.
func (d *Daemon) LeaderURL() string {
	e := d.elector.Load()
	if e == nil || d.Leader() {
		return ""
	}
	_, url, _ := strings.Cut(e.GetLeader(), " ")
	return url
}

// Leader reports whether this daemon reconciles (it holds the Lease, or
// there is no election).
func (d *Daemon) Leader() bool { return d.leader.Load() }
