package source

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitk8s/gitk8s/internal/testenv"
)

// write writes a file into a folder that is there already, such as a
// repository's work tree; testenv.WriteFiles makes a new folder of files.
func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, snap *Snapshot, rel string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(snap.Root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestOpenDirectory(t *testing.T) {
	dir := testenv.WriteFiles(t, map[string]string{"deploy/a.yaml": "a"})
	snap, err := Open(t.Context(), dir, Options{Path: "deploy"})
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	if snap.Root != dir || snap.Path != "deploy" || snap.Revision != "" {
		t.Errorf("snapshot %+v", snap)
	}
	if _, err := Open(t.Context(), dir, Options{Ref: "main"}); err == nil {
		t.Error("--ref on a plain directory: no error")
	}
	if _, err := Open(t.Context(), filepath.Join(dir, "missing"), Options{}); err == nil {
		t.Error("missing directory: no error")
	}
}

func TestOpenGitRepository(t *testing.T) {
	repo := t.TempDir()
	testenv.Git(t, repo, "init", "-q", "-b", "main")
	write(t, filepath.Join(repo, "app.yaml"), "v1")
	write(t, filepath.Join(repo, "nested", "deep", "b.yaml"), "nested")
	if err := os.Symlink("../app.yaml", filepath.Join(repo, "nested", "link.yaml")); err != nil {
		t.Fatal(err)
	}
	testenv.Git(t, repo, "add", ".")
	testenv.Git(t, repo, "commit", "-q", "-m", "one")
	first := testenv.Git(t, repo, "rev-parse", "HEAD")
	testenv.Git(t, repo, "tag", "v1.0.0")
	write(t, filepath.Join(repo, "app.yaml"), "v2")
	testenv.Git(t, repo, "commit", "-q", "-am", "two")
	second := testenv.Git(t, repo, "rev-parse", "HEAD")
	write(t, filepath.Join(repo, "app.yaml"), "uncommitted")

	tests := []struct {
		ref, wantRev, wantContent string
	}{
		{"", second, "v2"},
		{"main", second, "v2"},
		{"v1.0.0", first, "v1"},
		{first, first, "v1"},
		{first[:10], first, "v1"},
	}
	for _, tt := range tests {
		snap, err := Open(t.Context(), repo, Options{Ref: tt.ref})
		if err != nil {
			t.Fatalf("ref %q: %v", tt.ref, err)
		}
		if snap.Revision != tt.wantRev {
			t.Errorf("ref %q: revision %s, want %s", tt.ref, snap.Revision, tt.wantRev)
		}
		if got := read(t, snap, "app.yaml"); got != tt.wantContent {
			t.Errorf("ref %q: app.yaml is %q, want %q (the commit, not the work tree)", tt.ref, got, tt.wantContent)
		}
		if got := read(t, snap, "nested/link.yaml"); got != tt.wantContent {
			t.Errorf("ref %q: symlink inside the repository reads %q", tt.ref, got)
		}
		if got := read(t, snap, "nested/deep/b.yaml"); got != "nested" {
			t.Errorf("ref %q: nested file reads %q", tt.ref, got)
		}
		root := snap.Root
		if err := snap.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(root); !os.IsNotExist(err) {
			t.Errorf("Close left %s behind", root)
		}
	}

	_, err := Open(t.Context(), repo, Options{Ref: "no-such-branch"})
	if !errors.Is(err, ErrRefNotFound) {
		t.Errorf("missing ref: error %v, want ErrRefNotFound", err)
	}
}

func TestOpenRefusesSymlinkLeavingRepository(t *testing.T) {
	repo := t.TempDir()
	testenv.Git(t, repo, "init", "-q", "-b", "main")
	if err := os.Symlink("../../etc/passwd", filepath.Join(repo, "passwd.yaml")); err != nil {
		t.Fatal(err)
	}
	testenv.Git(t, repo, "add", ".")
	testenv.Git(t, repo, "commit", "-q", "-m", "escape")
	_, err := Open(t.Context(), repo, Options{})
	if err == nil || !strings.Contains(err.Error(), "passwd.yaml: symbolic link to ../../etc/passwd leaves the repository") {
		t.Errorf("error %v", err)
	}
}
