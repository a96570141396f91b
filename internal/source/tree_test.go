package source

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitk8s/gitk8s/internal/testenv"
	"github.com/google/go-cmp/cmp"
)

// file, link and folder are tree entries for testenv.MkTree, which writes
// them exactly as given: in this order, duplicates and all, with any name.
func file(name, data string) testenv.TreeEntry {
	return testenv.TreeEntry{Mode: "100644", Name: name, Data: data}
}

func link(name, target string) testenv.TreeEntry {
	return testenv.TreeEntry{Mode: "120000", Name: name, Data: target}
}

func folder(name string, kids ...testenv.TreeEntry) testenv.TreeEntry {
	return testenv.TreeEntry{Mode: "40000", Name: name, Kids: kids}
}

// listing is every path under dir with what it holds: a file's content, a
// link's target or "dir".
func listing(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			got[rel] = "link to " + target
			return err
		case d.IsDir():
			got[rel] = "dir"
		default:
			data, err := os.ReadFile(p)
			got[rel] = string(data)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestHostileTrees reads commits an attacker can push, from a local
// repository and from an HTTPS remote: each must fail naming the entry and
// the commit, leave no snapshot behind and touch nothing outside it. Each
// aims at outside/sentinel, a file next to the snapshot directory: both
// are in the same TMPDIR, so "../outside/sentinel" from the snapshot's
// root is the sentinel.
func TestHostileTrees(t *testing.T) {
	up := newUpstream(t)
	gitDir := filepath.Join(up.root, "repo.git")
	srv := up.serveHTTPS("reader", "tree-test-secret")
	f := NewFetcher(t.TempDir())
	base := t.TempDir()
	t.Setenv("TMPDIR", base)
	outside := filepath.ToSlash(filepath.Join(base, "outside"))
	escape := folder("d", link("up", "..")) // d/up is the root: allowed by itself

	tests := []struct {
		name  string
		tree  []testenv.TreeEntry
		entry string // the entry the error must name
		// malformed trees are refused as go-git reads them, not as
		// gitk8s writes them: the error is not an *EntryError.
		malformed bool
	}{
		{
			name:  "folder under a link that chains out",
			tree:  []testenv.TreeEntry{escape, link("esc", "d/up/.."), folder("esc", folder("outside", file("sentinel", "pwned")))},
			entry: "esc",
		},
		{
			name:  "file over a link of the same name",
			tree:  []testenv.TreeEntry{escape, link("x", "d/up/../outside/sentinel"), file("x", "pwned")},
			entry: "x",
		},
		{
			name:  "name with slashes through a link",
			tree:  []testenv.TreeEntry{escape, link("esc", "d/up/.."), file("esc/outside/sentinel", "pwned")},
			entry: "esc/outside/sentinel",
		},
		{
			name:  "name with slashes through an absolute link",
			tree:  []testenv.TreeEntry{link("tmp", filepath.ToSlash(base)), file("tmp/outside/sentinel", "pwned")},
			entry: "tmp",
		},
		{
			name:  "folder under an absolute link",
			tree:  []testenv.TreeEntry{link("abs", outside), folder("abs", file("sentinel", "pwned"))},
			entry: "abs",
		},
		{
			name:  "folder under a link inside the tree",
			tree:  []testenv.TreeEntry{folder("d", file("f", "mine")), link("ln", "d"), folder("ln", file("f", "overwritten"))},
			entry: "ln",
		},
		{
			name:  "link out through a link in a folder",
			tree:  []testenv.TreeEntry{escape, link("secret", "d/up/../outside/sentinel")},
			entry: "secret",
		},
		{
			name:  "link out through a link written after it",
			tree:  []testenv.TreeEntry{link("a", "z/../outside/sentinel"), link("z", ".")},
			entry: "a",
		},
		{
			name:  "chain of three links out",
			tree:  []testenv.TreeEntry{link("l1", "l2/.."), link("l2", "l3/.."), link("l3", "."), folder("outside")},
			entry: "l1",
		},
		{
			name:  "link with dot-dot",
			tree:  []testenv.TreeEntry{link("up", "../outside/sentinel")},
			entry: "up",
		},
		{
			name:  "absolute link",
			tree:  []testenv.TreeEntry{link("abs", outside+"/sentinel")},
			entry: "abs",
		},
		{
			name:  "link loop",
			tree:  []testenv.TreeEntry{link("a", "b"), link("b", "a")},
			entry: "a",
		},
		{
			name:  "link target with a NUL byte",
			tree:  []testenv.TreeEntry{link("a", "ok\x00../outside/sentinel")},
			entry: "a",
		},
		{
			name:  "duplicate files",
			tree:  []testenv.TreeEntry{file("app.yaml", "one"), file("app.yaml", "two")},
			entry: "app.yaml",
		},
		{
			name:  "duplicate folders",
			tree:  []testenv.TreeEntry{folder("d", file("f", "one")), folder("d", file("f", "two"))},
			entry: "d",
		},
		{
			name:  "folder named dot-dot",
			tree:  []testenv.TreeEntry{folder("..", folder("outside", file("sentinel", "pwned")))},
			entry: "..",
		},
		{
			name:  "folder named dot",
			tree:  []testenv.TreeEntry{folder("d", folder(".", file("f", "x")))},
			entry: "d/.",
		},
		{
			name:  "absolute name",
			tree:  []testenv.TreeEntry{file(outside+"/sentinel", "pwned")},
			entry: outside + "/sentinel",
		},
		{
			name:  "backslash in a name",
			tree:  []testenv.TreeEntry{file(`a\b`, "x")},
			entry: `a\b`,
		},
		{
			name:  "backslashes and dot-dot in a name",
			tree:  []testenv.TreeEntry{file(`..\outside\sentinel`, "pwned")},
			entry: `..\outside\sentinel`,
		},
		{
			name:  "control character in a name",
			tree:  []testenv.TreeEntry{file("a\nb", "x")},
			entry: "a\nb",
		},
		{
			name:  ".git folder",
			tree:  []testenv.TreeEntry{folder(".git", file("config", "[core]\n\tfsmonitor = touch ../outside/pwned\n"))},
			entry: ".git",
		},
		{
			name:  ".git folder in another case, deeper",
			tree:  []testenv.TreeEntry{folder("d", folder(".Git", file("config", "[core]\n\tbare = true\n")))},
			entry: "d/.Git",
		},
		{
			name:  ".git by its NTFS short name",
			tree:  []testenv.TreeEntry{folder("GIT~1", file("config", "x"))},
			entry: "GIT~1",
		},
		{
			name:  ".git with a code point HFS+ ignores",
			tree:  []testenv.TreeEntry{folder(".gi\u200ct", file("config", "x"))},
			entry: ".gi\u200ct",
		},
		{
			name:  ".git with a trailing dot NTFS ignores",
			tree:  []testenv.TreeEntry{folder(".git.", file("config", "x"))},
			entry: ".git.",
		},
		{
			name:  ".git link",
			tree:  []testenv.TreeEntry{link(".git", "d"), folder("d")},
			entry: ".git",
		},
		{
			name:      "empty name",
			tree:      []testenv.TreeEntry{folder("d", file("", "x"))},
			entry:     "d",
			malformed: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			branch := "case-" + strings.NewReplacer(" ", "-", ",", "", ".", "dot").Replace(tt.name)
			rev := testenv.CommitTree(t, gitDir, branch, tt.tree)
			write(t, filepath.Join(base, "outside", "sentinel"), "untouched")
			before := listing(t, base)
			for _, via := range []string{"local", "https"} {
				var snap *Snapshot
				var err error
				if via == "local" {
					snap, err = Open(t.Context(), gitDir, Options{Ref: branch})
				} else {
					snap, _, err = f.Fetch(t.Context(), RemoteOptions{URL: srv.URL + "/repo.git", Ref: Ref{Branch: branch},
						Auth: Auth{Username: "reader", Password: "tree-test-secret", CABundle: srv.caPEM}, Timeout: 10 * time.Second})
				}
				var entryErr *EntryError
				switch {
				case err == nil:
					t.Errorf("%s: no error; the snapshot holds %v", via, listing(t, snap.Root))
					snap.Close()
				case tt.malformed && via == "https":
					// git upload-pack refuses to send such a tree at all.
				case !strings.Contains(err.Error(), rev):
					t.Errorf("%s: error does not name commit %s: %v", via, rev, err)
				case tt.malformed:
					if !strings.Contains(err.Error(), tt.entry+": ") {
						t.Errorf("%s: error does not name entry %q: %v", via, tt.entry, err)
					}
				case !errors.As(err, &entryErr):
					t.Errorf("%s: error is not an *EntryError: %v", via, err)
				case entryErr.Path != tt.entry:
					t.Errorf("%s: error names entry %q, want %q: %v", via, entryErr.Path, tt.entry, err)
				}
				if diff := cmp.Diff(before, listing(t, base)); diff != "" {
					t.Errorf("%s: outside the snapshot (-before +after):\n%s", via, diff)
				}
			}
		})
	}
}

// TestLinksInsideTheTree reads links a repository may hold, from a local
// repository and from an HTTPS remote: they stay inside the tree, however
// they get there, so they are kept.
func TestLinksInsideTheTree(t *testing.T) {
	up := newUpstream(t)
	gitDir := filepath.Join(up.root, "repo.git")
	srv := up.serveHTTPS("reader", "tree-test-secret")
	f := NewFetcher(t.TempDir())
	tree := []testenv.TreeEntry{
		link("chain", "via"),
		folder("d",
			folder("e", link("back", "../../top.yaml")),
			file("f.yaml", "in d"),
			link("up", ".."),
			testenv.TreeEntry{Mode: "100755", Name: "run.sh", Data: "#!/bin/sh\n"},
		),
		link("dangling", "missing.yaml"),
		link("ln", "d"),
		testenv.TreeEntry{Mode: "160000", Name: "module", Data: strings.Repeat("ab", 20)},
		link("self", "."),
		file("top.yaml", "top"),
		link("via", "d/up/d/f.yaml"),
	}
	rev := testenv.CommitTree(t, gitDir, "links", tree)
	want := map[string]string{
		"chain":         "in d",
		"d/e/back":      "top",
		"d/up/top.yaml": "top",
		"ln/f.yaml":     "in d",
		"self/d/f.yaml": "in d",
		"via":           "in d",
		"d/run.sh":      "#!/bin/sh\n",
	}
	for _, via := range []string{"local", "https"} {
		t.Run(via, func(t *testing.T) {
			var snap *Snapshot
			var err error
			if via == "local" {
				snap, err = Open(t.Context(), gitDir, Options{Ref: "links"})
			} else {
				snap, _, err = f.Fetch(t.Context(), RemoteOptions{URL: srv.URL + "/repo.git", Ref: Ref{Branch: "links"},
					Auth: Auth{Username: "reader", Password: "tree-test-secret", CABundle: srv.caPEM}, Timeout: 10 * time.Second})
			}
			if err != nil {
				t.Fatal(err)
			}
			defer snap.Close()
			if snap.Revision != rev {
				t.Errorf("revision %s, want %s", snap.Revision, rev)
			}
			got := map[string]string{}
			for p := range want {
				got[p] = read(t, snap, p)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("contents (-want +got):\n%s", diff)
			}
			if target, err := os.Readlink(filepath.Join(snap.Root, "dangling")); err != nil || target != "missing.yaml" {
				t.Errorf("dangling link: %q %v", target, err)
			}
			if _, err := os.Lstat(filepath.Join(snap.Root, "module")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("submodule written: %v", err)
			}
		})
	}
}

// TestTreeLimits: a commit with a file too large, files too large
// together, or too many entries fails its checkout naming the entry and
// the limit, and leaves no snapshot behind.
func TestTreeLimits(t *testing.T) {
	up := newUpstream(t)
	gitDir := filepath.Join(up.root, "repo.git")
	saved := DefaultTreeLimits
	t.Cleanup(func() { DefaultTreeLimits = saved })
	DefaultTreeLimits = TreeLimits{FileBytes: 1000, TotalBytes: 2500, Entries: 20}
	base := t.TempDir()
	t.Setenv("TMPDIR", base)
	var many []testenv.TreeEntry
	for i := range 25 {
		many = append(many, file(strings.Repeat("f", i+1), "x"))
	}
	tests := []struct {
		name, entry, want string
		tree              []testenv.TreeEntry
	}{
		{"a huge file", "big.yaml", "the file is 1001 bytes, more than 1000", []testenv.TreeEntry{file("a.yaml", "x"), file("big.yaml", strings.Repeat("x", 1001))}},
		{"files too large together", "d/c", "more than 2500 bytes together", []testenv.TreeEntry{folder("d", file("a", strings.Repeat("a", 900)), file("b", strings.Repeat("b", 900)), file("c", strings.Repeat("c", 900)))}},
		{"too many entries", strings.Repeat("f", 21), "more than 20 files, folders and links", many},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			branch := "limits-" + strings.ReplaceAll(tt.name, " ", "-")
			testenv.CommitTree(t, gitDir, branch, tt.tree)
			_, err := Open(t.Context(), gitDir, Options{Ref: branch})
			var entryErr *EntryError
			if !errors.Is(err, ErrTreeLimit) || !errors.As(err, &entryErr) || entryErr.Path != tt.entry || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want a tree limit naming %s and saying %q", err, tt.entry, tt.want)
			}
			if entries, _ := os.ReadDir(base); len(entries) != 0 {
				t.Errorf("left behind: %v", entries)
			}
		})
	}
}
