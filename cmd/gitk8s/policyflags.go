package main

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gitk8s/gitk8s/internal/policy"
	"github.com/gitk8s/gitk8s/internal/render"
	"github.com/gitk8s/gitk8s/internal/source"
)

// policyOptions are the policy gate's flags.
type policyOptions struct {
	modes   map[string]string
	exclude []string
	off     bool
}

func (o *policyOptions) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringToStringVar(&o.modes, "policy", nil, "rule=enforce|warn|off, repeatable (see docs/policies.md)")
	cmd.Flags().StringArrayVar(&o.exclude, "policy-exclude-namespace", nil, "namespace the policies do not check (repeatable)")
	cmd.Flags().BoolVar(&o.off, "no-policy", false, "skip the policy gate")
}

// config is the gate's configuration, or nil when the gate is off. The
// admission policies come from gitk8s, the source's policies/ folder and
// the bundle.
func (o *policyOptions) config(snap *source.Snapshot, bundle *render.Bundle) (*policy.Config, error) {
	if o.off {
		return nil, nil
	}
	cfg, errs := policy.Settings{Modes: o.modes, ExcludeNamespaces: o.exclude}.Config()
	if len(errs) > 0 {
		return nil, fmt.Errorf("--policy: %w", errors.Join(errs...))
	}
	admission, err := policy.LoadAdmission(snap.Root, snap.Path, bundle.Objects)
	if err != nil {
		return nil, err
	}
	cfg.Admission = admission
	return &cfg, nil
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
