package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gitk8s/gitk8s/internal/policy"
	"github.com/gitk8s/gitk8s/internal/reconcile"
)

// policyOptions are the policy gate's flags.
type policyOptions struct {
	modes   map[string]string
	builtin string
	dirs    []string
	exclude []string
	off     bool
}

func (o *policyOptions) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringToStringVar(&o.modes, "policy", nil, "rule=enforce|warn|off, repeatable (see docs/policies.md)")
	cmd.Flags().StringVar(&o.builtin, "policy-builtin", "", "mode of every built-in rule --policy does not name: enforce (default), warn or off")
	cmd.Flags().StringArrayVar(&o.dirs, "policy-dir", nil, "folder of the repository with admission policies to evaluate, repeatable (default: policies/ when it exists); a folder named must exist")
	cmd.Flags().StringArrayVar(&o.exclude, "policy-exclude-namespace", nil, "namespace the policies do not check (repeatable)")
	cmd.Flags().BoolVar(&o.off, "no-policy", false, "skip the policy gate")
}

// settings are the gate's settings as the engine reads them.
func (o *policyOptions) settings() reconcile.PolicySettings {
	return reconcile.PolicySettings{Off: o.off, Dirs: o.dirs,
		Settings: policy.Settings{Builtin: o.builtin, Modes: o.modes, ExcludeNamespaces: o.exclude}}
}

// maxWarnings is how many warnings apply and diff print before they
// summarize the rest; validate prints them all.
const maxWarnings = 10

// printFindingsBrief writes every error and the first warnings, then how
// many warnings it left out.
func printFindingsBrief(w io.Writer, findings []policy.Finding) {
	var shown []policy.Finding
	hidden := 0
	warnings := 0
	for _, f := range findings {
		if f.Severity == policy.Warning {
			warnings++
			if warnings > maxWarnings {
				hidden++
				continue
			}
		}
		shown = append(shown, f)
	}
	printFindings(w, shown)
	if hidden > 0 {
		fmt.Fprintf(w, "… and %d more policy warnings; `gitk8s validate` lists them all\n", hidden)
	}
}

// printFindings writes findings grouped by file, errors first in each file.
func printFindings(w io.Writer, findings []policy.Finding) {
	sorted := append([]policy.Finding(nil), findings...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if sorted[i].File != sorted[j].File {
			return sorted[i].File < sorted[j].File
		}
		return sorted[i].Line < sorted[j].Line
	})
	for _, f := range sorted {
		where := f.File
		if f.Line > 0 {
			where = fmt.Sprintf("%s:%d", f.File, f.Line)
		}
		line := fmt.Sprintf("%s: %s %s: %s: %s", where, f.Severity, f.Rule, f.Object, f.Message)
		if f.Fix != "" {
			line += " (fix: " + f.Fix + ")"
		}
		fmt.Fprintln(w, strings.TrimSpace(line))
	}
}
