package policy

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/gitk8s/gitk8s/internal/apiversions"
	"github.com/gitk8s/gitk8s/internal/render"
)

// TestPublicProjects runs the default gate, offline, on the manifests of
// public projects kept unchanged in testdata/projects (each folder says
// where its files come from in PROVENANCE.md), on the podinfo chart the
// renderer's tests keep, and on the course in examples/course. The gate is
// the one `gitk8s validate` runs without a cluster: removed API versions,
// the built-in rules at their default severities and gitk8s's own
// admission policies. These projects run as they are on real clusters, so
// an error finding is a rule that blocks a healthy workload: the test
// fails and names it. The figures it logs are those in docs/policies.md
// ("Measured on public projects").
func TestPublicProjects(t *testing.T) {
	tests := []struct {
		name string
		// root is the folder rendered, as a repository holding the project.
		root string
		helm render.HelmOptions
	}{
		{name: "kube-prometheus", root: filepath.Join("testdata", "projects", "kube-prometheus")},
		{name: "microservices-demo", root: filepath.Join("testdata", "projects", "microservices-demo")},
		{name: "ingress-nginx", root: filepath.Join("testdata", "projects", "ingress-nginx")},
		{name: "cloudnative-pg", root: filepath.Join("testdata", "projects", "cloudnative-pg")},
		{name: "podinfo chart", root: filepath.Join("..", "render", "testdata", "helm", "podinfo")},
		{name: "podinfo chart, values-prod.yaml", root: filepath.Join("..", "render", "testdata", "helm", "podinfo"),
			helm: render.HelmOptions{ValuesFiles: []string{"values-prod.yaml"}}},
		{name: "course", root: filepath.Join("..", "..", "examples", "course")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bundle, err := render.Render(t.Context(), render.Options{Root: tt.root, Helm: tt.helm})
			if err != nil {
				t.Fatal(err)
			}
			cfg, errs := Settings{}.Config()
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			if cfg.Admission, err = LoadAdmission(t.Context(), tt.root, "", bundle.Objects); err != nil {
				t.Fatal(err)
			}
			var findings []Finding
			for _, o := range bundle.Objects {
				if r, ok := apiversions.Lookup(o.Object.GroupVersionKind()); ok {
					findings = append(findings, Finding{Rule: "api-removed", Severity: Error, File: o.Source.File, Line: o.Source.Line, Object: o.Ref(), Message: r.Message()})
				}
			}
			findings = append(findings, Evaluate(bundle.Objects, cfg, nil)...)

			errors, warnings := 0, 0
			byRule := map[string]int{}
			for _, f := range findings {
				byRule[f.Rule]++
				if f.Severity == Error {
					errors++
					t.Errorf("%s:%d: %s blocks %s: %s", f.File, f.Line, f.Rule, f.Object, f.Message)
				} else {
					warnings++
				}
			}
			counts := make([]string, 0, len(byRule))
			for rule, n := range byRule {
				counts = append(counts, fmt.Sprintf("%s %d", rule, n))
			}
			sort.Strings(counts)
			t.Logf("%d objects: %d errors, %d warnings (%s)", len(bundle.Objects), errors, warnings, strings.Join(counts, ", "))
		})
	}
}
