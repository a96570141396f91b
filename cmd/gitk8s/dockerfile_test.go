package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/gitk8s/gitk8s/internal/testenv"
)

// TestDockerfileCopiesEverySource: the image's build stage copies every
// top-level folder of this module that the gitk8s binary is built from,
// so that `docker build` compiles what `go build` does. (No image is built
// here: there is no Docker engine or registry to build with.)
func TestDockerfileCopiesEverySource(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	list := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.Dir}}{{end}}", "./cmd/gitk8s")
	list.Dir = root
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	needed := map[string]bool{}
	for _, dir := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(root, dir)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue // a dependency from the module cache
		}
		needed[strings.Split(rel, string(filepath.Separator))[0]] = true
	}
	dockerfile, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	copied := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^COPY\s+(\S+)\s+\./`).FindAllStringSubmatch(string(dockerfile), -1) {
		copied[strings.TrimSuffix(m[1], "/")] = true
	}
	if len(needed) < 3 {
		t.Fatalf("go list found only %v", needed)
	}
	for dir := range needed {
		if !copied[dir] {
			t.Errorf("the Dockerfile does not copy %s/, which the binary is built from", dir)
		}
	}
}
