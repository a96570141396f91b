package source

import (
	"bytes"
	"context"
	"crypto/sha1"
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/memory"
)

// A tree script describes a Git tree, one entry a line, so that the fuzzer
// can write any tree, hostile ones included (duplicate names, names with
// slashes, links through links, odd modes):
//
//	f NAME<TAB>CONTENT   a file
//	x NAME<TAB>CONTENT   an executable file
//	l NAME<TAB>TARGET    a symbolic link
//	s NAME               a submodule
//	m NAME<TAB>MODE      an entry of any octal mode, holding an empty blob
//	d NAME               a folder; the lines up to the matching ")" are in it
//	)                    the end of a folder
//
// In CONTENT and TARGET, {outside} stands for the absolute path of a folder
// next to the destination, which holds the sentinel file.
type scriptEntry struct {
	mode string // as written in the tree
	kind byte   // what go-git reads the mode as: 'f', 'l', 'd' or 's'
	name string
	data string
	kids []*scriptEntry
}

// maxScriptEntries keeps one run of the fuzzer quick.
const maxScriptEntries = 64

// parseTreeScript reads a script; ok is false for one the fuzzer should
// not spend time on (too many entries, or a NUL in a name, which the tree
// format cannot hold).
func parseTreeScript(script, outside string) (root []*scriptEntry, ok bool) {
	stack := []*[]*scriptEntry{&root}
	n := 0
	for _, line := range strings.Split(script, "\n") {
		if line == "" {
			continue
		}
		if line == ")" {
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
			continue
		}
		if len(line) < 2 || line[1] != ' ' {
			continue
		}
		if n++; n > maxScriptEntries {
			return nil, false
		}
		name, data, _ := strings.Cut(line[2:], "\t")
		if strings.ContainsRune(name, 0) {
			return nil, false
		}
		data = strings.ReplaceAll(data, "{outside}", outside)
		e := &scriptEntry{name: name, data: data}
		switch line[0] {
		case 'f':
			e.mode, e.kind = "100644", 'f'
		case 'x':
			e.mode, e.kind = "100755", 'f'
		case 'l':
			e.mode, e.kind = "120000", 'l'
		case 's':
			e.mode, e.kind = "160000", 's'
		case 'd':
			e.mode, e.kind = "40000", 'd'
		case 'm':
			mode, err := strconv.ParseUint(data, 8, 32)
			if err != nil {
				return nil, false
			}
			e.mode, e.data = data, ""
			// As go-git reads a mode: by its type bits alone.
			switch mode & 0o170000 {
			case 0o040000:
				e.kind = 'd'
			case 0o100000:
				e.kind = 'f'
			case 0o120000:
				e.kind = 'l'
			default:
				e.kind = 's'
			}
		default:
			continue
		}
		top := stack[len(stack)-1]
		*top = append(*top, e)
		if line[0] == 'd' {
			stack = append(stack, &e.kids)
		}
	}
	return root, true
}

// storeTree stores entries as a raw tree object, in the order given and
// without any of Git's checks, and returns its hash.
func storeTree(t *testing.T, st *memory.Storage, entries []*scriptEntry) plumbing.Hash {
	var raw bytes.Buffer
	for _, e := range entries {
		var h plumbing.Hash
		switch {
		case e.mode == "40000":
			h = storeTree(t, st, e.kids)
		case e.kind == 's':
			h = plumbing.Hash(sha1.Sum([]byte(e.name))) // a commit that is not there
		default:
			h = storeObject(t, st, plumbing.BlobObject, []byte(e.data))
		}
		raw.WriteString(e.mode + " " + e.name + "\x00")
		raw.Write(h[:])
	}
	return storeObject(t, st, plumbing.TreeObject, raw.Bytes())
}

func storeObject(t *testing.T, st *memory.Storage, kind plumbing.ObjectType, data []byte) plumbing.Hash {
	obj := st.NewEncodedObject()
	obj.SetType(kind)
	w, err := obj.Writer()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	h, err := st.SetEncodedObject(obj)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// treeSeeds are the trees of TestHostileTrees and ordinary ones, as scripts.
var treeSeeds = []string{
	"f README.md\thello\nd deploy\nf app.yaml\tapiVersion: v1\nx run.sh\t#!/bin/sh\n)\nl latest\tdeploy\n",
	"d d\nl up\t..\n)\nl esc\td/up/..\nd esc\nd outside\nf sentinel\tpwned\n)\n)\n",
	"d d\nl up\t..\n)\nl x\td/up/../outside/sentinel\nf x\tpwned\n",
	"d d\nl up\t..\n)\nl esc\td/up/..\nf esc/outside/sentinel\tpwned\n",
	"l tmp\t{outside}/..\nf tmp/outside/sentinel\tpwned\n",
	"l abs\t{outside}\nd abs\nf sentinel\tpwned\n)\n",
	"d d\nf f\tmine\n)\nl ln\td\nd ln\nf f\toverwritten\n)\n",
	"d d\nl up\t..\n)\nl secret\td/up/../outside/sentinel\n",
	"l a\tz/../outside/sentinel\nl z\t.\n",
	"l l1\tl2/..\nl l2\tl3/..\nl l3\t.\nd outside\n)\n",
	"l up\t../outside/sentinel\n",
	"l abs\t{outside}/sentinel\n",
	"l a\tb\nl b\ta\n",
	"f a\tone\nf a\ttwo\n",
	"d a\n)\nf a\tfile\n",
	"f .git\tx\nf .GIT.\tx\nf git~1\tx\nf .g\u200cit\tx\n",
	"f ..\tx\n",
	"f a\\b\tx\n",
	"m odd\t777\nm dir-ish\t40755\n",
	"s vendor/lib\n",
	"l ok\tdeploy/../README.md\nf README.md\tx\nd deploy\n)\n",
	"d a\nd b\nl c\t../../a/b\n)\n)\n",
	"l f\tfile/..\nf file\tx\n",
	"l m\tmissing/../../outside\n",
}

// FuzzWriteTree checks the snapshot writer against any tree: it never
// writes, changes or removes anything outside its destination, whatever it
// returns; its errors name an entry; and when it succeeds the snapshot
// holds exactly the tree's files, folders and links, and every link
// resolves inside the snapshot.
func FuzzWriteTree(f *testing.F) {
	for _, s := range treeSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, script string) {
		base := t.TempDir()
		outside := filepath.Join(base, "outside")
		dest := filepath.Join(base, "snapshot")
		for _, dir := range []string{outside, filepath.Join(outside, "folder"), dest} {
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(outside, "sentinel"), []byte("sentinel"), 0o644); err != nil {
			t.Fatal(err)
		}
		root, ok := parseTreeScript(script, filepath.ToSlash(outside))
		if !ok {
			return
		}
		st := memory.NewStorage()
		tree, err := object.GetTree(st, storeTree(t, st, root))
		if err != nil {
			return // a tree go-git does not read is never written
		}
		before := listTree(t, base, dest)

		err = writeTree(context.Background(), st, tree, dest)

		if after := listTree(t, base, dest); !equalListings(before, after) {
			t.Fatalf("the writer changed what is outside its destination (error %v):\nbefore %q\nafter  %q", err, before, after)
		}
		if info, lerr := os.Lstat(dest); lerr != nil || !info.IsDir() {
			t.Fatalf("the destination is no longer a folder: %v", lerr)
		}
		if err != nil {
			var entryErr *EntryError
			if !errors.As(err, &entryErr) && !namesAnEntry(err.Error(), "", root) {
				t.Fatalf("error %q names no entry", err)
			}
			return
		}
		want := map[string]string{}
		wantTree(root, "", want)
		if got := listTree(t, dest, ""); !equalListings(want, got) {
			t.Fatalf("the snapshot does not hold the tree:\nwant %q\ngot  %q", want, got)
		}
		for p, what := range want {
			if strings.HasPrefix(what, "link to ") {
				checkInside(t, dest, p)
			}
		}
	})
}

// listTree is every path under dir but skip with what it holds: a file's
// content, a link's target or "dir".
func listTree(t *testing.T, dir, skip string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		if p == skip {
			return filepath.SkipDir
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			got[rel] = "link to " + target
			return err
		case d.IsDir():
			got[rel] = "dir"
		default:
			data, err := os.ReadFile(p)
			got[rel] = "file " + string(data)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func equalListings(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// wantTree is what a snapshot of the entries holds, as listTree lists it.
func wantTree(entries []*scriptEntry, folder string, into map[string]string) {
	for _, e := range entries {
		p := path.Join(folder, e.name)
		switch e.kind {
		case 'd':
			into[p] = "dir"
			wantTree(e.kids, p, into)
		case 'l':
			into[p] = "link to " + e.data
		case 'f':
			into[p] = "file " + e.data
		}
	}
}

// namesAnEntry reports whether msg starts with the path of one of the
// entries.
func namesAnEntry(msg, folder string, entries []*scriptEntry) bool {
	for _, e := range entries {
		p := e.name
		if folder != "" {
			p = folder + "/" + e.name
		}
		if strings.HasPrefix(msg, p+": ") || namesAnEntry(msg, p, e.kids) {
			return true
		}
	}
	return false
}

// checkInside fails unless the link at rel resolves inside root: where the
// kernel can follow it, where it leads; where it cannot, name by name, on
// disk as far as the names are there and as text beyond, as the writer
// promises.
func checkInside(t *testing.T, root, rel string) {
	t.Helper()
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		t.Fatal(err)
	}
	if resolved, err := filepath.EvalSymlinks(filepath.Join(root, rel)); err == nil {
		if resolved != realRoot && !strings.HasPrefix(resolved, realRoot+string(filepath.Separator)) {
			t.Fatalf("link %s resolves to %s, outside the snapshot", rel, resolved)
		}
		return
	}
	// at is the folder reached, as names below root; at[:known] are
	// folders on disk, the rest is text.
	at := strings.Split(path.Dir(rel), "/")
	if at[0] == "." {
		at = nil
	}
	known := len(at)
	pending := []string{path.Base(rel)}
	hops := 0
	for len(pending) > 0 {
		name := pending[0]
		pending = pending[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			if len(at) == 0 {
				t.Fatalf("link %s leads above the snapshot", rel)
			}
			at = at[:len(at)-1]
			known = min(known, len(at))
			continue
		}
		next := append(append([]string(nil), at...), name)
		if known < len(at) {
			at = next
			continue
		}
		full := filepath.Join(append([]string{root}, next...)...)
		info, err := os.Lstat(full)
		switch {
		case err == nil && info.Mode()&fs.ModeSymlink != 0:
			if hops++; hops > maxLinkHops {
				t.Fatalf("link %s leads through more than %d links", rel, maxLinkHops)
			}
			target, err := os.Readlink(full)
			if err != nil {
				t.Fatal(err)
			}
			if filepath.IsAbs(target) {
				t.Fatalf("link %s leads through %s to %s", rel, full, target)
			}
			pending = append(strings.Split(target, "/"), pending...)
		case err == nil && info.IsDir():
			at = next
			known = len(at)
		default:
			at = next
		}
	}
}
