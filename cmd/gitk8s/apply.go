package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/policy"
	"github.com/gitk8s/gitk8s/internal/reconcile"
	"github.com/gitk8s/gitk8s/internal/source"
)

type applyOptions struct {
	sync   syncOptions
	wait   time.Duration
	dryRun bool
	output string
	watch  bool
}

func newApplyCommand(g *globalOptions, stdout, stderr io.Writer) *cobra.Command {
	o := &applyOptions{}
	cmd := &cobra.Command{
		Use:   "apply SRC [FILE...]",
		Short: "Apply the objects rendered from SRC with server-side apply",
		Long: `Apply renders SRC, dry-runs every object against each cluster, and writes
only when every dry-run passed: first Namespaces and CRDs, then cluster-scoped
RBAC, then the rest, wave by wave (annotation gitk8s.io/wave), each wave
healthy before the next. Objects without a namespace go to the context's
namespace. Every object is labelled as a member of an ApplySet whose parent
is the inventory Secret; with --prune, members no longer rendered are deleted,
within the prune guards. With --wait it then waits until every object is
healthy (kstatus, strict).

Exit status: 0 applied (and healthy with --wait), 1 an object failed, is not
healthy, or a prune was refused, 2 bad input or an unreachable cluster.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.output != "text" && o.output != "json" {
				return failWith(exitError, fmt.Errorf("-o %s: use text or json", o.output))
			}
			src := o.sync.src.take(args)
			if o.sync.prune && o.sync.syncName == "" && o.sync.src.readsStdin(src) {
				return failWith(exitError, fmt.Errorf("--prune with SRC - needs --sync NAME: every apply from standard input would otherwise share one inventory and prune the others' objects"))
			}
			if !o.watch {
				return o.applyOnce(cmd, g, src, stdout, stderr)
			}
			if len(args) > 1 || o.sync.src.readsStdin(src) {
				return failWith(exitError, fmt.Errorf("--watch works on one local directory, not on files or standard input"))
			}
			if source.IsRemote(args[0]) {
				return failWith(exitError, fmt.Errorf("--watch works on a local directory, not on %s", source.Redact(args[0])))
			}
			if _, err := os.Stat(filepath.Join(args[0], ".git")); err == nil {
				return failWith(exitError, fmt.Errorf("--watch reads a directory as it is on disk, but %s is a Git repository, which is read at a commit; point --watch at a folder without .git", args[0]))
			}
			// Apply now, then after every burst of changes; a failure is
			// reported and the last good state stays applied.
			o.applyAndReport(cmd, g, args[0], stdout, stderr)
			fmt.Fprintf(stderr, "watching %s for changes (Ctrl-C to stop)\n", args[0])
			err := source.Watch(cmd.Context(), args[0], 300*time.Millisecond, func() {
				fmt.Fprintf(stderr, "change in %s: applying\n", args[0])
				o.applyAndReport(cmd, g, args[0], stdout, stderr)
			})
			if err != nil {
				return failWith(exitError, err)
			}
			return nil
		},
	}
	o.sync.addFlags(cmd, false)
	cmd.Flags().DurationVar(&o.wait, "wait", 0, "wait up to this long for every object to be healthy (0: do not wait)")
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "plan with server-side dry-run; write nothing")
	cmd.Flags().StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	cmd.Flags().BoolVar(&o.watch, "watch", false, "keep running: re-render and re-apply SRC (a local directory) whenever a file in it changes")
	return cmd
}

// applyAndReport applies once for --watch, which goes on after a failure:
// an error that stopped the apply is printed, not returned.
func (o *applyOptions) applyAndReport(cmd *cobra.Command, g *globalOptions, src string, stdout, stderr io.Writer) {
	var ce *codeError
	if err := o.applyOnce(cmd, g, src, stdout, stderr); errors.As(err, &ce) && ce.err != nil {
		fmt.Fprintln(stderr, "error:", ce.err)
	}
}

// applyOnce renders, applies and prints once.
func (o *applyOptions) applyOnce(cmd *cobra.Command, g *globalOptions, src string, stdout, stderr io.Writer) error {
	req, release, err := o.sync.request(cmd, g, src, o.wait)
	if err != nil {
		return failWith(exitError, err)
	}
	defer release()
	req.DryRun = o.dryRun
	res := reconcile.Run(cmd.Context(), req)
	if res.Clusters == nil {
		return failWith(exitError, res.Err)
	}
	report := newReport(res)
	code := exitOK
	for _, cr := range report.Clusters {
		code = max(code, cr.exitCode())
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
}

// newReport is the report of an engine run that reached its clusters.
func newReport(res *reconcile.Result) applyReport {
	report := applyReport{Sync: res.Name, Source: res.Origin, Revision: res.Revision}
	for i := range res.Clusters {
		report.Clusters = append(report.Clusters, newClusterReport(&res.Clusters[i]))
	}
	report.Federated = res.FederatedStatus()
	for _, h := range res.Hooks {
		phases := make([]string, len(h.Phases))
		for i, p := range h.Phases {
			phases[i] = string(p)
		}
		report.Hooks = append(report.Hooks, plannedHookReport{Phases: phases, Object: h.Ref, Source: h.Source})
	}
	return report
}

// plannedHookReport is a sync hook of the revision, which an apply runs
// and a diff lists without diffing.
type plannedHookReport struct {
	Phases []string `json:"phases"`
	Object string   `json:"object"`
	Source string   `json:"source"`
}

// hookLines lists the revision's hooks for a diff, one per line.
func hookLines(hooks []plannedHookReport) []string {
	var lines []string
	for _, h := range hooks {
		lines = append(lines, fmt.Sprintf("%s %s (%s)", strings.Join(h.Phases, ","), h.Object, h.Source))
	}
	return lines
}

// applyReport is the result of an apply or diff, as printed with -o json.
type applyReport struct {
	// Sync names the sync; its inventory is named after it.
	Sync      string                `json:"sync,omitempty"`
	Source    string                `json:"source"`
	Revision  string                `json:"revision,omitempty"`
	Clusters  []clusterReport       `json:"clusters"`
	Federated []reconcile.Federated `json:"federated,omitempty"`
	// Hooks are the revision's sync hooks: run by an apply, listed by a
	// diff.
	Hooks []plannedHookReport `json:"plannedHooks,omitempty"`
}

type clusterReport struct {
	Cluster string `json:"cluster"`
	// Reason is the engine's: Succeeded, ClusterUnavailable,
	// PolicyViolation, PlanFailed, ApplyFailed, PruneRefused,
	// HealthCheckFailed or HookFailed, as the daemon reports it.
	Reason string `json:"reason,omitempty"`
	// Error is set when the cluster could not be synced at all.
	Error         string           `json:"error,omitempty"`
	Warnings      []string         `json:"warnings,omitempty"`
	Inventory     string           `json:"inventory,omitempty"`
	Objects       []objectReport   `json:"objects"`
	Counts        map[string]int   `json:"counts"`
	Failed        int              `json:"failed"`
	Unhealthy     int              `json:"unhealthy"`
	PruneRefused  string           `json:"pruneRefused,omitempty"`
	UnhealthyWave *int             `json:"unhealthyWave,omitempty"`
	Findings      []policy.Finding `json:"findings,omitempty"`
	// Blocked is set when policy findings stopped the sync: nothing was written.
	Blocked bool `json:"blocked,omitempty"`
	// Hooks are the sync hooks that ran; HookError says which failed.
	Hooks     []hookReport `json:"hooks,omitempty"`
	HookError string       `json:"hookError,omitempty"`
	changes   bool
}

// hookReport is one sync hook that ran.
type hookReport struct {
	Phase     string `json:"phase"`
	Object    string `json:"object"`
	Source    string `json:"source"`
	Succeeded bool   `json:"succeeded"`
	Deleted   bool   `json:"deleted,omitempty"`
	Error     string `json:"error,omitempty"`
}

type objectReport struct {
	Group     string   `json:"group,omitempty"`
	Kind      string   `json:"kind"`
	Namespace string   `json:"namespace,omitempty"`
	Name      string   `json:"name"`
	Source    string   `json:"source,omitempty"`
	Wave      int      `json:"wave,omitempty"`
	Action    string   `json:"action"`
	Health    string   `json:"health,omitempty"`
	Message   string   `json:"message,omitempty"`
	Error     string   `json:"error,omitempty"`
	TakenOver []string `json:"takenOver,omitempty"`
	Immutable []string `json:"immutable,omitempty"`
	Diff      string   `json:"diff,omitempty"`
}

func (o objectReport) ref() string {
	if o.Namespace == "" {
		return o.Kind + "/" + o.Name
	}
	return o.Kind + "/" + o.Namespace + "/" + o.Name
}

func newClusterReport(res *reconcile.ClusterResult) clusterReport {
	cr := clusterReport{Cluster: res.Name, Reason: string(res.Reason), Counts: map[string]int{}, Findings: res.Findings,
		Blocked: res.Reason == reconcile.PolicyViolation, Warnings: res.Warnings}
	if res.Err != nil && (res.Stopped || res.Reason == reconcile.ClusterUnavailable) {
		cr.Error = res.Err.Error()
	}
	for _, h := range res.Hooks {
		hr := hookReport{Phase: string(h.Phase), Object: h.Ref, Source: h.Source.String(), Succeeded: h.Succeeded, Deleted: h.Deleted}
		if h.Err != nil {
			hr.Error = h.Err.Error()
		}
		cr.Hooks = append(cr.Hooks, hr)
	}
	if res.Reason == reconcile.HookFailed && res.Err != nil {
		cr.HookError = res.Err.Error()
	}
	return cr.withChangeSet(res.ChangeSet)
}

// withChangeSet adds a change set's objects to the report.
func (cr clusterReport) withChangeSet(cs *apply.ChangeSet) clusterReport {
	if cs == nil {
		return cr
	}
	cr.Inventory = cs.InventoryID
	cr.changes = cs.HasChanges()
	cr.UnhealthyWave = cs.UnhealthyWave
	if cs.PruneRefused != nil {
		cr.PruneRefused = cs.PruneRefused.Error()
	}
	for _, e := range cs.Entries {
		or := objectReport{
			Group: e.ID.GroupKind.Group, Kind: e.ID.GroupKind.Kind, Namespace: e.ID.Namespace, Name: e.ID.Name,
			Source: e.Source.String(), Wave: e.Wave, Action: string(e.Action), Diff: e.Diff, Immutable: e.Immutable,
		}
		for _, c := range e.Conflicts {
			or.TakenOver = append(or.TakenOver, c.Field+": "+c.Message)
		}
		if e.Err != nil {
			or.Error = e.Err.Error()
			cr.Failed++
		}
		if e.Health != "" {
			or.Health = string(e.Health)
			if e.Health != "Current" {
				or.Message = e.HealthMessage
				cr.Unhealthy++
			}
		}
		cr.Counts[string(e.Action)]++
		cr.Objects = append(cr.Objects, or)
	}
	return cr
}

// printWarnings writes problems that did not stop the run.
func printWarnings(w io.Writer, warnings []string) {
	for _, msg := range warnings {
		fmt.Fprintln(w, "warning:", msg)
	}
}

func (cr clusterReport) exitCode() int {
	switch {
	case cr.Error != "":
		return exitError
	case cr.Blocked || cr.Failed > 0 || cr.Unhealthy > 0 || cr.PruneRefused != "" || cr.UnhealthyWave != nil || cr.HookError != "":
		return exitFailed
	}
	return exitOK
}

func printApplyText(stdout, stderr io.Writer, report applyReport, withHealth, dryRun bool) {
	defer printFederated(stdout, report.Federated)
	for _, cr := range report.Clusters {
		if len(report.Clusters) > 1 {
			fmt.Fprintf(stdout, "== cluster %s\n", cr.Cluster)
		}
		if cr.Error != "" {
			fmt.Fprintln(stderr, cr.Error)
			continue
		}
		printWarnings(stderr, cr.Warnings)
		printFindingsBrief(stderr, cr.Findings)
		if cr.Blocked {
			fmt.Fprintf(stderr, "cluster %s: policy violations: nothing was applied\n", cr.Cluster)
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
			for _, t := range o.TakenOver {
				fmt.Fprintf(stdout, "%s: took over %s\n", o.ref(), t)
			}
		}
		for _, o := range cr.Objects {
			if o.Error != "" {
				fmt.Fprintf(stderr, "%s\n", o.Error)
			}
		}
		for _, o := range cr.Objects {
			if o.Message != "" {
				fmt.Fprintf(stderr, "%s: %s not healthy: %s: %s\n", o.Source, o.ref(), o.Health, o.Message)
			}
		}
		if cr.UnhealthyWave != nil {
			fmt.Fprintf(stderr, "wave %d is not healthy; later waves were not applied and nothing was pruned\n", *cr.UnhealthyWave)
		}
		if cr.PruneRefused != "" {
			fmt.Fprintln(stderr, cr.PruneRefused)
		}
		for _, h := range cr.Hooks {
			state := "succeeded"
			if !h.Succeeded {
				state = "failed"
			}
			if h.Deleted {
				state += ", deleted"
			}
			fmt.Fprintf(stdout, "hook %s %s: %s\n", h.Phase, h.Object, state)
		}
		if cr.HookError != "" {
			fmt.Fprintln(stderr, cr.HookError)
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
	actions := make([]string, 0, len(cr.Counts))
	for a := range cr.Counts {
		actions = append(actions, a)
	}
	sort.Slice(actions, func(i, j int) bool { return actionOrder(actions[i]) < actionOrder(actions[j]) })
	var parts []string
	for _, a := range actions {
		parts = append(parts, fmt.Sprintf("%d %s", cr.Counts[a], a))
	}
	line := fmt.Sprintf("%s → %s: %d objects: %s", rev, cr.Cluster, len(cr.Objects), strings.Join(parts, ", "))
	if dryRun {
		line += " (dry run, nothing written)"
	}
	if withHealth {
		healthy := 0
		for _, o := range cr.Objects {
			if o.Health == "Current" {
				healthy++
			}
		}
		line += fmt.Sprintf("; %d healthy, %d not", healthy, cr.Unhealthy)
	}
	return line
}

func actionOrder(a string) int {
	for i, x := range []apply.Action{apply.Created, apply.Configured, apply.Recreated, apply.Unchanged, apply.Pruned, apply.Kept, apply.Skipped, apply.Failed} {
		if string(x) == a {
			return i
		}
	}
	return 99
}
