package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/gitk8s/gitk8s/internal/reconcile"
)

// printFederated writes where each federated object went and whether it
// is ready there.
func printFederated(w io.Writer, reports []reconcile.Federated) {
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
