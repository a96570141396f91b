package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// EntryError is a tree entry gitk8s refuses to write. Whoever can push a
// commit decides what its tree holds, and Git trees can hold anything:
// duplicate names, names with slashes, a link and a folder of the same
// name, links that lead out through other links.
type EntryError struct {
	// Path is the entry's path in the tree, its folders joined by "/".
	Path string
	// Err says what is wrong with it.
	Err error
}

func (e *EntryError) Error() string {
	p := e.Path
	if p == "" || !utf8.ValidString(p) || strings.ContainsFunc(p, func(r rune) bool { return !unicode.IsPrint(r) }) {
		p = strconv.Quote(p)
	}
	return p + ": " + e.Err.Error()
}

func (e *EntryError) Unwrap() error { return e.Err }

// maxLinkHops is how many links a link may lead through (as Linux's
// MAXSYMLINKS); maxLinkTarget is the longest target it may have (PATH_MAX).
const (
	maxLinkHops   = 40
	maxLinkTarget = 4096
)

// TreeLimits bound what one snapshot may write: a commit with a file of a
// gigabyte, or a million small ones, fails its checkout naming the limit
// instead of filling the disk gitk8s and its other syncs share.
type TreeLimits struct {
	// FileBytes is the size of one file.
	FileBytes int64
	// TotalBytes is the size of all files together.
	TotalBytes int64
	// Entries is the number of files, folders and links.
	Entries int
}

// DefaultTreeLimits are the limits of every checkout: 64 MiB per file,
// 1 GiB in all, 200,000 entries. Kubernetes objects are at most 1.5 MiB
// each (etcd's request limit), so no manifest comes near them.
var DefaultTreeLimits = TreeLimits{FileBytes: 64 << 20, TotalBytes: 1 << 30, Entries: 200_000}

// ErrTreeLimit is wrapped by the error of a checkout stopped at one of the
// tree limits.
var ErrTreeLimit = errors.New("snapshot limit exceeded")

// writeTree writes tree into dir, an empty folder, and refuses with an
// *EntryError whatever could write outside dir, replace another entry or
// lead a reader outside dir later.
//
// Links are what makes that hard, so none exists while anything else is
// written: folders and files come first, each made where nothing is yet
// and only inside folders made by this walk, so no write can pass through
// a link or truncate anything. Then the links are made, and each is kept
// only if it resolves inside dir on disk, through whatever other links
// the tree holds.
func writeTree(ctx context.Context, objects storer.EncodedObjectStorer, tree *object.Tree, dir string) error {
	w := &treeWriter{objects: objects, root: dir, limits: DefaultTreeLimits}
	if err := w.writeFolder(ctx, tree, ""); err != nil {
		return err
	}
	for _, l := range w.links {
		if err := os.Symlink(l.target, w.onDisk(l.path)); err != nil {
			return fmt.Errorf("%s: %w", l.path, err)
		}
	}
	for _, l := range w.links {
		if err := w.resolveInside(l); err != nil {
			return err
		}
	}
	return nil
}

type treeWriter struct {
	objects storer.EncodedObjectStorer
	root    string
	links   []treeLink // made once every folder and file is written
	limits  TreeLimits
	entries int   // written so far
	bytes   int64 // of files written so far
}

type treeLink struct {
	path, target string
}

func (w *treeWriter) onDisk(p string) string {
	return filepath.Join(w.root, filepath.FromSlash(p))
}

// writeFolder writes the entries of tree into folder ("" for the root),
// which this walk made and is empty.
func (w *treeWriter) writeFolder(ctx context.Context, tree *object.Tree, folder string) error {
	seen := make(map[string]bool, len(tree.Entries))
	for _, e := range tree.Entries {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("checkout stopped: %w", err)
		}
		p := e.Name
		if folder != "" {
			p = folder + "/" + e.Name
		}
		if err := checkName(e.Name); err != nil {
			return &EntryError{Path: p, Err: err}
		}
		if seen[e.Name] {
			return &EntryError{Path: p, Err: errors.New("the tree holds this name twice")}
		}
		seen[e.Name] = true
		if w.entries++; w.entries > w.limits.Entries {
			return &EntryError{Path: p, Err: fmt.Errorf("%w: the tree holds more than %d files, folders and links; watch a smaller repository, or split it", ErrTreeLimit, w.limits.Entries)}
		}
		switch e.Mode {
		case filemode.Dir:
			sub, err := object.GetTree(w.objects, e.Hash)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			if err := os.Mkdir(w.onDisk(p), 0o755); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			if err := w.writeFolder(ctx, sub, p); err != nil {
				return err
			}
		case filemode.Regular, filemode.Executable, filemode.Deprecated:
			if err := w.writeFile(e.Hash, p); err != nil {
				var entryErr *EntryError
				if errors.As(err, &entryErr) {
					return err
				}
				return fmt.Errorf("%s: %w", p, err)
			}
		case filemode.Symlink:
			target, err := w.linkTarget(e.Hash, p)
			if err != nil {
				return err
			}
			w.links = append(w.links, treeLink{path: p, target: target})
		case filemode.Submodule:
			// Submodules are not fetched.
		default:
			return &EntryError{Path: p, Err: fmt.Errorf("mode %o is not a file, folder, link or submodule", uint32(e.Mode))}
		}
	}
	return nil
}

// writeFile creates the file at p; O_EXCL refuses to open anything that
// is there already, a link included.
func (w *treeWriter) writeFile(hash plumbing.Hash, p string) error {
	blob, err := object.GetBlob(w.objects, hash)
	if err != nil {
		return err
	}
	if blob.Size > w.limits.FileBytes {
		return &EntryError{Path: p, Err: fmt.Errorf("%w: the file is %d bytes, more than %d; keep large files out of the repository gitk8s watches", ErrTreeLimit, blob.Size, w.limits.FileBytes)}
	}
	if w.bytes += blob.Size; w.bytes > w.limits.TotalBytes {
		return &EntryError{Path: p, Err: fmt.Errorf("%w: the files of the tree are more than %d bytes together; keep large files out of the repository gitk8s watches", ErrTreeLimit, w.limits.TotalBytes)}
	}
	r, err := blob.Reader()
	if err != nil {
		return err
	}
	defer r.Close()
	out, err := os.OpenFile(w.onDisk(p), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, r); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// linkTarget reads the target of the link at p and refuses one that no
// resolving could keep inside the tree.
func (w *treeWriter) linkTarget(hash plumbing.Hash, p string) (string, error) {
	blob, err := object.GetBlob(w.objects, hash)
	if err != nil {
		return "", fmt.Errorf("%s: %w", p, err)
	}
	if blob.Size > maxLinkTarget {
		return "", &EntryError{Path: p, Err: fmt.Errorf("symbolic link target is %d bytes long, more than a path may be", blob.Size)}
	}
	r, err := blob.Reader()
	if err != nil {
		return "", fmt.Errorf("%s: %w", p, err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		return "", fmt.Errorf("%s: %w", p, err)
	}
	target := string(data)
	switch {
	case target == "":
		return "", &EntryError{Path: p, Err: errors.New("symbolic link has no target")}
	case strings.ContainsRune(target, 0):
		return "", &EntryError{Path: p, Err: fmt.Errorf("symbolic link target %q holds a NUL byte", target)}
	case path.IsAbs(target) || filepath.IsAbs(target) || filepath.VolumeName(target) != "":
		return "", leaves(p, target)
	}
	return target, nil
}

// resolveInside follows the link l on disk one name at a time, through
// every link it leads to, and refuses it if it leads above the root or
// through more links than a system would follow. Once a name is missing
// or is a file, the kernel would stop there; the rest is then checked as
// text, so that what is refused does not depend on what is missing.
func (w *treeWriter) resolveInside(l treeLink) error {
	at := strings.Split(l.path, "/")
	at = at[:len(at)-1] // the folder holding the link
	onDisk := len(at)   // at[:onDisk] are folders on disk; the rest is text
	pending := strings.Split(l.target, "/")
	hops := 0
	for len(pending) > 0 {
		name := pending[0]
		pending = pending[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			if len(at) == 0 {
				return leaves(l.path, l.target)
			}
			at = at[:len(at)-1]
			onDisk = min(onDisk, len(at))
			continue
		}
		next := append(at[:len(at):len(at)], name)
		if onDisk < len(at) {
			at = next
			continue
		}
		full := filepath.Join(w.root, filepath.Join(next...))
		info, err := os.Lstat(full)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			at = next
		case err != nil:
			return fmt.Errorf("%s: %w", l.path, err)
		case info.Mode()&fs.ModeSymlink != 0:
			if hops++; hops > maxLinkHops {
				return &EntryError{Path: l.path, Err: fmt.Errorf("symbolic link to %s leads through more than %d links", l.target, maxLinkHops)}
			}
			target, err := os.Readlink(full)
			if err != nil {
				return fmt.Errorf("%s: %w", l.path, err)
			}
			if path.IsAbs(target) || filepath.IsAbs(target) {
				return leaves(l.path, l.target)
			}
			pending = append(strings.Split(target, "/"), pending...)
		case info.IsDir():
			at = next
			onDisk = len(at)
		default:
			at = next
		}
	}
	return nil
}

func leaves(p, target string) error {
	return &EntryError{Path: p, Err: fmt.Errorf("symbolic link to %s leaves the repository; gitk8s reads only files inside it", target)}
}

// checkName refuses a name that is not one plain file or folder name, or
// that is Git's own folder under any of the names a file system may give
// it (the same names Git itself refuses).
func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("the entry has no name")
	case name == "." || name == "..":
		return errors.New("an entry may not be named . or ..")
	case strings.Contains(name, "/"):
		return errors.New("an entry's name may not hold a slash")
	case strings.Contains(name, `\`):
		return errors.New("an entry's name may not hold a backslash, a folder separator on Windows")
	case strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return errors.New("an entry's name may not hold a control character")
	case isDotGit(name):
		return errors.New("an entry may not be Git's own folder, .git, by any of its names")
	}
	return nil
}

// isDotGit tells .git by another name: in any case, as NTFS's short name
// git~1, with the trailing dots, spaces or stream name NTFS ignores, or
// with the code points HFS+ ignores.
func isDotGit(name string) bool {
	n := strings.Map(func(r rune) rune {
		if hfsIgnored(r) {
			return -1
		}
		return r
	}, name)
	if i := strings.IndexByte(n, ':'); i >= 0 {
		n = n[:i]
	}
	n = strings.TrimRight(n, ". ")
	return strings.EqualFold(n, ".git") || strings.EqualFold(n, "git~1")
}

func hfsIgnored(r rune) bool {
	return (r >= 0x200c && r <= 0x200f) || (r >= 0x202a && r <= 0x202e) || (r >= 0x206a && r <= 0x206f) || r == 0xfeff
}
