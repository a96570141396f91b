package daemon

import (
	"context"
	"fmt"
	"os"
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
func (d *Daemon) RunElected(ctx context.Context) error {
	// Every replica follows the suspensions, so that its status shows them.
	if err := d.watchSuspensions(ctx); err != nil {
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
	lease := le.LeaseDuration.Duration
	if lease == 0 {
		lease = 15 * time.Second
	}
	if _, err := client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		return fmt.Errorf("leader election: namespace %s of the Lease: %w", ns, err)
	}
	d.started.Store(true)
	for ctx.Err() == nil {
		elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: &resourcelock.LeaseLock{
				LeaseMeta:  metav1.ObjectMeta{Name: leaseName, Namespace: ns},
				Client:     client.CoordinationV1(),
				LockConfig: resourcelock.ResourceLockConfig{Identity: identity},
			},
			LeaseDuration:   lease,
			RenewDeadline:   lease * 2 / 3,
			RetryPeriod:     lease / 6,
			ReleaseOnCancel: true,
			Name:            "gitk8s",
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					d.log.Info("leading", "identity", identity)
					d.leader.Store(true)
					_ = d.Run(ctx)
				},
				OnStoppedLeading: func() {
					d.leader.Store(false)
					d.log.Info("standing by", "identity", identity)
				},
			},
		})
		if err != nil {
			return err
		}
		elector.Run(ctx)
	}
	return nil
}

// Leader reports whether this daemon reconciles (it holds the Lease, or
// there is no election).
func (d *Daemon) Leader() bool { return d.leader.Load() }
