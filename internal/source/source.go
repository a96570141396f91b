package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

// ErrRefNotFound means the repository has no branch, tag or commit by the
// name asked for.
var ErrRefNotFound = errors.New("ref not found")

// Snapshot is one revision of a source as a tree on disk.
type Snapshot struct {
	// Origin is the source as the user named it.
	Origin string
	// Root is the tree on disk; render reads from here.
	Root string
	// Path is the folder inside Root to render ("" for Root itself).
	Path string
	// Ref is the ref that was resolved ("HEAD", a branch, tag or SHA); empty
	// for a plain directory.
	Ref string
	// Revision is the commit SHA; empty for a plain directory.
	Revision string
	// Boundary names, for error messages, what a render of this snapshot
	// may read when that is not plain from Origin: the Git work tree a
	// folder was found in.
	Boundary string
	// Files is true for a snapshot of files named one by one (SRC files
	// or standard input): each is read as manifests, whatever its name.
	Files bool

	cleanup func() error
}

// Close removes whatever Open wrote to disk.
func (s *Snapshot) Close() error {
	if s.cleanup == nil {
		return nil
	}
	return s.cleanup()
}

// Options say which revision and folder to open.
type Options struct {
	// Ref is a branch, tag or commit of a Git source; empty means HEAD
	// (for a remote, its default branch).
	Ref string
	// SemVer, for a remote, picks the highest tag in a semver range.
	SemVer string
	// Path is a folder inside the source.
	Path string
	// Auth are the credentials of a remote.
	Auth Auth
	// Fetcher caches remotes; nil uses one under DefaultCacheDir.
	Fetcher *Fetcher
	// Timeout bounds each network operation on a remote.
	Timeout time.Duration
	// Files are more manifest files given beside a file SRC, as kubectl
	// apply takes several -f; see openFiles.
	Files []string
	// Stdin is read when SRC is "-".
	Stdin io.Reader
	// OCI says how to reach the registry of an oci:// SRC; Ref is then a
	// tag (or a digest sha256:…).
	OCI OCIOptions
	// OCIFetcher caches artifacts; nil uses one under DefaultCacheDir.
	OCIFetcher *OCIFetcher
}

// Open opens a local directory or a local Git repository. A directory with
// a .git folder (or a bare repository) is read at opts.Ref; any other
// directory is read as it is. A cancelled ctx stops a fetch or a
// checkout between files.
func Open(ctx context.Context, src string, opts Options) (*Snapshot, error) {
	if len(opts.Files) > 0 || src == Stdin {
		return openFiles(src, opts)
	}
	if IsOCI(src) {
		return openOCI(ctx, src, opts)
	}
	if IsRemote(src) {
		return openRemote(ctx, src, opts)
	}
	info, err := os.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", src, err)
	}
	if !info.IsDir() {
		return openFiles(src, opts)
	}
	repo, err := git.PlainOpen(src)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		if opts.Ref != "" {
			return nil, fmt.Errorf("source %s is not a Git repository, so --ref %s has no meaning", src, opts.Ref)
		}
		if top, rel, ok := enclosingWorkTree(src); ok {
			// A folder of a work tree may read its siblings (../base), as
			// kubectl kustomize does; the work tree is the boundary.
			return &Snapshot{Origin: src, Root: top, Path: path.Join(filepath.ToSlash(rel), filepath.ToSlash(opts.Path)),
				Boundary: "the Git work tree " + top}, nil
		}
		return &Snapshot{Origin: src, Root: src, Path: opts.Path}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("source %s: open Git repository: %w", src, err)
	}
	return checkout(ctx, src, repo, opts)
}

// checkout writes the tree of the resolved commit to a new directory.
func checkout(ctx context.Context, origin string, repo *git.Repository, opts Options) (*Snapshot, error) {
	ref := opts.Ref
	if ref == "" {
		ref = "HEAD"
	}
	hash, err := repo.ResolveRevision(plumbing.Revision(ref))
	if err != nil {
		return nil, fmt.Errorf("source %s: %w: %q (%v); name a branch, tag or commit that exists", origin, ErrRefNotFound, ref, err)
	}
	commit, err := repo.CommitObject(*hash)
	if err != nil {
		return nil, fmt.Errorf("source %s: commit %s: %w", origin, hash, err)
	}
	tree, err := commit.Tree()
	if err != nil {
		return nil, fmt.Errorf("source %s: tree of %s: %w", origin, hash, err)
	}
	dir, err := os.MkdirTemp("", "gitk8s-"+hash.String()[:12]+"-")
	if err != nil {
		return nil, err
	}
	snap := &Snapshot{Origin: origin, Root: dir, Path: opts.Path, Ref: ref, Revision: hash.String(),
		cleanup: func() error { return os.RemoveAll(dir) }}
	if err := writeTree(ctx, repo.Storer, tree, dir); err != nil {
		_ = snap.Close()
		return nil, fmt.Errorf("source %s at %s: %w", origin, hash, err)
	}
	return snap, nil
}

// openRemote fetches a remote repository through the cache.
func openRemote(ctx context.Context, src string, opts Options) (*Snapshot, error) {
	f := opts.Fetcher
	if f == nil {
		dir, err := DefaultCacheDir()
		if err != nil {
			return nil, err
		}
		f = NewFetcher(dir)
	}
	ref := Ref{SemVer: opts.SemVer}
	if opts.SemVer == "" {
		if fullSHA.MatchString(opts.Ref) {
			ref.Commit = opts.Ref
		} else {
			ref.Name = opts.Ref
		}
	}
	snap, _, err := f.Fetch(ctx, RemoteOptions{URL: src, Ref: ref, Path: opts.Path, Auth: opts.Auth, Timeout: opts.Timeout})
	return snap, err
}

// openOCI reads an artifact from a registry.
func openOCI(ctx context.Context, src string, opts Options) (*Snapshot, error) {
	tag, dig := opts.Ref, ""
	if len(tag) > 7 && tag[:7] == "sha256:" {
		tag, dig = "", tag
	}
	ref, err := ParseOCI(src, tag, opts.SemVer)
	if err != nil {
		return nil, err
	}
	if dig != "" {
		ref.Tag, ref.Digest = "", dig
	}
	f := opts.OCIFetcher
	if f == nil {
		dir, err := DefaultCacheDir()
		if err != nil {
			return nil, err
		}
		f = NewOCIFetcher(filepath.Join(dir, "oci"))
	}
	snap, _, err := f.Fetch(ctx, ref, opts.Path, opts.OCI)
	return snap, err
}

var fullSHA = regexp.MustCompile(`^[0-9a-f]{40}$`)
