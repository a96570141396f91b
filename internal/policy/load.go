package policy

import (
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
func LoadAdmission(root, renderedPath string, objects []*render.Object) (*AdmissionPolicies, error) {
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
	inside := rendered == "." || rendered == PoliciesDir || strings.HasPrefix(PoliciesDir, rendered+"/")
	if info, err := os.Stat(filepath.Join(root, PoliciesDir)); err == nil && info.IsDir() && !inside {
		b, err := render.Render(render.Options{Root: root, Path: PoliciesDir})
		if err != nil {
			return nil, fmt.Errorf("policies: %w", err)
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
