package reconcile

import (
	"sort"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/render"
)

// Federated is what became of one federated object across the clusters
// it was placed on.
type Federated struct {
	// Object names the Federated<Kind>; Source is its file; Target is the
	// object it expands to.
	Object string `json:"object"`
	Source string `json:"source"`
	Target string `json:"target"`
	// Clusters are the clusters it was placed on, with what happened there.
	Clusters []FederatedCluster `json:"clusters"`
	// Replicas is the replica plan of a ReplicaSchedulingPreference.
	Replicas map[string]int64 `json:"replicas,omitempty"`
	// Ready is true only when every selected cluster applied the object
	// and, where health was checked, it is healthy.
	Ready bool `json:"ready"`
	// Note explains an empty placement.
	Note string `json:"note,omitempty"`
}

// FederatedCluster is a federated object's part in one cluster.
type FederatedCluster struct {
	Cluster string `json:"cluster"`
	Action  string `json:"action,omitempty"`
	Health  string `json:"health,omitempty"`
	Message string `json:"message,omitempty"`
}

// FederatedStatus joins a run's placements with what happened in each
// cluster, sorted by object.
func (res *Result) FederatedStatus() []Federated {
	byCluster := map[string]*ClusterResult{}
	for i := range res.Clusters {
		byCluster[res.Clusters[i].Name] = &res.Clusters[i]
	}
	var out []Federated
	for _, p := range res.Placements {
		target := p.Target
		f := Federated{Object: p.Federated, Source: p.Source.String(), Replicas: p.Replicas, Note: p.Note,
			Target: render.Ref(target.GroupKind, target.Namespace, target.Name), Ready: len(p.Clusters) > 0}
		for _, name := range p.Clusters {
			st := FederatedCluster{Cluster: name}
			cr, ok := byCluster[name]
			switch {
			case !ok:
				st.Message = "cluster not in this run"
			case cr.ChangeSet == nil:
				st.Message = "not applied"
				if cr.Err != nil {
					st.Message = cr.Err.Error()
				}
			case cr.Reason == PolicyViolation:
				// The policy gate lets nothing be written there, in a dry
				// run as in a sync: what the plan would do is not done.
				st.Action = string(apply.Skipped)
			default:
				var entry *apply.ChangeSetEntry
				for _, e := range cr.ChangeSet.Entries {
					if e.ID == target {
						entry = e
					}
				}
				if entry == nil {
					st.Message = "not in the cluster's change set"
					break
				}
				st.Action, st.Health = string(entry.Action), string(entry.Health)
				if entry.Err != nil {
					st.Message = entry.Err.Error()
				} else if entry.Health != "" && entry.Health != "Current" {
					st.Message = entry.HealthMessage
				}
			}
			if st.Action == "" || st.Action == string(apply.Failed) || st.Action == string(apply.Skipped) || (st.Health != "" && st.Health != "Current") {
				f.Ready = false
			}
			f.Clusters = append(f.Clusters, st)
		}
		out = append(out, f)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Object < out[j].Object })
	return out
}
