package source

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitk8s/gitk8s/internal/testenv"
)

// TestOpenFiles: SRC may be a file, several files or - for standard
// input, as kubectl apply -f takes them.
func TestOpenFiles(t *testing.T) {
	dir := testenv.WriteFiles(t, map[string]string{
		"deploy.yaml":       "kind: A",
		"svc.yml":           "kind: B",
		"other/deploy.yaml": "kind: C",
		"Dockerfile.k8s":    "kind: D",
	})

	snap, err := Open(t.Context(), filepath.Join(dir, "deploy.yaml"), Options{Files: []string{filepath.Join(dir, "svc.yml"), "-", filepath.Join(dir, "Dockerfile.k8s")}, Stdin: strings.NewReader("kind: E")})
	if err != nil {
		t.Fatal(err)
	}
	root := snap.Root
	for name, want := range map[string]string{"deploy.yaml": "kind: A", "svc.yml": "kind: B", "stdin.yaml": "kind: E", "Dockerfile.k8s.yaml": "kind: D"} {
		if got := read(t, snap, name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if entries, _ := os.ReadDir(root); len(entries) != 4 {
		t.Errorf("the snapshot holds %d files, want 4", len(entries))
	}
	if err := snap.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("the snapshot of files outlives Close: %v", err)
	}

	refused := []struct {
		name string
		src  string
		opts Options
		want string
	}{
		{"same name twice", filepath.Join(dir, "deploy.yaml"), Options{Files: []string{filepath.Join(dir, "other", "deploy.yaml")}}, "the same file name deploy.yaml"},
		{"folder among files", filepath.Join(dir, "deploy.yaml"), Options{Files: []string{filepath.Join(dir, "other")}}, "is a folder; several SRC must all be files"},
		{"URL among files", filepath.Join(dir, "deploy.yaml"), Options{Files: []string{"https://example.com/repo.git"}}, "a URL cannot be given with files"},
		{"missing file", filepath.Join(dir, "deploy.yaml"), Options{Files: []string{filepath.Join(dir, "nope.yaml")}}, "nope.yaml: no such file"},
		{"stdin twice", "-", Options{Files: []string{"-"}, Stdin: strings.NewReader("")}, "standard input (-) is given twice"},
		{"ref on a file", filepath.Join(dir, "deploy.yaml"), Options{Ref: "main"}, "--ref and --semver have no meaning"},
		{"path on a file", filepath.Join(dir, "deploy.yaml"), Options{Path: "x"}, "--path has no meaning"},
		{"stdin too large", "-", Options{Stdin: strings.NewReader(strings.Repeat("x", maxStdin+1))}, "more than 64 MiB"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			snap, err := Open(t.Context(), tc.src, tc.opts)
			if err == nil {
				snap.Close()
				t.Fatal("opened")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to say %q", err, tc.want)
			}
		})
	}
}

// TestOpenFolderOfWorkTree: a folder inside a Git work tree is read from
// the work tree on disk with the work tree as its root, so that ../base is
// inside; the snapshot names its boundary.
func TestOpenFolderOfWorkTree(t *testing.T) {
	repo := testenv.WriteFiles(t, map[string]string{
		"base/kustomization.yaml":          "resources: []",
		"overlays/prod/kustomization.yaml": "resources: [../../base]",
	})
	testenv.Git(t, repo, "init", "-q", "-b", "main")
	snap, err := Open(t.Context(), filepath.Join(repo, "overlays", "prod"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	top, _ := filepath.EvalSymlinks(repo)
	if snap.Root != top || snap.Path != "overlays/prod" || snap.Revision != "" {
		t.Errorf("root %s path %s revision %q, want the work tree %s and overlays/prod, no revision", snap.Root, snap.Path, snap.Revision, top)
	}
	if !strings.Contains(snap.Boundary, top) {
		t.Errorf("boundary %q does not name the work tree", snap.Boundary)
	}
	// --path is inside the folder given.
	sub, err := Open(t.Context(), filepath.Join(repo, "overlays"), Options{Path: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if sub.Path != "overlays/prod" {
		t.Errorf("path %s, want overlays/prod", sub.Path)
	}
}
