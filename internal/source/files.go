package source

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Stdin is the SRC that names standard input, as kubectl apply -f - does.
const Stdin = "-"

// maxStdin bounds what is read from standard input.
const maxStdin = 64 << 20

// openFiles makes a snapshot of manifest files given one by one, as
// kubectl apply -f takes them: src and opts.Files, each a regular file or
// "-" for standard input, are copied into a new folder under their base
// names (stdin.yaml for standard input), and that folder is rendered. Two
// files of the same name, a folder among several files, --ref and --path
// are refused.
func openFiles(src string, opts Options) (*Snapshot, error) {
	files := append([]string{src}, opts.Files...)
	if opts.Ref != "" || opts.SemVer != "" {
		return nil, fmt.Errorf("source %s is a file, so --ref and --semver have no meaning; give the repository as SRC", src)
	}
	if opts.Path != "" {
		return nil, fmt.Errorf("source %s is a file, so --path has no meaning; give the folder as SRC", src)
	}
	dir, err := os.MkdirTemp("", "gitk8s-files-")
	if err != nil {
		return nil, err
	}
	snap := &Snapshot{Origin: strings.Join(files, " "), Root: dir, Files: true, cleanup: func() error { return os.RemoveAll(dir) }}
	fail := func(err error) (*Snapshot, error) {
		_ = snap.Close()
		return nil, err
	}
	seen := map[string]string{}
	stdinRead := false
	for _, f := range files {
		name := filepath.Base(f)
		var data []byte
		switch {
		case f == Stdin:
			if stdinRead {
				return fail(errors.New("standard input (-) is given twice"))
			}
			stdinRead = true
			if opts.Stdin == nil {
				return fail(errors.New("SRC - reads standard input, which this command does not have"))
			}
			name = "stdin.yaml"
			data, err = io.ReadAll(io.LimitReader(opts.Stdin, maxStdin+1))
			if err != nil {
				return fail(fmt.Errorf("reading standard input: %w", err))
			}
			if len(data) > maxStdin {
				return fail(fmt.Errorf("standard input is more than %d MiB; give the manifests as files or a folder", maxStdin>>20))
			}
		case IsRemote(f):
			return fail(fmt.Errorf("source %s: a URL cannot be given with files; give one repository or folder as SRC, or files only", f))
		default:
			info, err := os.Stat(f)
			if err != nil {
				return fail(fmt.Errorf("source %s: %w", f, err))
			}
			if info.IsDir() {
				return fail(fmt.Errorf("source %s is a folder; several SRC must all be files (give one folder as SRC to render a folder)", f))
			}
			if !info.Mode().IsRegular() {
				return fail(fmt.Errorf("source %s is not a regular file", f))
			}
			if data, err = os.ReadFile(f); err != nil {
				return fail(fmt.Errorf("source %s: %w", f, err))
			}
			switch strings.ToLower(filepath.Ext(name)) {
			case ".yaml", ".yml", ".json", ".jsonnet", ".libsonnet":
			default:
				if name == "Kustomization" {
					break // named for what it is
				}
				name += ".yaml" // read as YAML, as kubectl reads any file
			}
		}
		if prev, ok := seen[name]; ok {
			return fail(fmt.Errorf("sources %s and %s have the same file name %s; objects are reported by file name, so rename one", prev, f, name))
		}
		seen[name] = f
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return fail(err)
		}
	}
	return snap, nil
}

// enclosingWorkTree finds the Git work tree a folder lies in, below its
// top: the top and the folder relative to it.
func enclosingWorkTree(dir string) (top, rel string, ok bool) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", "", false
	}
	abs, err = filepath.EvalSymlinks(abs)
	if err != nil {
		return "", "", false
	}
	for d := filepath.Dir(abs); ; d = filepath.Dir(d) {
		if _, err := os.Lstat(filepath.Join(d, ".git")); err == nil {
			rel, err := filepath.Rel(d, abs)
			if err != nil {
				return "", "", false
			}
			return d, rel, true
		}
		if parent := filepath.Dir(d); parent == d {
			return "", "", false
		}
	}
}
