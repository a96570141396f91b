package render

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	yamlv3 "go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// kustomizationFiles are the names kustomize recognises, in its order.
var kustomizationFiles = []string{"kustomization.yaml", "kustomization.yml", "Kustomization"}

// kustomizeMu serializes builds: kustomize keeps process-wide state (its
// OpenAPI schema cache among it) that is not safe for concurrent builds.
var kustomizeMu sync.Mutex

// ErrRemoteBase is returned for a kustomization that loads from a remote
// repository or URL when the options do not allow it.
var ErrRemoteBase = errors.New("remote kustomize bases are not allowed")

// kustomizationIn returns the kustomization file of a directory, or "".
func kustomizationIn(root, dir string) string {
	for _, name := range kustomizationFiles {
		if info, err := os.Lstat(filepath.Join(root, dir, name)); err == nil && !info.IsDir() {
			return path.Join(dir, name)
		}
	}
	return ""
}

// renderKustomization builds the kustomization in dir (relative to
// root) as `kubectl kustomize` does, with plugins and Helm off, and loads
// confined to the repository root.
func renderKustomization(ctx context.Context, root, dir, file string, opts Options) ([]*Object, error) {
	src := Source{File: file}
	if err := checkKustomizations(root, dir, opts.AllowRemoteBases); err != nil {
		var rerr *Error
		if errors.As(err, &rerr) {
			return nil, err // names the kustomization at fault
		}
		return nil, &Error{Source: src, Err: err}
	}
	absRoot, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	overlay, err := inflateHelmCharts(ctx, root, absRoot, dir, opts)
	if err != nil {
		return nil, err
	}
	decrypt := &sopsReader{opts: opts.SOPS}
	disk := confinedFS{FileSystem: filesys.MakeFsOnDisk(), root: absRoot, overlay: overlay, sops: decrypt}
	k := krusty.MakeKustomizer(&krusty.Options{
		Reorder:          krusty.ReorderOptionUnspecified,
		LoadRestrictions: types.LoadRestrictionsRootOnly,
		PluginConfig:     types.DisabledPluginConfig(),
	})
	kustomizeMu.Lock()
	resMap, err := k.Run(disk, filepath.Join(absRoot, dir))
	kustomizeMu.Unlock()
	if err != nil {
		msg := strings.ReplaceAll(err.Error(), absRoot+string(filepath.Separator), "")
		var sopsErr *Error
		if errors.As(err, &sopsErr) && sopsErr.Source.File != "" {
			return nil, sopsErr // a file that cannot be decrypted, named
		}
		decrypt.mu.Lock()
		hidden := append(secretInputs(root, dir), decrypt.seen...)
		decrypt.mu.Unlock()
		return nil, &Error{Source: src, Err: fmt.Errorf("kustomize build failed: %s", redactSecretInputs(msg, hidden))}
	}
	var objects []*Object
	for _, res := range resMap.Resources() {
		data, err := res.MarshalJSON()
		if err != nil {
			// kustomize does not say which file the resource came from.
			return nil, &Error{Source: src, Object: res.GetKind() + "/" + res.GetName(), Err: fmt.Errorf("a resource of the kustomization cannot be read: %w", err)}
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(data); err != nil {
			return nil, &Error{Source: src, Err: err}
		}
		if err := checkObject(u); err != nil {
			return nil, &Error{Source: src, Object: describe(u), Err: err}
		}
		objects = append(objects, &Object{Object: u, Source: src})
	}
	if err := decrypt.checkHeld(file, objects); err != nil {
		return nil, err
	}
	return objects, nil
}

// kustomizationRefs is what gitk8s reads of a kustomization itself: where
// it loads from, the inputs of its Secret generators, and whether it
// inflates Helm charts.
type kustomizationRefs struct {
	HelmCharts      []struct{} `json:"helmCharts"`
	Resources       []string   `json:"resources"`
	Bases           []string   `json:"bases"`
	Components      []string   `json:"components"`
	SecretGenerator []struct {
		Literals []string `json:"literals"`
		Envs     []string `json:"envs"`
		Env      string   `json:"env"`
		Files    []string `json:"files"`
	} `json:"secretGenerator"`
}

// visitKustomizations calls visit for every kustomization reachable from
// dir through local resources, bases and components, each once.
func visitKustomizations(root, dir string, visit func(dir, file string, data []byte, k *kustomizationRefs) error) error {
	seen := map[string]bool{}
	var walk func(dir string) error
	walk = func(dir string) error {
		if seen[dir] {
			return nil
		}
		seen[dir] = true
		file := kustomizationIn(root, dir)
		if file == "" {
			return nil
		}
		data, err := readConfined(root, file)
		if err != nil {
			return &Error{Source: Source{File: file}, Err: err}
		}
		var k kustomizationRefs
		if err := yaml.Unmarshal(data, &k); err != nil {
			return nil // kustomize reports a broken file with its own words
		}
		if err := visit(dir, file, data, &k); err != nil {
			return err
		}
		for _, ref := range append(append(k.Resources, k.Bases...), k.Components...) {
			next := path.Clean(path.Join(dir, ref))
			if !fs.ValidPath(next) {
				continue
			}
			if info, err := os.Stat(filepath.Join(root, next)); err == nil && info.IsDir() {
				if err := walk(next); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(dir)
}

// checkKustomizations refuses, in every kustomization reachable from dir,
// in one pass: unless remote bases are allowed, resources, bases or
// components that are not local paths; and a key given twice (kustomize
// would keep the last without a word). Helm charts are for
// inflateHelmCharts.
func checkKustomizations(root, dir string, allowRemote bool) error {
	return visitKustomizations(root, dir, func(dir, file string, data []byte, k *kustomizationRefs) error {
		for _, ref := range append(append(k.Resources, k.Bases...), k.Components...) {
			_, statErr := os.Stat(filepath.Join(root, dir, ref))
			remote := statErr != nil && isRemote(ref)
			if remote && !allowRemote {
				return &Error{Source: Source{File: file}, Err: fmt.Errorf("%w: %q; vendor it into the repository, or allow remote bases for this sync (allowRemoteBases in a daemon sync, --allow-remote-bases on the command line)", ErrRemoteBase, ref)}
			}
			if !remote && (path.IsAbs(ref) || !fs.ValidPath(path.Clean(path.Join(dir, ref)))) {
				return &Error{Source: Source{File: file}, Err: fmt.Errorf("%q is outside the repository; gitk8s reads only files inside it", ref)}
			}
		}
		var tree yamlv3.Node
		if yamlv3.Unmarshal(data, &tree) == nil {
			if key, first := duplicateKey(&tree); key != nil {
				return &Error{Source: Source{File: file, Line: key.Line}, Err: fmt.Errorf("key %q is defined twice in one mapping, first at line %d; keep one", key.Value, first)}
			}
		}
		return nil
	})
}

// secretInputs are the values the Secret generators of the kustomizations
// reachable from dir would put in Secrets: each literal and its value, each
// line of their env files and its value, and each of their files. A
// kustomize error may quote any of them (a literal without "=" is printed
// whole), so they are removed from its message before anyone sees it.
func secretInputs(root, dir string) []string {
	var values []string
	add := func(v string) {
		if v = strings.TrimSpace(v); len(v) >= 3 {
			values = append(values, v, base64.StdEncoding.EncodeToString([]byte(v)))
		}
	}
	addPair := func(line string) {
		add(line)
		if _, v, ok := strings.Cut(line, "="); ok {
			add(v)
			add(strings.Trim(v, `"'`))
		}
	}
	read := func(dir, name string) string {
		p := path.Clean(path.Join(dir, name))
		if !fs.ValidPath(p) {
			return ""
		}
		abs, err := filepath.Abs(filepath.Join(root, p))
		if err != nil {
			return ""
		}
		absRoot, _ := filepath.Abs(root)
		data, err := confinedFS{FileSystem: filesys.MakeFsOnDisk(), root: absRoot}.ReadFile(abs)
		if err != nil || len(data) > 1<<20 {
			return ""
		}
		return string(data)
	}
	_ = visitKustomizations(root, dir, func(dir, _ string, _ []byte, k *kustomizationRefs) error {
		for _, g := range k.SecretGenerator {
			for _, l := range g.Literals {
				addPair(l)
			}
			envs := g.Envs
			if g.Env != "" {
				envs = append(envs, g.Env)
			}
			for _, e := range envs {
				for _, line := range strings.Split(read(dir, e), "\n") {
					addPair(line)
				}
			}
			for _, f := range g.Files {
				_, name, ok := strings.Cut(f, "=")
				if !ok {
					name = f
				}
				content := read(dir, name)
				add(content)
				for _, line := range strings.Split(content, "\n") {
					add(line)
				}
			}
		}
		return nil
	})
	// Longest first, so that a value is never left half-replaced by a
	// shorter one it contains.
	sort.Slice(values, func(i, j int) bool { return len(values[i]) > len(values[j]) })
	return values
}

// redactSecretInputs removes every Secret generator input from msg, and
// every value of a Secret kustomize quotes whole (its "multiple possible
// referrals" error prints each candidate as YAML).
func redactSecretInputs(msg string, values []string) string {
	for _, v := range values {
		msg = strings.ReplaceAll(msg, v, "[redacted]")
	}
	if !strings.Contains(msg, "kind: Secret") {
		return msg
	}
	lines := strings.Split(msg, "\n")
	under := -1 // the indentation of the data or stringData key being hidden
	for i, line := range lines {
		indent := len(line) - len(strings.TrimLeft(line, " "))
		key := strings.TrimSpace(line)
		switch {
		case under >= 0 && indent > under && key != "":
			if k, _, ok := strings.Cut(key, ":"); ok {
				lines[i] = line[:indent] + k + ": [redacted]"
			} else {
				lines[i] = line[:indent] + "[redacted]"
			}
			continue
		case key == "data:" || key == "stringData:":
			under = indent
			continue
		}
		under = -1
	}
	return strings.Join(lines, "\n")
}

// isRemote tells kustomize's remote references (URLs, git hosts, scp-like
// addresses) from local paths; it is asked only about paths that do not
// exist in the repository.
func isRemote(ref string) bool {
	if strings.Contains(ref, "://") || strings.HasPrefix(ref, "git@") {
		return true
	}
	switch strings.ToLower(path.Ext(ref)) {
	case ".yaml", ".yml", ".json":
		return false // a file name, even one that is missing
	}
	first, _, _ := strings.Cut(ref, "/")
	return strings.Contains(first, ".") && first != "." && first != ".."
}

// confinedFS is the disk, read only inside root: kustomize may not follow a
// path or symbolic link out of the repository.
type confinedFS struct {
	filesys.FileSystem
	root string
	// overlay holds files (absolute paths) that are read instead of the
	// disk's: the kustomizations whose Helm charts were inflated.
	overlay map[string][]byte
	// sops, when set, decrypts the SOPS-encrypted files read.
	sops *sopsReader
}

func (c confinedFS) inside(p string) error {
	abs, err := filepath.Abs(p)
	if err != nil {
		return err
	}
	resolved, err := filepath.EvalSymlinks(abs)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		// Nothing to resolve is fine only where nothing is. A link the
		// kernel follows but EvalSymlinks cannot (/proc/<pid>/fd/N names
		// "pipe:[…]") would otherwise be read where it really leads.
		if _, lerr := os.Lstat(abs); lerr == nil {
			return fmt.Errorf("%s is a link that does not resolve inside the repository; gitk8s reads only files inside it", strings.TrimPrefix(p, c.root+string(filepath.Separator)))
		}
		resolved = abs
	}
	rootResolved, err := filepath.EvalSymlinks(c.root)
	if err != nil {
		return err
	}
	if resolved != rootResolved && !strings.HasPrefix(resolved, rootResolved+string(filepath.Separator)) {
		return fmt.Errorf("%s is outside the repository; gitk8s reads only files inside it", strings.TrimPrefix(p, c.root+string(filepath.Separator)))
	}
	return nil
}

func (c confinedFS) Open(p string) (filesys.File, error) {
	if err := c.inside(p); err != nil {
		return nil, err
	}
	return c.FileSystem.Open(p)
}

func (c confinedFS) ReadFile(p string) ([]byte, error) {
	if data, ok := c.overlay[filepath.Clean(p)]; ok {
		return data, nil
	}
	if err := c.inside(p); err != nil {
		return nil, err
	}
	if info, err := os.Stat(p); err == nil && !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", strings.TrimPrefix(p, c.root+string(filepath.Separator)))
	}
	data, err := c.FileSystem.ReadFile(p)
	if err != nil || c.sops == nil {
		return data, err
	}
	return c.sops.read(filepath.ToSlash(strings.TrimPrefix(p, c.root+string(filepath.Separator))), data)
}

// readConfined reads the file rel of the source at root as kustomize's
// loads are read: inside root, regular files only.
func readConfined(root, rel string) ([]byte, error) {
	absRoot, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	return confinedFS{FileSystem: filesys.MakeFsOnDisk(), root: absRoot}.ReadFile(filepath.Join(absRoot, filepath.FromSlash(rel)))
}

func (c confinedFS) ReadDir(p string) ([]string, error) {
	if err := c.inside(p); err != nil {
		return nil, err
	}
	return c.FileSystem.ReadDir(p)
}

// CleanedAbs places an overlay file in its folder without asking the disk,
// where it is not.
func (c confinedFS) CleanedAbs(p string) (filesys.ConfirmedDir, string, error) {
	if _, ok := c.overlay[filepath.Clean(p)]; ok {
		dir, _, err := c.FileSystem.CleanedAbs(filepath.Dir(p))
		return dir, filepath.Base(p), err
	}
	return c.FileSystem.CleanedAbs(p)
}

func (c confinedFS) Exists(p string) bool {
	if _, ok := c.overlay[filepath.Clean(p)]; ok {
		return true
	}
	return c.inside(p) == nil && c.FileSystem.Exists(p)
}

func (c confinedFS) IsDir(p string) bool {
	if _, ok := c.overlay[filepath.Clean(p)]; ok {
		return false
	}
	return c.inside(p) == nil && c.FileSystem.IsDir(p)
}

// The build never writes; refuse it so nothing in the checkout changes.
func (c confinedFS) Create(p string) (filesys.File, error) { return nil, errReadOnly }
func (c confinedFS) Mkdir(p string) error                  { return errReadOnly }
func (c confinedFS) MkdirAll(p string) error               { return errReadOnly }
func (c confinedFS) RemoveAll(p string) error              { return errReadOnly }
func (c confinedFS) WriteFile(p string, _ []byte) error    { return errReadOnly }

var errReadOnly = errors.New("the source tree is read-only")
