package reconcile

import (
	"context"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/cluster"
	"github.com/gitk8s/gitk8s/internal/source"
)

// Source opens the snapshot a run reads. The run closes it.
type Source interface {
	Open(ctx context.Context) (*source.Snapshot, error)
}

// SourceFunc is a function as a Source.
type SourceFunc func(ctx context.Context) (*source.Snapshot, error)

// Open calls f.
func (f SourceFunc) Open(ctx context.Context) (*source.Snapshot, error) { return f(ctx) }

// Request is one run of one sync.
type Request struct {
	// Name is the sync's name; its inventory is InventoryName(Name) unless
	// Settings.Inventory names another.
	Name string
	// Source opens the snapshot.
	Source Source
	// Settings say how to render, check, apply and prune.
	Settings Settings
	// Clusters are the sync's clusters, in the order results are wanted.
	Clusters []Cluster
	// DryRun plans with server-side dry-run and writes nothing.
	DryRun bool
	// Memory remembers what was applied, so that unchanged objects cost
	// nothing; nil dry-runs every object.
	Memory apply.Memory
	// Hooks let a driver observe the run.
	Hooks Hooks
	// Protected are objects the bundle must not hold; a bundle that does
	// is refused (PlanFailed) in every cluster before anything is written.
	Protected []Protected
}

// Cluster is one cluster of a sync.
type Cluster struct {
	// Name is the cluster's name in results and placements.
	Name string
	// Labels select federated placements.
	Labels map[string]string
	// Target reaches the cluster; nil when it could not be built, and
	// then Unavailable says why.
	Target      *cluster.Target
	Unavailable error
}

// Clusters turns targets into a request's clusters.
func Clusters(targets []*cluster.Target) []Cluster {
	out := make([]Cluster, len(targets))
	for i, t := range targets {
		out[i] = Cluster{Name: t.Name, Labels: t.Labels, Target: t}
	}
	return out
}

// Hooks are called while a run goes on; any may be nil. They are called
// from the goroutine of the cluster concerned.
type Hooks struct {
	// Rendered is called once the objects are known, with their count.
	Rendered func(objects int)
	// Applying is called before a cluster's apply starts; the function it
	// returns is called when the apply has ended.
	Applying func(clusterName string) (done func())
	// ClusterDone is called with a cluster's result as soon as it is
	// known, before the run ends; target is nil for a cluster that was
	// never reached.
	ClusterDone func(target *cluster.Target, result *ClusterResult)
}
