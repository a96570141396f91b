package render

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Options say what to render.
type Options struct {
	// Root is the source tree on disk (a checkout or a plain directory).
	// Source files are reported relative to it.
	Root string
	// Path is the folder inside Root to render; empty means Root itself.
	Path string
}

// Render reads every manifest under opts.Path and returns the objects in a
// stable order. Every problem found is returned, joined, as *Error values; a
// bundle with errors is never returned.
func Render(opts Options) (*Bundle, error) {
	dir := path.Clean(filepath.ToSlash(opts.Path))
	if dir == "" || dir == "/" {
		dir = "."
	}
	if !fs.ValidPath(dir) {
		return nil, fmt.Errorf("path %q must be relative to the source root and stay inside it", opts.Path)
	}
	fsys := os.DirFS(opts.Root)
	if info, err := fs.Stat(fsys, dir); err != nil {
		return nil, fmt.Errorf("path %q: %w", opts.Path, err)
	} else if !info.IsDir() {
		return nil, fmt.Errorf("path %q is not a directory", opts.Path)
	}

	var objects []*Object
	var errs []error
	err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir // .git, .github and other tool folders
			}
			return nil
		}
		if d.IsDir() || !isManifest(d.Name()) {
			return nil
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		objs, err := decodeFile(p, data)
		objects = append(objects, objs...)
		if err != nil {
			errs = append(errs, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	errs = append(errs, checkDuplicates(objects)...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &Bundle{Objects: objects}, nil
}

func isManifest(name string) bool {
	switch strings.ToLower(path.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// checkDuplicates reports every object defined more than once. Objects
// without a namespace are compared as written; namespace defaulting happens
// later, where the apply stage checks again.
func checkDuplicates(objects []*Object) []error {
	first := make(map[string]*Object, len(objects))
	var errs []error
	for _, obj := range objects {
		id := obj.ID()
		key := id.GroupKind.String() + "/" + id.Namespace + "/" + id.Name
		if prev, ok := first[key]; ok {
			errs = append(errs, &Error{Source: obj.Source, Object: obj.Ref(),
				Err: fmt.Errorf("defined twice, first at %s; keep one definition", prev.Source)})
			continue
		}
		first[key] = obj
	}
	return errs
}
