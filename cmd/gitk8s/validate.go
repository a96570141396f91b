package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"

	"github.com/spf13/cobra"

	"github.com/gitk8s/gitk8s/internal/apiversions"
	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/cluster"
	"github.com/gitk8s/gitk8s/internal/policy"
	"github.com/gitk8s/gitk8s/internal/reconcile"
	"github.com/gitk8s/gitk8s/internal/render"
)

func newValidateCommand(g *globalOptions, stdout, stderr io.Writer) *cobra.Command {
	var src sourceOptions
	var pol policyOptions
	var output string
	cmd := &cobra.Command{
		Use:   "validate SRC [FILE...]",
		Short: "Check the objects rendered from SRC before anything is applied",
		Long: `Validate renders SRC and runs every check gitk8s makes before an apply: API
versions Kubernetes removed, and the policy rules (quota fit, RBAC, probes,
secrets; see docs/policies.md). Offline it uses only the repository; with
--context (or --clusters) it also reads each cluster: what it serves, its
quotas' current use, the Secrets and roles that exist.

Findings are grouped by file, with line numbers. -o sarif writes SARIF 2.1.0
for GitHub code scanning.

Exit status: 0 no errors (warnings allowed), 1 errors found, 2 SRC could not
be read or a cluster not reached.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch output {
			case "text", "json", "sarif":
			default:
				return failWith(exitError, fmt.Errorf("-o %s: use text, json or sarif", output))
			}
			snap, bundle, err := src.load(cmd.Context(), src.take(args))
			if err != nil {
				return failWith(exitError, err)
			}
			defer snap.Close()
			printSkipped(stderr, bundle)
			cfg, err := reconcile.GateConfig(cmd.Context(), pol.settings(), snap, bundle)
			if err != nil {
				return failWith(exitError, err)
			}
			findings := removedAPIFindings(bundle)
			online := len(g.contexts) > 0 || g.clustersFile != ""
			if !online && cfg != nil {
				findings = append(findings, policy.Evaluate(bundle.Objects, *cfg, nil)...)
			}
			if online {
				targets, err := g.targets()
				if err != nil {
					return failWith(exitError, err)
				}
				for _, t := range targets {
					more, err := servedFindings(t, bundle)
					if err != nil {
						return failWith(exitError, err)
					}
					findings = append(findings, more...)
					if cfg != nil {
						for _, f := range policy.EvaluateIn(&policy.Context{Objects: bundle.Objects, Live: policy.NewLive(cmd.Context(), t), DefaultNamespace: t.Namespace}, *cfg) {
							if len(targets) > 1 {
								f.Message = "[" + t.Name + "] " + f.Message
							}
							findings = append(findings, f)
						}
					}
				}
			}
			sort.SliceStable(findings, func(i, j int) bool {
				if findings[i].File != findings[j].File {
					return findings[i].File < findings[j].File
				}
				return findings[i].Line < findings[j].Line
			})
			switch output {
			case "json":
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				if findings == nil {
					findings = []policy.Finding{}
				}
				if err := enc.Encode(map[string]any{"source": snap.Origin, "revision": snap.Revision, "findings": findings}); err != nil {
					return failWith(exitError, err)
				}
			case "sarif":
				if err := writeSARIF(stdout, findings); err != nil {
					return failWith(exitError, err)
				}
			default:
				printFindings(stdout, findings)
				errors, warnings := 0, 0
				for _, f := range findings {
					if f.Severity == policy.Error {
						errors++
					} else {
						warnings++
					}
				}
				fmt.Fprintf(stdout, "%d objects: %d errors, %d warnings\n", len(bundle.Objects), errors, warnings)
			}
			if policy.Blocking(findings) {
				return failWith(exitFailed, nil)
			}
			return nil
		},
	}
	src.addFlags(cmd)
	pol.addFlags(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text, json or sarif")
	return cmd
}

// removedAPIFindings checks every object against the table of removed versions.
func removedAPIFindings(bundle *render.Bundle) []policy.Finding {
	var out []policy.Finding
	for _, o := range bundle.Objects {
		if r, ok := apiversions.Lookup(o.Object.GroupVersionKind()); ok {
			out = append(out, policy.Finding{Rule: "api-removed", Severity: policy.Error, Source: o.Source, File: o.Source.File, Line: o.Source.Line, Object: o.Ref(), Message: r.Message()})
		}
	}
	return out
}

// servedFindings checks that a cluster serves every kind at its version,
// with the plan's own check; removed versions are reported already, with
// their fix, by removedAPIFindings.
func servedFindings(t *cluster.Target, bundle *render.Bundle) ([]policy.Finding, error) {
	unserved, err := apply.Unserved(t, bundle.Objects)
	if err != nil {
		return nil, err
	}
	var out []policy.Finding
	for _, o := range bundle.Objects {
		why, ok := unserved[o]
		if _, removed := apiversions.Lookup(o.Object.GroupVersionKind()); !ok || removed {
			continue
		}
		out = append(out, policy.Finding{Rule: "api-not-served", Severity: policy.Error, Source: o.Source, File: o.Source.File, Line: o.Source.Line, Object: o.Ref(),
			Message: why.Error()})
	}
	return out, nil
}
