package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestMarkdownCommentEscapesTheRepository renders a PR comment from
// objects whose names, errors and diffs try to add markup: none of it
// reaches the comment as markup.
func TestMarkdownCommentEscapesTheRepository(t *testing.T) {
	report := applyReport{Source: "repo`](http://evil.example)", Clusters: []clusterReport{{
		Cluster: "prod|<b>x</b>",
		Counts:  map[string]int{"configured": 1, "failed": 1},
		Objects: []objectReport{
			{Kind: "ConfigMap", Namespace: "ns", Name: "a</code></summary><script>alert(1)</script>", Action: "configured",
				Diff: "--- a\n+++ b\n+```\n+</details><img src=x>\n"},
			{Kind: "Widget", Name: "w", Action: "failed", Error: "w.yaml:1: see [here](http://evil.example) | <img src=x> **bold**"},
		},
	}}}
	var out bytes.Buffer
	printDiffMarkdown(&out, report)
	md := out.String()
	for _, bad := range []string{"<script>", "<b>", "<img src=x>\n</details>", "see [here](", "| <img", "**bold**"} {
		if strings.Contains(md, bad) {
			t.Errorf("the comment carries %q as markup:\n%s", bad, md)
		}
	}
	if !strings.Contains(md, "````diff\n") || !strings.Contains(md, "+```\n") {
		t.Errorf("the diff's own backticks can close its code block:\n%s", md)
	}
	if !strings.Contains(md, "&lt;/code&gt;&lt;/summary&gt;&lt;script&gt;") {
		t.Errorf("the object name is not shown escaped:\n%s", md)
	}
}
