package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/health"
)

type applyOptions struct {
	src         sourceOptions
	wait        time.Duration
	dryRun      bool
	output      string
	concurrency int
}

func newApplyCommand(g *globalOptions, stdout, stderr io.Writer) *cobra.Command {
	o := &applyOptions{}
	cmd := &cobra.Command{
		Use:   "apply SRC",
		Short: "Apply the objects rendered from SRC with server-side apply",
		Long: `Apply renders SRC, dry-runs every object against each cluster, and writes
only when every dry-run passed: first Namespaces and CRDs, then cluster-scoped
RBAC, then the rest. Objects without a namespace go to the context's namespace.
With --wait it then waits until every object is healthy (kstatus, strict).

Exit status: 0 applied (and healthy with --wait), 1 an object failed or is not
healthy, 2 bad input or an unreachable cluster.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.output != "text" && o.output != "json" {
				return failWith(exitError, fmt.Errorf("-o %s: use text or json", o.output))
			}
			snap, bundle, err := o.src.load(args[0])
			if err != nil {
				return failWith(exitError, err)
			}
			defer snap.Close()
			targets, err := g.targets()
			if err != nil {
				return failWith(exitError, err)
			}
			opts := apply.DefaultOptions()
			opts.DryRun = o.dryRun
			if o.concurrency > 0 {
				opts.Concurrency = o.concurrency
			}
			report := applyReport{Source: snap.Origin, Revision: snap.Revision}
			code := exitOK
			for _, t := range targets {
				cr := clusterReport{Cluster: t.Name}
				cs, err := apply.NewManager(t, opts).Apply(cmd.Context(), bundle.Objects)
				if err != nil {
					cr.Error = err.Error()
					code = exitError
				}
				var hr *health.Result
				if cs != nil && err == nil && !cs.Failed() && o.wait > 0 && !o.dryRun {
					res, werr := health.Wait(cmd.Context(), t, resourcesOf(cs), health.Options{Timeout: o.wait, Concurrency: opts.Concurrency})
					if werr != nil {
						return failWith(exitError, werr)
					}
					hr = &res
				}
				cr.fill(cs, hr)
				if cr.Failed > 0 || cr.Unhealthy > 0 {
					code = max(code, exitFailed)
				}
				report.Clusters = append(report.Clusters, cr)
			}
			if o.output == "json" {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(report); err != nil {
					return failWith(exitError, err)
				}
			} else {
				printApplyText(stdout, stderr, report, o.wait > 0 && !o.dryRun, o.dryRun)
			}
			if code != exitOK {
				return failWith(code, nil)
			}
			return nil
		},
	}
	o.src.addFlags(cmd)
	cmd.Flags().DurationVar(&o.wait, "wait", 0, "wait up to this long for every object to be healthy (0: do not wait)")
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "plan with server-side dry-run; write nothing")
	cmd.Flags().StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	cmd.Flags().IntVar(&o.concurrency, "concurrency", 0, "requests in flight per cluster (default 16)")
	return cmd
}

// resourcesOf lists the objects of a change set that health should watch.
func resourcesOf(cs *apply.ChangeSet) []health.Resource {
	var out []health.Resource
	for _, e := range cs.Entries {
		if e.Action == apply.Failed || e.Action == apply.Skipped || e.GVR.Resource == "" {
			continue
		}
		out = append(out, health.Resource{ID: e.ID, GVR: e.GVR, Namespaced: e.Namespaced})
	}
	return out
}

// applyReport is the result of an apply, as printed with -o json.
type applyReport struct {
	Source   string          `json:"source"`
	Revision string          `json:"revision,omitempty"`
	Clusters []clusterReport `json:"clusters"`
}

type clusterReport struct {
	Cluster   string         `json:"cluster"`
	Error     string         `json:"error,omitempty"`
	Objects   []objectReport `json:"objects"`
	Counts    map[string]int `json:"counts"`
	Failed    int            `json:"failed"`
	Unhealthy int            `json:"unhealthy"`
}

type objectReport struct {
	Group     string `json:"group,omitempty"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Source    string `json:"source"`
	Action    string `json:"action"`
	Health    string `json:"health,omitempty"`
	Message   string `json:"message,omitempty"`
	Error     string `json:"error,omitempty"`
}

func (cr *clusterReport) fill(cs *apply.ChangeSet, hr *health.Result) {
	cr.Counts = map[string]int{}
	if cs == nil {
		return
	}
	healthOf := map[string]health.ObjectStatus{}
	if hr != nil {
		for _, s := range hr.Objects {
			healthOf[s.Resource.ID.String()] = s
		}
	}
	for _, e := range cs.Entries {
		or := objectReport{
			Group: e.ID.GroupKind.Group, Kind: e.ID.GroupKind.Kind, Namespace: e.ID.Namespace, Name: e.ID.Name,
			Source: e.Source.String(), Action: string(e.Action),
		}
		if e.Err != nil {
			or.Error = e.Err.Error()
			cr.Failed++
		}
		if s, ok := healthOf[e.ID.String()]; ok {
			or.Health = string(s.Status)
			if !s.Healthy() {
				or.Message = s.Message
				cr.Unhealthy++
			}
		}
		cr.Counts[string(e.Action)]++
		cr.Objects = append(cr.Objects, or)
	}
}

func printApplyText(stdout, stderr io.Writer, report applyReport, withHealth, dryRun bool) {
	for _, cr := range report.Clusters {
		if cr.Error != "" {
			fmt.Fprintf(stderr, "cluster %s: %s\n", cr.Cluster, cr.Error)
			continue
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		header := "KIND\tNAMESPACE\tNAME\tACTION"
		if withHealth {
			header += "\tHEALTH"
		}
		fmt.Fprintln(tw, header)
		for _, o := range cr.Objects {
			ns := o.Namespace
			if ns == "" {
				ns = "-"
			}
			line := fmt.Sprintf("%s\t%s\t%s\t%s", o.Kind, ns, o.Name, o.Action)
			if withHealth {
				h := o.Health
				if h == "" {
					h = "-"
				}
				line += "\t" + h
			}
			fmt.Fprintln(tw, line)
		}
		tw.Flush()
		for _, o := range cr.Objects {
			if o.Error != "" {
				fmt.Fprintf(stderr, "%s\n", o.Error)
			}
		}
		for _, o := range cr.Objects {
			if o.Message != "" {
				fmt.Fprintf(stderr, "%s: %s/%s/%s not healthy: %s: %s\n", o.Source, o.Kind, o.Namespace, o.Name, o.Health, o.Message)
			}
		}
		fmt.Fprintln(stdout, summaryLine(report, cr, withHealth, dryRun))
	}
}

// summaryLine is the one-line result for one cluster.
func summaryLine(report applyReport, cr clusterReport, withHealth, dryRun bool) string {
	rev := report.Source + " (directory)"
	if report.Revision != "" {
		rev = report.Source + " at " + report.Revision[:12]
	}
	var parts []string
	actions := make([]string, 0, len(cr.Counts))
	for a := range cr.Counts {
		actions = append(actions, a)
	}
	sort.Slice(actions, func(i, j int) bool { return actionOrder(actions[i]) < actionOrder(actions[j]) })
	for _, a := range actions {
		parts = append(parts, fmt.Sprintf("%d %s", cr.Counts[a], a))
	}
	line := fmt.Sprintf("%s → %s: %d objects: %s", rev, cr.Cluster, len(cr.Objects), strings.Join(parts, ", "))
	if dryRun {
		line += " (dry run, nothing written)"
	}
	if withHealth {
		line += fmt.Sprintf("; %d healthy, %d not", len(cr.Objects)-cr.Failed-cr.Unhealthy-cr.Counts[string(apply.Skipped)], cr.Unhealthy)
	}
	return line
}

func actionOrder(a string) int {
	for i, x := range []apply.Action{apply.Created, apply.Configured, apply.Unchanged, apply.Skipped, apply.Failed} {
		if string(x) == a {
			return i
		}
	}
	return 99
}
