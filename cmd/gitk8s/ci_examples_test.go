package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/gitk8s/gitk8s/internal/testenv"
)

// TestCIExamplesPostTheError runs the diff step of each CI example, as its
// shell runs it, on a pull request whose manifests do not parse: the job
// keeps going to post the comment, and the comment is gitk8s's error,
// naming the file; the GitHub workflow records exit 2 for its last step.
func TestCIExamplesPostTheError(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, "gitk8s"), filepath.Join(root, "cmd", "gitk8s")).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	repo := t.TempDir()
	git := func(args ...string) { testenv.Git(t, repo, args...) }
	write := func(content string) {
		if err := os.MkdirAll(filepath.Join(repo, "deploy"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(repo, "deploy", "cm.yaml"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git("init", "-q", "-b", "main")
	write("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: default}\ndata: {a: b}\n")
	git("add", "-A")
	git("commit", "-q", "-m", "base")
	git("update-ref", "refs/remotes/origin/main", "HEAD")
	git("checkout", "-q", "-b", "change")
	write("apiVersion: v1\nkind: ConfigMap\nmetadata: [\n")
	git("commit", "-q", "-am", "broken")

	run := func(name, script string, env ...string) (string, string) {
		t.Helper()
		_ = os.Remove(filepath.Join(repo, "diff.md"))
		cmd := exec.Command("bash", "-e", "-c", script)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), append([]string{"PATH=" + bin + ":" + os.Getenv("PATH")}, env...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: the diff step failed, so no comment would be posted: %v\n%s", name, err, out)
		}
		md, err := os.ReadFile(filepath.Join(repo, "diff.md"))
		if err != nil {
			t.Fatalf("%s: no diff.md: %v", name, err)
		}
		return string(md), string(out)
	}
	check := func(name, md string) {
		t.Helper()
		if !strings.Contains(md, "The diff failed") || !strings.Contains(md, "cm.yaml") {
			t.Errorf("%s: the comment does not carry gitk8s's error:\n%s", name, md)
		}
	}

	// GitHub Actions: the "diff" step's script, with the expressions the
	// runner would fill in.
	var workflow struct {
		Jobs map[string]struct {
			Steps []struct {
				ID  string `json:"id"`
				Run string `json:"run"`
			} `json:"steps"`
		} `json:"jobs"`
	}
	data, err := os.ReadFile(filepath.Join(root, "examples", "ci", "github-actions.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &workflow); err != nil {
		t.Fatal(err)
	}
	script := ""
	for _, s := range workflow.Jobs["diff"].Steps {
		if s.ID == "diff" {
			script = strings.ReplaceAll(s.Run, "${{ github.base_ref }}", "main")
		}
	}
	if script == "" {
		t.Fatal("no step with id diff in the GitHub workflow")
	}
	output := filepath.Join(t.TempDir(), "output")
	md, _ := run("github", script, "GITHUB_OUTPUT="+output)
	check("github", md)
	if got, _ := os.ReadFile(output); !strings.Contains(string(got), "code=2") {
		t.Errorf("github: the step recorded %q, want code=2 for the job to fail after the comment", got)
	}
	// The same step predicting the daemon's sync of this repository.
	config := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(config, []byte("apiVersion: gitk8s.io/v1alpha1\nkind: Config\nclusters:\n- {name: prod, kubeconfig: {context: "+env.Contexts[0]+", path: "+env.Kubeconfig+"}}\n"+
		"syncs:\n- {name: shop, source: {url: https://git.example/shop.git, path: deploy}, clusters: [prod]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	md, _ = run("github, predicting the daemon", script, "GITHUB_OUTPUT="+output, "GITK8S_CONFIG="+config, "GITK8S_SYNC=shop", "KUBECONFIG="+env.Kubeconfig)
	check("github, predicting the daemon", md)
	if md, _ = run("github, a sync the daemon lacks", script, "GITHUB_OUTPUT="+output, "GITK8S_CONFIG="+config, "GITK8S_SYNC=nosuch"); !strings.Contains(md, "no sync named nosuch") {
		t.Errorf("github: with GITK8S_CONFIG set the step does not ask the daemon's configuration:\n%s", md)
	}

	// GitLab: the job's script up to the API call, which needs GitLab.
	var job map[string]struct {
		Script []string `json:"script"`
	}
	if data, err = os.ReadFile(filepath.Join(root, "examples", "ci", "gitlab-ci.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &job); err != nil {
		t.Fatal(err)
	}
	var steps []string
	for _, s := range job["gitk8s-diff"].Script {
		if strings.HasPrefix(s, "go install") || strings.HasPrefix(s, "git fetch") {
			continue
		}
		steps = append(steps, s[:strings.Index(s+"curl ", "curl ")])
	}
	md, _ = run("gitlab", strings.Join(steps, "\n"), "CI_MERGE_REQUEST_TARGET_BRANCH_NAME=main")
	check("gitlab", md)
	md, _ = run("gitlab, predicting the daemon", strings.Join(steps, "\n"), "GITK8S_CONFIG="+config, "GITK8S_SYNC=shop", "KUBECONFIG="+env.Kubeconfig)
	check("gitlab, predicting the daemon", md)
}
