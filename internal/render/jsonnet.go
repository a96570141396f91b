package render

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-jsonnet"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
)

// JsonnetOptions are the inputs and limits of jsonnet evaluation.
type JsonnetOptions struct {
	// TLAs are top-level arguments (strings), ExtVars external variables
	// (strings), as `jsonnet --tla-str` and `--ext-str` give them.
	TLAs    map[string]string
	ExtVars map[string]string
	// LibPaths are library folders, relative to the repository root.
	LibPaths []string
	// Timeout bounds one file's evaluation (default 30s).
	Timeout time.Duration
	// MaxOutputBytes bounds one file's output (default 32 MiB).
	MaxOutputBytes int
}

func (o JsonnetOptions) withDefaults() JsonnetOptions {
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.MaxOutputBytes <= 0 {
		o.MaxOutputBytes = 32 << 20
	}
	return o
}

// renderJsonnet evaluates one .jsonnet file and flattens its output into
// objects.
func renderJsonnet(root, file string, opts JsonnetOptions) ([]*Object, error) {
	opts = opts.withDefaults()
	src := Source{File: file}
	absRoot, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	absFile := filepath.Join(absRoot, file)
	vm := jsonnet.MakeVM()
	var jpaths []string
	for _, lib := range opts.LibPaths {
		jpaths = append(jpaths, filepath.Join(absRoot, lib))
	}
	vm.Importer(&confinedImporter{root: absRoot, jpaths: jpaths})
	// std.trace writes to the renderer's stderr, which gitk8s reads to tell
	// why a renderer died: a repository may not write there.
	vm.SetTraceOut(io.Discard)
	for k, v := range opts.TLAs {
		vm.TLAVar(k, v)
	}
	for k, v := range opts.ExtVars {
		vm.ExtVar(k, v)
	}

	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := vm.EvaluateFile(absFile)
		done <- result{out, err}
	}()
	var res result
	select {
	case res = <-done:
	case <-time.After(opts.Timeout):
		return nil, &Error{Source: src, Err: fmt.Errorf("jsonnet evaluation took longer than %s; simplify it or raise the limit", opts.Timeout)}
	}
	if res.err != nil {
		msg := strings.ReplaceAll(res.err.Error(), absRoot+string(filepath.Separator), "")
		return nil, &Error{Source: src, Err: fmt.Errorf("jsonnet: %s", strings.TrimSpace(msg))}
	}
	if len(res.out) > opts.MaxOutputBytes {
		return nil, &Error{Source: src, Err: fmt.Errorf("jsonnet output is %d bytes, more than the limit of %d", len(res.out), opts.MaxOutputBytes)}
	}
	var value any
	if err := utiljson.Unmarshal([]byte(res.out), &value); err != nil {
		return nil, &Error{Source: src, Err: err}
	}
	var objects []*Object
	var errs []error
	flattenJsonnet(value, "$", func(where string, m map[string]any) {
		u := &unstructured.Unstructured{Object: m}
		if err := checkObject(u); err != nil {
			errs = append(errs, &Error{Source: src, Object: strings.TrimSpace(where + " " + describe(u)), Err: err})
			return
		}
		if u.IsList() {
			items, err := expandList(u, src)
			objects = append(objects, items...)
			if err != nil {
				errs = append(errs, err)
			}
			return
		}
		objects = append(objects, &Object{Object: u, Source: src})
	}, func(where string, v any) {
		errs = append(errs, &Error{Source: src, Object: where, Err: fmt.Errorf("jsonnet output holds a %s where an object was expected", jsonType(v))})
	})
	return objects, errors.Join(errs...)
}

// flattenJsonnet walks jsonnet output: an object with a kind is an object;
// arrays, and objects without apiVersion and kind, hold more of them (in key
// order, as jsonnet's output is sorted).
func flattenJsonnet(v any, where string, object func(string, map[string]any), bad func(string, any)) {
	switch t := v.(type) {
	case map[string]any:
		if _, ok := t["kind"]; ok {
			object(where, t)
			return
		}
		if _, ok := t["apiVersion"]; ok {
			object(where, t)
			return
		}
		for _, k := range sortedKeys(t) {
			flattenJsonnet(t[k], where+"."+k, object, bad)
		}
	case []any:
		for i, e := range t {
			flattenJsonnet(e, fmt.Sprintf("%s[%d]", where, i), object, bad)
		}
	case nil:
	default:
		bad(where, v)
	}
}

// confinedImporter resolves imports as jsonnet's file importer does
// (relative to the importing file, then the library paths, the last
// first), but looks at where each candidate leads before it reads it: only
// regular files inside the repository are read.
type confinedImporter struct {
	root   string
	jpaths []string
	cache  map[string]jsonnet.Contents
}

func (c *confinedImporter) Import(importedFrom, importedPath string) (jsonnet.Contents, string, error) {
	// The entry file itself comes in with an absolute path and no importer.
	if filepath.IsAbs(importedPath) && importedFrom != "" {
		return jsonnet.Contents{}, "", fmt.Errorf("import %q: absolute paths leave the repository; import relative to the file or a library path", importedPath)
	}
	var candidates []string
	if filepath.IsAbs(importedPath) {
		candidates = []string{importedPath}
	} else {
		candidates = append(candidates, filepath.Join(filepath.Dir(importedFrom), importedPath))
		for i := len(c.jpaths) - 1; i >= 0; i-- {
			candidates = append(candidates, filepath.Join(c.jpaths[i], importedPath))
		}
	}
	rootResolved, err := filepath.EvalSymlinks(c.root)
	if err != nil {
		return jsonnet.Contents{}, "", err
	}
	for _, candidate := range candidates {
		if contents, ok := c.cache[candidate]; ok {
			return contents, candidate, nil
		}
		if _, err := os.Lstat(candidate); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		resolved, err := filepath.EvalSymlinks(candidate)
		if err != nil || !strings.HasPrefix(resolved, rootResolved+string(filepath.Separator)) {
			return jsonnet.Contents{}, "", fmt.Errorf("import %q leaves the repository; gitk8s reads only files inside it", importedPath)
		}
		info, err := os.Stat(resolved)
		if err != nil {
			return jsonnet.Contents{}, "", err
		}
		if !info.Mode().IsRegular() {
			return jsonnet.Contents{}, "", fmt.Errorf("import %q is not a regular file", importedPath)
		}
		data, err := os.ReadFile(resolved)
		if err != nil {
			return jsonnet.Contents{}, "", err
		}
		if c.cache == nil {
			c.cache = map[string]jsonnet.Contents{}
		}
		contents := jsonnet.MakeContentsRaw(data)
		c.cache[candidate] = contents
		return contents, candidate, nil
	}
	return jsonnet.Contents{}, "", fmt.Errorf("couldn't open import %q: no match locally or in the library paths; import relative to the file, or add a library folder (--jsonnet-lib, source.jsonnet.libs)", importedPath)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
