package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/gitk8s/gitk8s/internal/apiversions"
	"github.com/gitk8s/gitk8s/internal/render"
)

// finding is one problem validate found.
type finding struct {
	Rule     string `json:"rule"`
	Severity string `json:"severity"`
	Cluster  string `json:"cluster,omitempty"`
	File     string `json:"file"`
	Line     int    `json:"line,omitempty"`
	Object   string `json:"object"`
	Message  string `json:"message"`
}

func newValidateCommand(g *globalOptions, stdout, stderr io.Writer) *cobra.Command {
	var src sourceOptions
	var output string
	cmd := &cobra.Command{
		Use:   "validate SRC",
		Short: "Check the objects rendered from SRC before anything is applied",
		Long: `Validate renders SRC and checks every object, offline, against the table of
API versions Kubernetes removed; with --context it also checks that each
cluster serves every kind at its apiVersion.

Exit status: 0 no errors, 1 errors found, 2 SRC could not be read or a cluster
not reached.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return failWith(exitError, fmt.Errorf("-o %s: use text or json", output))
			}
			snap, bundle, err := src.load(args[0])
			if err != nil {
				return failWith(exitError, err)
			}
			defer snap.Close()
			findings := removedAPIFindings(bundle)
			for _, name := range g.contexts {
				more, err := servedFindings(g, name, bundle)
				if err != nil {
					return failWith(exitError, err)
				}
				findings = append(findings, more...)
			}
			sort.SliceStable(findings, func(i, j int) bool {
				if findings[i].File != findings[j].File {
					return findings[i].File < findings[j].File
				}
				return findings[i].Line < findings[j].Line
			})
			if output == "json" {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(map[string]any{"source": snap.Origin, "revision": snap.Revision, "findings": findings}); err != nil {
					return failWith(exitError, err)
				}
			} else {
				for _, f := range findings {
					where := f.File
					if f.Line > 0 {
						where = fmt.Sprintf("%s:%d", f.File, f.Line)
					}
					cluster := ""
					if f.Cluster != "" {
						cluster = " [" + f.Cluster + "]"
					}
					fmt.Fprintf(stdout, "%s: %s %s%s: %s: %s\n", where, f.Severity, f.Rule, cluster, f.Object, f.Message)
				}
				fmt.Fprintf(stdout, "%d objects, %d findings\n", len(bundle.Objects), len(findings))
			}
			if len(findings) > 0 {
				return failWith(exitFailed, nil)
			}
			return nil
		},
	}
	src.addFlags(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// removedAPIFindings checks every object against the table of removed versions.
func removedAPIFindings(bundle *render.Bundle) []finding {
	var out []finding
	for _, o := range bundle.Objects {
		if r, ok := apiversions.Lookup(o.Object.GroupVersionKind()); ok {
			out = append(out, finding{Rule: "api-removed", Severity: "error", File: o.Source.File, Line: o.Source.Line, Object: o.Ref(), Message: r.Message()})
		}
	}
	return out
}

// servedFindings checks that a cluster serves every kind at its version.
func servedFindings(g *globalOptions, context string, bundle *render.Bundle) ([]finding, error) {
	one := *g
	one.contexts = []string{context}
	targets, err := one.targets()
	if err != nil {
		return nil, err
	}
	t := targets[0]
	if _, err := t.Discovery.ServerVersion(); err != nil {
		return nil, fmt.Errorf("cluster %s (%s) unreachable: %w", t.Name, t.Server, err)
	}
	crds := map[string]bool{}
	for _, o := range bundle.Objects {
		if o.Object.GetKind() == "CustomResourceDefinition" {
			group, _, _ := unstructured.NestedString(o.Object.Object, "spec", "group")
			kind, _, _ := unstructured.NestedString(o.Object.Object, "spec", "names", "kind")
			crds[kind+"."+group] = true
		}
	}
	var out []finding
	for _, o := range bundle.Objects {
		gvk := o.Object.GroupVersionKind()
		if _, removed := apiversions.Lookup(gvk); removed {
			continue // already reported, with the fix
		}
		_, err := t.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if meta.IsNoMatchError(err) && !crds[gvk.Kind+"."+gvk.Group] {
			out = append(out, finding{Rule: "api-not-served", Severity: "error", Cluster: t.Name, File: o.Source.File, Line: o.Source.Line, Object: o.Ref(),
				Message: fmt.Sprintf("cluster %s does not serve %s %s; install its CRD or fix apiVersion", t.Name, gvk.GroupVersion(), gvk.Kind)})
		} else if err != nil && !meta.IsNoMatchError(err) {
			return nil, fmt.Errorf("cluster %s: %w", t.Name, err)
		}
	}
	return out, nil
}
