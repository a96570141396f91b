package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/cluster"
	"github.com/gitk8s/gitk8s/internal/daemon"
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
	var output, namespace, daemonURL string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show each cluster's state and the inventories gitk8s keeps there",
		Long: `Status probes every cluster (/readyz: Ready, Offline or Unauthorized) and
lists the ApplySet inventories in --inventory-namespace: what each source
applied, by kind and namespace.

Exit status: 0 every cluster is Ready, 1 some cluster is not, 2 error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if daemonURL != "" {
				return daemonStatus(stdout, daemonURL, output)
			}
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
					inventories, err := apply.ListInventories(cmd.Context(), t, namespace)
					if err != nil {
						reports[i].Reason = "cannot list inventories: " + err.Error()
						return
					}
					for _, inv := range inventories {
						reports[i].Inventories = append(reports[i].Inventories, inventoryReport{Name: inv.Name, Namespace: inv.Namespace, ID: inv.ID,
							Tooling: inv.Tooling, Kinds: inv.Kinds, Namespaces: inv.Namespaces})
					}
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
	cmd.Flags().StringVar(&daemonURL, "daemon", "", "show the syncs of a running daemon instead (its address, such as http://gitk8s.gitk8s-system:9292)")
	return cmd
}

// daemonStatus shows a daemon's syncs from its /api/v1/syncs.
func daemonStatus(stdout io.Writer, base, output string) error {
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(strings.TrimSuffix(base, "/") + "/api/v1/syncs")
	if err != nil {
		return failWith(exitError, fmt.Errorf("daemon %s: %w", base, err))
	}
	defer resp.Body.Close()
	var body struct {
		Leader bool                `json:"leader"`
		Syncs  []daemon.SyncStatus `json:"syncs"`
	}
	if resp.StatusCode != http.StatusOK {
		return failWith(exitError, fmt.Errorf("daemon %s: %s", base, resp.Status))
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return failWith(exitError, fmt.Errorf("daemon %s: %w", base, err))
	}
	if output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(body)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SYNC\tREADY\tREASON\tAPPLIED\tATTEMPTED\tLAST ERROR")
	failing := false
	for _, s := range body.Syncs {
		c := s.Condition("Ready")
		if c.Status != "True" {
			failing = true
		}
		short := func(r string) string {
			if len(r) > 12 {
				return r[:12]
			}
			return r
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, c.Status, c.Reason, short(s.LastAppliedRevision), short(s.LastAttemptedRevision), s.LastError)
	}
	tw.Flush()
	for _, s := range body.Syncs {
		if !s.Suspended {
			continue
		}
		line := s.Name + ": suspended"
		if s.SuspendedBy != "" {
			line += " by " + s.SuspendedBy
		}
		if !s.SuspendedAt.IsZero() {
			line += " at " + s.SuspendedAt.UTC().Format(time.RFC3339)
		}
		if s.SuspendedReason != "" {
			line += ": " + s.SuspendedReason
		}
		fmt.Fprintln(stdout, line)
	}
	if !body.Leader {
		fmt.Fprintln(stdout, "(this daemon stands by; the leader reconciles)")
	}
	if failing {
		return failWith(exitFailed, nil)
	}
	return nil
}
