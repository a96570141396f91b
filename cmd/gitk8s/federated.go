package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/gitk8s/gitk8s/internal/federation"
)

// federatedReport is the status of one federated object across the
// clusters it was placed on.
type federatedReport struct {
	Object   string                   `json:"object"`
	Source   string                   `json:"source"`
	Target   string                   `json:"target"`
	Clusters []federatedClusterStatus `json:"clusters"`
	Replicas map[string]int64         `json:"replicas,omitempty"`
	// Ready is true only when every selected cluster applied the object
	// and, where health was checked, it is healthy.
	Ready bool   `json:"ready"`
	Note  string `json:"note,omitempty"`
}

type federatedClusterStatus struct {
	Cluster string `json:"cluster"`
	Action  string `json:"action,omitempty"`
	Health  string `json:"health,omitempty"`
	Message string `json:"message,omitempty"`
}

// federatedReports joins placements with what happened in each cluster.
func federatedReports(placements []federation.Placement, clusters []clusterReport) []federatedReport {
	byCluster := map[string]clusterReport{}
	for _, cr := range clusters {
		byCluster[cr.Cluster] = cr
	}
	var out []federatedReport
	for _, p := range placements {
		target := p.Target
		fr := federatedReport{Object: p.Federated, Source: p.Source.String(), Replicas: p.Replicas, Note: p.Note,
			Target: objectReport{Kind: target.GroupKind.Kind, Namespace: target.Namespace, Name: target.Name}.ref()}
		fr.Ready = len(p.Clusters) > 0
		for _, c := range p.Clusters {
			st := federatedClusterStatus{Cluster: c}
			cr, ok := byCluster[c]
			switch {
			case !ok:
				st.Message = "cluster not in this run"
			case cr.Error != "":
				st.Message = cr.Error
			default:
				found := false
				for _, o := range cr.Objects {
					if o.Group == target.GroupKind.Group && o.Kind == target.GroupKind.Kind && o.Namespace == target.Namespace && o.Name == target.Name {
						st.Action, st.Health, found = o.Action, o.Health, true
						st.Message = o.Error
						if st.Message == "" {
							st.Message = o.Message
						}
					}
				}
				if !found {
					st.Message = "not in the cluster's change set"
				}
			}
			if st.Action == "" || st.Action == "failed" || st.Action == "skipped" || (st.Health != "" && st.Health != "Current") {
				fr.Ready = false
			}
			fr.Clusters = append(fr.Clusters, st)
		}
		out = append(out, fr)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Object < out[j].Object })
	return out
}

func printFederated(w io.Writer, reports []federatedReport) {
	if len(reports) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FEDERATED\tCLUSTERS\tSTATUS")
	for _, r := range reports {
		var names []string
		for _, c := range r.Clusters {
			n := c.Cluster
			if rep, ok := r.Replicas[c.Cluster]; ok {
				n += fmt.Sprintf("(%d)", rep)
			}
			names = append(names, n)
		}
		status := "NotReady"
		if r.Ready {
			status = "Ready"
		}
		clusters := strings.Join(names, ",")
		if clusters == "" {
			clusters = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Object, clusters, status)
	}
	tw.Flush()
	for _, r := range reports {
		if r.Note != "" {
			fmt.Fprintf(w, "%s: %s %s\n", r.Source, r.Object, r.Note)
		}
		for _, c := range r.Clusters {
			if c.Message != "" {
				fmt.Fprintf(w, "%s: %s in %s: %s\n", r.Source, r.Object, c.Cluster, c.Message)
			}
		}
	}
}
