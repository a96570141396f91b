package policy

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/gitk8s/gitk8s/internal/render"
	"github.com/gitk8s/gitk8s/policies"
)

// PoliciesDir is the folder of a repository that holds admission policies
// for gitk8s to evaluate (and not to apply).
const PoliciesDir = "policies"

// LoadAdmission gathers the ValidatingAdmissionPolicies and bindings
// gitk8s evaluates: its built-in ones, those in the repository's policies/
// folder, and those among the objects being applied.
func LoadAdmission(ctx context.Context, root, renderedPath string, objects []*render.Object) (*AdmissionPolicies, error) {
	return loadAdmission(ctx, root, renderedPath, []string{PoliciesDir}, false, objects)
}

// LoadAdmissionDirs is LoadAdmission with the repository's policy folders
// named (relative to its root) instead of policies/. A folder that is named
// must exist: policies someone counts on are never silently absent.
func LoadAdmissionDirs(ctx context.Context, root, renderedPath string, dirs []string, objects []*render.Object) (*AdmissionPolicies, error) {
	return loadAdmission(ctx, root, renderedPath, dirs, true, objects)
}

func loadAdmission(ctx context.Context, root, renderedPath string, dirs []string, required bool, objects []*render.Object) (*AdmissionPolicies, error) {
	var all []*render.Object
	entries, err := fs.ReadDir(policies.FS, ".")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		data, err := fs.ReadFile(policies.FS, e.Name())
		if err != nil {
			return nil, err
		}
		objs, err := render.Decode("(built-in) policies/"+e.Name(), data)
		if err != nil {
			return nil, err
		}
		all = append(all, objs...)
	}
	rendered := path.Clean(filepath.ToSlash(renderedPath))
	for _, dir := range dirs {
		dir = path.Clean(filepath.ToSlash(dir))
		// Policies inside the rendered folder are among the objects already.
		inside := rendered == "." || rendered == dir || strings.HasPrefix(dir, rendered+"/")
		info, err := os.Stat(filepath.Join(root, filepath.FromSlash(dir)))
		switch {
		case err == nil && !info.IsDir():
			if required {
				return nil, fmt.Errorf("policies %s: not a folder", dir)
			}
			continue
		case err != nil:
			if required {
				return nil, fmt.Errorf("policies %s: not in the repository", dir)
			}
			continue
		case inside:
			continue
		}
		b, err := render.Render(ctx, render.Options{Root: root, Path: dir})
		if err != nil {
			return nil, fmt.Errorf("policies %s: %w", dir, err)
		}
		for _, o := range b.Objects {
			if IsAdmissionPolicy(o.Object) {
				all = append(all, o)
			}
		}
	}
	for _, o := range objects {
		if IsAdmissionPolicy(o.Object) {
			all = append(all, o)
		}
	}
	return LoadAdmissionPolicies(all), nil
}
