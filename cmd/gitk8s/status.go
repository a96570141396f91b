package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/cluster"
)

type statusReport struct {
	Cluster     string            `json:"cluster"`
	Server      string            `json:"server"`
	State       string            `json:"state"`
	Reason      string            `json:"reason,omitempty"`
	Inventories []inventoryReport `json:"inventories,omitempty"`
}

type inventoryReport struct {
	Name       string   `json:"name"`
	Namespace  string   `json:"namespace"`
	ID         string   `json:"id"`
	Tooling    string   `json:"tooling"`
	Kinds      []string `json:"kinds"`
	Namespaces []string `json:"namespaces,omitempty"`
}

func newStatusCommand(g *globalOptions, stdout io.Writer) *cobra.Command {
	var output, namespace string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show each cluster's state and the inventories gitk8s keeps there",
		Long: `Status probes every cluster (/readyz: Ready, Offline or Unauthorized) and
lists the ApplySet inventories in --inventory-namespace: what each source
applied, by kind and namespace.

Exit status: 0 every cluster is Ready, 1 some cluster is not, 2 error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			targets, err := g.targets()
			if err != nil {
				return failWith(exitError, err)
			}
			reports := make([]statusReport, len(targets))
			var wg sync.WaitGroup
			for i, t := range targets {
				wg.Go(func() {
					h := cluster.Probe(cmd.Context(), t)
					reports[i] = statusReport{Cluster: t.Name, Server: t.Server, State: string(h.State), Reason: h.Reason}
					if h.State != cluster.Ready {
						return
					}
					list, err := t.Metadata.Resource(schema.GroupVersionResource{Version: "v1", Resource: "secrets"}).Namespace(namespace).
						List(cmd.Context(), metav1.ListOptions{LabelSelector: apply.LabelApplySetID})
					if err != nil {
						reports[i].Reason = "cannot list inventories: " + err.Error()
						return
					}
					for _, item := range list.Items {
						ann := item.Annotations
						reports[i].Inventories = append(reports[i].Inventories, inventoryReport{
							Name: item.Name, Namespace: item.Namespace, ID: item.Labels[apply.LabelApplySetID],
							Tooling:    ann[apply.AnnotationTooling],
							Kinds:      splitNonEmpty(ann[apply.AnnotationContainsGroupKinds]),
							Namespaces: splitNonEmpty(ann[apply.AnnotationAdditionalNamespaces]),
						})
					}
					sort.Slice(reports[i].Inventories, func(a, b int) bool { return reports[i].Inventories[a].Name < reports[i].Inventories[b].Name })
				})
			}
			wg.Wait()
			if output == "json" {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(reports); err != nil {
					return failWith(exitError, err)
				}
			} else {
				tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "CLUSTER\tSTATE\tINVENTORY\tKINDS\tNAMESPACES")
				for _, r := range reports {
					if len(r.Inventories) == 0 {
						fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\n", r.Cluster, r.State)
					}
					for _, inv := range r.Inventories {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", r.Cluster, r.State, inv.Name, len(inv.Kinds), strings.Join(inv.Namespaces, ","))
					}
				}
				tw.Flush()
				for _, r := range reports {
					if r.Reason != "" {
						fmt.Fprintf(stdout, "%s: %s\n", r.Cluster, r.Reason)
					}
				}
			}
			for _, r := range reports {
				if r.State != string(cluster.Ready) {
					return failWith(exitFailed, nil)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().StringVar(&namespace, "inventory-namespace", apply.DefaultInventoryNamespace, "namespace of the inventory Secrets")
	return cmd
}

func splitNonEmpty(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}
