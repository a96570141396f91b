package render

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/format/gitignore"
)

// Options say what to render and how.
type Options struct {
	// Root is the source tree on disk (a checkout or a plain directory).
	// Source files are reported relative to it, and nothing outside it is
	// read.
	Root string
	// Path is the folder inside Root to render; empty means Root itself.
	Path string
	// Boundary, when set, names Root in errors about reading outside it
	// ("the Git work tree /home/me/shop"); otherwise it is "the
	// repository".
	Boundary string
	// AllowRemoteBases lets kustomizations load bases from remote Git
	// repositories and URLs.
	AllowRemoteBases bool
	// Jsonnet are the inputs and limits of jsonnet evaluation.
	Jsonnet JsonnetOptions
	// JsonnetEntry, when set, is the one .jsonnet file (relative to Path)
	// to evaluate instead of walking the folder.
	JsonnetEntry string
	// KustomizeHelm lets kustomizations inflate their helmCharts (with the
	// same in-process renderer as chart folders, never a helm binary).
	KustomizeHelm bool
	// Helm are the inputs of every Helm chart the render finds.
	Helm HelmOptions
	// Limits bound the render's memory, CPU time, duration and output.
	Limits Limits
	// Files says that Root holds files named one by one (SRC files or
	// standard input, as kubectl apply -f takes them): each is read as
	// manifests whatever its name, so a Chart.yaml or kustomization.yaml
	// among them makes no chart or kustomization, and a file that is
	// another tool's (Helm values, a jsonnet library) is an error naming
	// it, where a walk of a folder leaves such a file out.
	Files bool
	// ChartArchives are dependency archives fetched for charts: chart
	// folder (relative to Root) → .tgz files on disk, as `helm dependency
	// build` would have put them in the chart's charts/ folder. The driver
	// fetches them (see package chartdeps) before the render, which never
	// reaches the network.
	ChartArchives map[string][]string
	// SOPS are the keys that files encrypted with SOPS are decrypted with.
	SOPS SOPSOptions
}

// IgnoreFile lists, in gitignore syntax, files and folders of the source
// that are not rendered. It is read from the source root.
const IgnoreFile = ".gitk8signore"

// Render reads every manifest under opts.Path and returns the objects in a
// stable order. Each folder is rendered by what it holds: a folder with a
// kustomization is built with kustomize (and not walked further); otherwise
// a folder with a Chart.yaml is rendered as helm template renders it (and
// not walked further); otherwise its YAML and JSON files are decoded, its .jsonnet files evaluated
// (.libsonnet files are only imported) and its subfolders walked. Every
// problem found is returned, joined, as *Error values; a bundle with errors
// is never returned. The render runs in a child process bounded by
// opts.Limits (see isolate.go); a cancelled ctx stops it.
func Render(ctx context.Context, opts Options) (*Bundle, error) {
	return renderIsolated(ctx, opts)
}

// renderInProcess is the render itself, run inside the renderer child.
func renderInProcess(ctx context.Context, opts Options) (*Bundle, error) {
	dir := path.Clean(filepath.ToSlash(opts.Path))
	if dir == "" || dir == "/" {
		dir = "."
	}
	if !fs.ValidPath(dir) {
		return nil, fmt.Errorf("path %q must be relative to the source root and stay inside it", opts.Path)
	}
	if info, err := os.Stat(filepath.Join(opts.Root, dir)); err != nil {
		return nil, fmt.Errorf("path %q: %w", opts.Path, err)
	} else if !info.IsDir() {
		return nil, fmt.Errorf("path %q is not a directory", opts.Path)
	}
	if chart := enclosingChart(opts.Root, dir); chart != "" && !opts.Files {
		return nil, fmt.Errorf("path %q is inside the Helm chart %s: its files are the chart's templates and values, not manifests; render the chart's folder %s", dir, chart, chart)
	}
	ignore, err := readIgnore(opts.Root)
	if err != nil {
		return nil, err
	}
	w := &walker{opts: opts, ignore: ignore, top: dir}
	if opts.JsonnetEntry != "" {
		entry := path.Join(dir, filepath.ToSlash(opts.JsonnetEntry))
		if !fs.ValidPath(entry) {
			return nil, fmt.Errorf("jsonnet entry %q must stay inside the source", opts.JsonnetEntry)
		}
		w.add(renderJsonnet(opts.Root, entry, opts.Jsonnet))
	} else if err := w.walk(ctx, dir); err != nil {
		return nil, err
	}
	w.errs = append(w.errs, checkDuplicates(w.objects)...)
	if len(w.errs) > 0 {
		return nil, errors.Join(w.errs...)
	}
	return &Bundle{Objects: w.objects, Skipped: w.skipped}, nil
}

type walker struct {
	opts    Options
	ignore  gitignore.Matcher
	top     string // the folder the walk started in
	objects []*Object
	skipped []Skipped
	errs    []error
}

func (w *walker) add(objs []*Object, err error) {
	w.objects = append(w.objects, objs...)
	if err != nil {
		w.errs = append(w.errs, err)
	}
}

// walk renders one folder (relative to the root).
func (w *walker) walk(ctx context.Context, dir string) error {
	if w.opts.Files {
		return w.walkFiles(ctx, dir)
	}
	if file := kustomizationIn(w.opts.Root, dir); file != "" {
		// A Component is built as a part of the kustomizations that list
		// it; found on the way it is left out, named as the top folder it
		// is built as kubectl kustomize builds it.
		if dir != w.top && isComponent(w.opts.Root, file) {
			w.skipped = append(w.skipped, Skipped{File: dir, What: "a kustomize Component (built only by the kustomizations that list it under components)"})
			return nil
		}
		w.add(renderKustomization(ctx, w.opts.Root, dir, file, w.opts))
		return nil
	}
	if isChart(w.opts.Root, dir) {
		w.add(renderChart(ctx, w.opts.Root, dir, w.opts.Helm, w.opts.ChartArchives[dir], w.opts.SOPS))
		return nil
	}
	entries, err := os.ReadDir(filepath.Join(w.opts.Root, dir))
	if err != nil {
		return err
	}
	for _, e := range entries { // os.ReadDir sorts by name
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("render stopped: %w", err)
		}
		rel := path.Join(dir, e.Name())
		if strings.HasPrefix(e.Name(), ".") {
			continue // .git, .github and other tool files
		}
		isDir := e.IsDir()
		if e.Type()&fs.ModeSymlink != 0 {
			info, err := w.followLink(rel)
			if err != nil {
				w.errs = append(w.errs, &Error{Source: Source{File: rel}, Err: err})
				continue
			}
			isDir = info.IsDir()
		}
		if w.ignore != nil && w.ignore.Match(strings.Split(rel, "/"), isDir) {
			continue
		}
		if isDir {
			if err := w.walk(ctx, rel); err != nil {
				return err
			}
			continue
		}
		switch strings.ToLower(path.Ext(e.Name())) {
		case ".yaml", ".yml", ".json":
			data, err := os.ReadFile(filepath.Join(w.opts.Root, rel))
			if err != nil {
				return err
			}
			objs, err := w.decodeManifests(rel, data)
			if what := toolFile(rel, objs, err); what != "" {
				w.skipped = append(w.skipped, Skipped{File: rel, What: what})
				continue
			}
			w.add(objs, err)
		case ".jsonnet":
			w.add(renderJsonnet(w.opts.Root, rel, w.opts.Jsonnet))
		}
	}
	return nil
}

// decodeManifests decodes a YAML or JSON file of manifests, decrypting it
// first when SOPS encrypted it. Only Secrets may be encrypted: the masker
// knows a Secret's values, so a decrypted value never reaches an output.
func (w *walker) decodeManifests(rel string, data []byte) ([]*Object, error) {
	if !isSOPSFile(data) || w.opts.SOPS.Ciphertext {
		return decodeFile(rel, data)
	}
	plain, _, err := decryptSOPS(rel, data, w.opts.SOPS)
	if err != nil {
		return nil, err
	}
	objs, err := decodeFile(rel, plain)
	if err != nil {
		// The plaintext stays out of the message: name the file only.
		return nil, &Error{Source: Source{File: rel}, Err: errors.New("the decrypted file is not valid manifests; decrypt it with sops and fix it")}
	}
	for _, o := range objs {
		if o.Object.GetKind() != "Secret" || o.Object.GroupVersionKind().Group != "" {
			return nil, &Error{Source: Source{File: rel}, Object: o.Ref(), Err: errors.New("gitk8s decrypts Secrets only, so that every decrypted value stays masked in every output; make it a Secret, or keep it unencrypted")}
		}
		o.Encrypted = true
	}
	return objs, nil
}

// walkFiles reads a folder of files named one by one (Options.Files):
// every file is manifests, and one that is another tool's is an error.
func (w *walker) walkFiles(ctx context.Context, dir string) error {
	entries, err := os.ReadDir(filepath.Join(w.opts.Root, dir))
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("render stopped: %w", err)
		}
		rel := path.Join(dir, e.Name())
		if !e.Type().IsRegular() {
			w.errs = append(w.errs, &Error{Source: Source{File: rel}, Err: errors.New("not a regular file")})
			continue
		}
		switch strings.ToLower(path.Ext(e.Name())) {
		case ".jsonnet":
			w.add(renderJsonnet(w.opts.Root, rel, w.opts.Jsonnet))
			continue
		case ".libsonnet":
			w.errs = append(w.errs, &Error{Source: Source{File: rel}, Err: errors.New("this is a jsonnet library: .jsonnet files import it and it is not evaluated on its own; give the .jsonnet file that imports it, or the folder of both")})
			continue
		}
		data, err := os.ReadFile(filepath.Join(w.opts.Root, rel))
		if err != nil {
			return err
		}
		if slices.Contains(kustomizationFiles, e.Name()) {
			w.errs = append(w.errs, &Error{Source: Source{File: rel}, Err: errors.New("this is a kustomization, which kustomize builds from its folder; give the folder as SRC")})
			continue
		}
		objs, err := w.decodeManifests(rel, data)
		if what := toolFile(rel, objs, err); what != "" {
			w.errs = append(w.errs, toolFileError(rel, what))
			continue
		}
		w.add(objs, err)
	}
	return nil
}

// followLink resolves a symbolic link, refusing one that leaves the root.
func (w *walker) followLink(rel string) (fs.FileInfo, error) {
	root, err := filepath.EvalSymlinks(w.opts.Root)
	if err != nil {
		return nil, err
	}
	target, err := filepath.EvalSymlinks(filepath.Join(w.opts.Root, rel))
	if err != nil {
		// Said relative to the source: where it was written on disk
		// means nothing to whoever fixes the link.
		msg := strings.ReplaceAll(err.Error(), root+string(filepath.Separator), "")
		msg = strings.ReplaceAll(msg, w.opts.Root+string(filepath.Separator), "")
		if dest, rerr := os.Readlink(filepath.Join(w.opts.Root, rel)); rerr == nil {
			return nil, fmt.Errorf("broken symbolic link to %s (%s); fix or remove the link", dest, msg)
		}
		return nil, fmt.Errorf("broken symbolic link (%s); fix or remove the link", msg)
	}
	if target != root && !strings.HasPrefix(target, root+string(filepath.Separator)) {
		return nil, fmt.Errorf("symbolic link leaves the repository; gitk8s reads only files inside it")
	}
	return os.Stat(target)
}

// readIgnore reads the root's .gitk8signore, if any.
func readIgnore(root string) (gitignore.Matcher, error) {
	data, err := os.ReadFile(filepath.Join(root, IgnoreFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var patterns []gitignore.Pattern
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		patterns = append(patterns, gitignore.ParsePattern(line, nil))
	}
	return gitignore.NewMatcher(patterns), nil
}

// checkDuplicates reports every object defined more than once. Objects
// without a namespace are compared as written; namespace defaulting happens
// later, where the apply stage checks again.
func checkDuplicates(objects []*Object) []error {
	first := make(map[string]*Object, len(objects))
	var errs []error
	for _, obj := range objects {
		if obj.Object.GetName() == "" {
			continue // a hook with generateName: a new object each run
		}
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
