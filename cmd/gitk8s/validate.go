package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/gitk8s/gitk8s/internal/policy"
	"github.com/gitk8s/gitk8s/internal/reconcile"
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
			from := src.take(args)
			render, err := src.renderSettings()
			if err != nil {
				return failWith(exitError, err)
			}
			req := reconcile.Request{Source: src.opener(from, src.path),
				Settings: reconcile.Settings{Render: render, Policy: pol.settings()}}
			if len(g.contexts) > 0 || g.clustersFile != "" {
				targets, err := g.targets()
				if err != nil {
					// Reported after the render, as a cluster that does not
					// answer is.
					req.Clusters = []reconcile.Cluster{{Unavailable: err}}
				} else {
					req.Clusters = reconcile.Clusters(targets)
				}
			}
			v, err := reconcile.Validate(cmd.Context(), req)
			if v != nil {
				printSkipped(stderr, v.Bundle)
			}
			if err != nil {
				return failWith(exitError, err)
			}
			findings := v.Findings
			switch output {
			case "json":
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				if findings == nil {
					findings = []policy.Finding{}
				}
				if err := enc.Encode(map[string]any{"source": v.Origin, "revision": v.Revision, "findings": findings}); err != nil {
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
				fmt.Fprintf(stdout, "%d objects: %d errors, %d warnings\n", len(v.Bundle.Objects), errors, warnings)
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
