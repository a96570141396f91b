package main

import (
	"encoding/json"
	"io"

	"github.com/gitk8s/gitk8s/internal/policy"
)

// writeSARIF writes findings as SARIF 2.1.0, the format GitHub code
// scanning takes.
func writeSARIF(w io.Writer, findings []policy.Finding) error {
	type text struct {
		Text string `json:"text"`
	}
	type rule struct {
		ID                   string            `json:"id"`
		ShortDescription     text              `json:"shortDescription"`
		HelpURI              string            `json:"helpUri,omitempty"`
		DefaultConfiguration map[string]string `json:"defaultConfiguration"`
	}
	level := func(s policy.Severity) string {
		if s == policy.Error {
			return "error"
		}
		return "warning"
	}
	rules := []rule{
		{ID: "api-removed", ShortDescription: text{"the object's apiVersion was removed from Kubernetes"}, DefaultConfiguration: map[string]string{"level": "error"}},
		{ID: "api-not-served", ShortDescription: text{"the cluster does not serve the object's kind at its apiVersion"}, DefaultConfiguration: map[string]string{"level": "error"}},
		{ID: "policy-skip-reason", ShortDescription: text{"a policy skip needs a reason"}, DefaultConfiguration: map[string]string{"level": "error"}},
	}
	for _, r := range policy.Rules() {
		rules = append(rules, rule{ID: r.ID, ShortDescription: text{r.Summary}, DefaultConfiguration: map[string]string{"level": level(r.Severity)}})
	}
	var results []map[string]any
	for _, f := range findings {
		region := map[string]any{}
		if f.Line > 0 {
			region["startLine"] = f.Line
		}
		loc := map[string]any{"artifactLocation": map[string]any{"uri": f.File}}
		if len(region) > 0 {
			loc["region"] = region
		}
		msg := f.Object + ": " + f.Message
		if f.Fix != "" {
			msg += " Fix: " + f.Fix
		}
		results = append(results, map[string]any{
			"ruleId":    f.Rule,
			"level":     level(f.Severity),
			"message":   text{msg},
			"locations": []any{map[string]any{"physicalLocation": loc}},
		})
	}
	if results == nil {
		results = []map[string]any{}
	}
	doc := map[string]any{
		"$schema": "https://json.schemastore.org/sarif-2.1.0.json",
		"version": "2.1.0",
		"runs": []any{map[string]any{
			"tool":    map[string]any{"driver": map[string]any{"name": "gitk8s", "version": version, "rules": rules}},
			"results": results,
		}},
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}
