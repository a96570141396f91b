package main

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/reconcile"
	"github.com/gitk8s/gitk8s/internal/source"
)

type diffOptions struct {
	sync       syncOptions
	againstRef string
	output     string
	color      string
}

func newDiffCommand(g *globalOptions, stdout, stderr io.Writer) *cobra.Command {
	o := &diffOptions{}
	cmd := &cobra.Command{
		Use:   "diff SRC [FILE...]",
		Short: "Show what apply would change, as a reviewer reads it",
		Long: `Diff plans an apply of SRC with server-side dry-run against each cluster and
prints, per object that would change, a unified diff of the normalized objects
(no managedFields, resourceVersion, uid, generation, status or timestamps),
the objects a prune would delete, and a summary. Secret values never appear:
each is replaced by a mask, the same value by the same mask.

With --against-ref REF it needs no cluster: it compares the objects rendered
from SRC with those rendered from revision REF of the same Git repository.

-o markdown prints a pull-request comment; -o json is stable for machines.
Exit status: 0 no changes, 1 changes, 2 an error (bad input, an object the
API server refuses, an unreachable cluster).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch o.output {
			case "text", "markdown", "json":
			default:
				return failWith(exitError, fmt.Errorf("-o %s: use text, markdown or json", o.output))
			}
			var report applyReport
			src := o.sync.src.take(args)
			if o.againstRef != "" {
				r, err := o.compare(cmd.Context(), src)
				if err != nil {
					return failWith(exitError, err)
				}
				report = r
			} else {
				req, release, err := o.sync.request(cmd, g, src, 0)
				if err != nil {
					return failWith(exitError, err)
				}
				defer release()
				req.DryRun = true
				res := reconcile.Run(cmd.Context(), req)
				if res.Clusters == nil {
					return failWith(exitError, res.Err)
				}
				report = newReport(res)
			}
			switch o.output {
			case "json":
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(report); err != nil {
					return failWith(exitError, err)
				}
			case "markdown":
				printDiffMarkdown(stdout, report)
			default:
				printDiffText(stdout, stderr, report, useColor(o.color, stdout))
			}
			code := exitOK
			for _, cr := range report.Clusters {
				switch {
				case cr.Error != "" || cr.Failed > 0 || cr.Blocked:
					code = max(code, exitError)
				case cr.changes || cr.PruneRefused != "":
					code = max(code, exitFailed)
				}
			}
			if code != exitOK {
				return failWith(code, nil)
			}
			return nil
		},
	}
	o.sync.addFlags(cmd, true)
	cmd.Flags().StringVar(&o.againstRef, "against-ref", "", "compare with this revision of the same Git repository instead of a cluster")
	cmd.Flags().StringVarP(&o.output, "output", "o", "text", "output format: text, markdown or json")
	cmd.Flags().StringVar(&o.color, "color", "auto", "color the text diff: auto, always or never")
	return cmd
}

// compare diffs SRC with revision --against-ref of the same repository,
// offline.
func (o *diffOptions) compare(ctx context.Context, src string) (applyReport, error) {
	if o.sync.configFile != "" {
		return applyReport{}, fmt.Errorf("--against-ref compares two revisions without a cluster, so --config has no meaning with it")
	}
	base := reconcile.SourceFunc(func(ctx context.Context) (*source.Snapshot, error) {
		opts, err := o.sync.src.openOptions()
		if err != nil {
			return nil, err
		}
		opts.Ref, opts.SemVer = o.againstRef, ""
		return source.Open(ctx, src, opts)
	})
	settings, err := o.sync.src.renderSettings()
	if err != nil {
		return applyReport{}, err
	}
	c, err := reconcile.Compare(ctx, o.sync.src.opener(src, o.sync.src.path), base, settings)
	if err != nil {
		return applyReport{}, err
	}
	cr := clusterReport{Cluster: c.ChangeSet.Cluster, Counts: map[string]int{}}.withChangeSet(c.ChangeSet)
	return applyReport{Source: c.Origin, Revision: c.Revision, Clusters: []clusterReport{cr}}, nil
}

// useColor decides whether to color text output.
func useColor(mode string, w io.Writer) bool {
	switch mode {
	case "always":
		return true
	case "never":
		return false
	}
	if os.Getenv("NO_COLOR") != "" {
		return false
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

const (
	colorRed   = "\x1b[31m"
	colorGreen = "\x1b[32m"
	colorCyan  = "\x1b[36m"
	colorBold  = "\x1b[1m"
	colorReset = "\x1b[0m"
)

var actionSigns = map[string]string{"created": "+", "configured": "~", "recreated": "±", "pruned": "-"}

func printDiffText(stdout, stderr io.Writer, report applyReport, color bool) {
	paint := func(c, s string) string {
		if !color {
			return s
		}
		return c + s + colorReset
	}
	defer func() {
		for _, l := range hookLines(report.Hooks) {
			fmt.Fprintf(stdout, "hook %s: runs on apply, not diffed\n", l)
		}
	}()
	for _, cr := range report.Clusters {
		if cr.Error != "" {
			fmt.Fprintln(stderr, cr.Error)
			continue
		}
		if len(report.Clusters) > 1 {
			fmt.Fprintln(stdout, paint(colorBold, "== cluster "+cr.Cluster))
		}
		printWarnings(stderr, cr.Warnings)
		printFindingsBrief(stderr, cr.Findings)
		if cr.Blocked {
			fmt.Fprintf(stderr, "cluster %s: policy violations: apply would write nothing\n", cr.Cluster)
		}
		for _, o := range cr.Objects {
			sign, ok := actionSigns[o.Action]
			if !ok {
				continue
			}
			fmt.Fprintln(stdout, paint(colorBold, fmt.Sprintf("%s %s (%s)", sign, o.ref(), o.Action)))
			for _, t := range o.TakenOver {
				fmt.Fprintf(stdout, "  takes over %s\n", t)
			}
			if len(o.Immutable) > 0 {
				fmt.Fprintf(stdout, "  immutable: %s; deleted and created again\n", strings.Join(o.Immutable, ", "))
			}
			for _, line := range strings.SplitAfter(o.Diff, "\n") {
				switch {
				case line == "":
				case strings.HasPrefix(line, "+++"), strings.HasPrefix(line, "---"):
					io.WriteString(stdout, paint(colorBold, strings.TrimSuffix(line, "\n"))+"\n")
				case strings.HasPrefix(line, "+"):
					io.WriteString(stdout, paint(colorGreen, strings.TrimSuffix(line, "\n"))+"\n")
				case strings.HasPrefix(line, "-"):
					io.WriteString(stdout, paint(colorRed, strings.TrimSuffix(line, "\n"))+"\n")
				case strings.HasPrefix(line, "@@"):
					io.WriteString(stdout, paint(colorCyan, strings.TrimSuffix(line, "\n"))+"\n")
				default:
					io.WriteString(stdout, line)
				}
			}
		}
		for _, o := range cr.Objects {
			if o.Error != "" {
				fmt.Fprintln(stderr, o.Error)
			}
		}
		if cr.PruneRefused != "" {
			fmt.Fprintln(stderr, cr.PruneRefused)
		}
		fmt.Fprintln(stdout, diffSummary(report, cr))
	}
}

// diffSummary is one line per cluster: what would happen to how many objects.
func diffSummary(report applyReport, cr clusterReport) string {
	rev := report.Source + " (directory)"
	if report.Revision != "" {
		rev = report.Source + " at " + report.Revision[:12]
	}
	var parts []string
	for _, a := range []apply.Action{apply.Created, apply.Configured, apply.Recreated, apply.Pruned, apply.Unchanged, apply.Kept, apply.Skipped, apply.Failed} {
		if n := cr.Counts[string(a)]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, diffVerb(a)))
		}
	}
	if len(parts) == 0 {
		parts = []string{"nothing"}
	}
	return fmt.Sprintf("%s → %s: %s", rev, cr.Cluster, strings.Join(parts, ", "))
}

func diffVerb(a apply.Action) string {
	switch a {
	case apply.Created:
		return "to create"
	case apply.Configured:
		return "to configure"
	case apply.Recreated:
		return "to recreate"
	case apply.Pruned:
		return "to prune"
	}
	return string(a)
}

// printDiffMarkdown writes a pull-request comment: a summary table, then a
// collapsible diff per object. Everything from the repository or a cluster
// (names, errors, diffs) is escaped for where it goes, so that a manifest
// cannot add markup, links or HTML to the comment.
func printDiffMarkdown(w io.Writer, report applyReport) {
	rev := markdownCode(report.Source)
	if report.Revision != "" {
		rev += " at " + markdownCode(report.Revision[:12])
	}
	fmt.Fprintf(w, "### gitk8s diff: %s\n\n", rev)
	fmt.Fprintln(w, "| cluster | create | configure | recreate | prune | unchanged | failed |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|")
	for _, cr := range report.Clusters {
		if cr.Error != "" {
			fmt.Fprintf(w, "| %s | error: %s ||||||\n", markdownCell(cr.Cluster), markdownCell(cr.Error))
			continue
		}
		c := cr.Counts
		fmt.Fprintf(w, "| %s | %d | %d | %d | %d | %d | %d |\n", markdownCell(cr.Cluster), c["created"], c["configured"], c["recreated"], c["pruned"], c["unchanged"], c["failed"])
	}
	for _, cr := range report.Clusters {
		var blocks []string
		for _, o := range cr.Objects {
			if o.Error != "" {
				blocks = append(blocks, fmt.Sprintf("**failed** %s: %s\n", markdownCode(o.ref()), markdownCell(o.Error)))
				continue
			}
			sign, ok := actionSigns[o.Action]
			if !ok {
				continue
			}
			var b strings.Builder
			fmt.Fprintf(&b, "<details><summary><code>%s %s</code> (%s)</summary>\n\n", sign, html.EscapeString(o.ref()), o.Action)
			for _, t := range o.TakenOver {
				fmt.Fprintf(&b, "takes over %s\n\n", markdownCode(t))
			}
			fence := codeFence(o.Diff)
			fmt.Fprintf(&b, "%sdiff\n%s%s\n</details>\n", fence, o.Diff, fence)
			blocks = append(blocks, b.String())
		}
		if cr.PruneRefused != "" {
			blocks = append(blocks, "**prune refused**: "+markdownCell(cr.PruneRefused)+"\n")
		}
		if len(blocks) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n#### %s\n\n%s", markdownCell(cr.Cluster), strings.Join(blocks, "\n"))
	}
	if lines := hookLines(report.Hooks); len(lines) > 0 {
		fmt.Fprintf(w, "\n#### Sync hooks an apply of this revision runs (not diffed)\n\n")
		for _, l := range lines {
			fmt.Fprintf(w, "- %s\n", markdownCode(l))
		}
	}
}

// markdownCell escapes text for a table cell or a line of prose: no table
// breaks, line breaks, HTML, links, emphasis or code spans of its own.
func markdownCell(s string) string {
	return strings.NewReplacer("|", "\\|", "\n", " ", "\r", " ", "<", "&lt;", ">", "&gt;", "&", "&amp;",
		"[", "\\[", "]", "\\]", "*", "\\*", "_", "\\_", "`", "\\`", "\\", "\\\\").Replace(s)
}

// markdownCode puts text in a code span whose backtick fence is longer
// than any run of backticks in it.
func markdownCode(s string) string {
	s = strings.NewReplacer("\n", " ", "\r", " ").Replace(s)
	fence := strings.Repeat("`", longestRun(s, '`')+1)
	return fence + " " + s + " " + fence
}

// codeFence is a fence for a code block that the text cannot close.
func codeFence(s string) string {
	return strings.Repeat("`", max(3, longestRun(s, '`')+1))
}

func longestRun(s string, c byte) int {
	longest, run := 0, 0
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	return longest
}
