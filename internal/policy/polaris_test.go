package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitk8s/gitk8s/internal/render"
)

// polarisCorpus holds Polaris's own check fixtures (see its PROVENANCE.md).
const polarisCorpus = "testdata/polaris-checks"

// polarisMapping says which gitk8s rule answers each Polaris check, and on
// which kinds of object its findings count (Polaris checks roles and
// bindings separately; gitk8s checks both with one rule).
var polarisMapping = map[string]struct {
	rule  string
	kinds []string
	// extra is added to every fixture, with the reason.
	extra string
	// differs lists fixtures where gitk8s makes another policy choice.
	differs map[string]string
}{
	"clusterrolePodExecAttach":           {rule: "rbac-pods-exec", kinds: []string{"ClusterRole", "Role"}},
	"rolePodExecAttach":                  {rule: "rbac-pods-exec", kinds: []string{"ClusterRole", "Role"}},
	"clusterrolebindingPodExecAttach":    {rule: "rbac-pods-exec", kinds: []string{"ClusterRoleBinding", "RoleBinding"}},
	"rolebindingRolePodExecAttach":       {rule: "rbac-pods-exec", kinds: []string{"ClusterRoleBinding", "RoleBinding"}},
	"clusterrolebindingClusterAdmin":     {rule: "rbac-cluster-admin-binding", kinds: []string{"ClusterRoleBinding", "RoleBinding"}},
	"rolebindingClusterAdminClusterRole": {rule: "rbac-cluster-admin-binding", kinds: []string{"ClusterRoleBinding", "RoleBinding"}},
	"rolebindingClusterAdminRole":        {rule: "rbac-cluster-admin-binding", kinds: []string{"ClusterRoleBinding", "RoleBinding"}},
	"livenessProbeMissing":               {rule: "probe-liveness-missing"},
	"readinessProbeMissing":              {rule: "probe-readiness-missing"},
	"sensitiveConfigmapContent":          {rule: "configmap-sensitive-content"},
	"sensitiveContainerEnvVar":           {rule: "secret-in-env-literal"},
	// Polaris wants requests and limits everywhere; gitk8s requires them
	// where a ResourceQuota makes them necessary (without one, the API
	// server runs the pods). So each fixture gets a quota on the resource.
	"cpuRequestsMissing":    {rule: "resources-required-by-quota", extra: quota("requests.cpu")},
	"cpuLimitsMissing":      {rule: "resources-required-by-quota", extra: quota("limits.cpu")},
	"memoryRequestsMissing": {rule: "resources-required-by-quota", extra: quota("requests.memory")},
	"memoryLimitsMissing":   {rule: "resources-required-by-quota", extra: quota("limits.memory")},
}

func quota(resource string) string {
	return "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: q}\nspec:\n  hard: {" + resource + ": \"100\"}\n"
}

// polarisDifferences are fixtures where gitk8s's rule answers otherwise,
// with the reason.
var polarisDifferences = map[string]string{
	"clusterrolebindingPodExecAttach/success.gce_calico_binding.yaml":             "Polaris exempts bindings named gce:*; the name does not change what a binding grants, so gitk8s reports it",
	"clusterrolebindingClusterAdmin/success.gce_calico_binding.yaml":              "Polaris exempts bindings named gce:*; the name does not change what a binding grants, so gitk8s reports it",
	"rolebindingRolePodExecAttach/success.gce_calico_binding.yaml":                "Polaris exempts bindings named gce:*; the name does not change what a binding grants, so gitk8s reports it",
	"rolebindingClusterAdminClusterRole/success.gce_calico_binding.yaml":          "Polaris exempts bindings named gce:*; the name does not change what a binding grants, so gitk8s reports it",
	"rolebindingClusterAdminRole/success.gce_calico_binding.yaml":                 "Polaris exempts bindings named gce:*; the name does not change what a binding grants, so gitk8s reports it",
	"clusterrolePodExecAttach/success.gce_calico_clusterrole.yaml":                "Polaris exempts roles named gce:*; the name does not change what a role grants, so gitk8s reports it",
	"rolePodExecAttach/success.gce_calico_binding.yaml":                           "Polaris exempts roles named gce:*; the name does not change what a role grants, so gitk8s reports it",
	"rolebindingRolePodExecAttach/success.role_binding_cluster_role_binding.yaml": "this Polaris check looks only at RoleBindings to Roles (another covers ClusterRoles); gitk8s checks every binding, and this one grants pods/exec in my-namespace",
}

func TestPolarisFixtures(t *testing.T) {
	for check, m := range polarisMapping {
		files, err := os.ReadDir(filepath.Join(polarisCorpus, check))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			name := f.Name()
			if !strings.HasPrefix(name, "success") && !strings.HasPrefix(name, "failure") {
				continue // mutated.*.yaml: Polaris's own fixes, not inputs
			}
			t.Run(check+"/"+name, func(t *testing.T) {
				data, err := os.ReadFile(filepath.Join(polarisCorpus, check, name))
				if err != nil {
					t.Fatal(err)
				}
				root := t.TempDir()
				if err := os.WriteFile(filepath.Join(root, "fixture.yaml"), data, 0o644); err != nil {
					t.Fatal(err)
				}
				if m.extra != "" {
					if err := os.WriteFile(filepath.Join(root, "extra.yaml"), []byte(m.extra), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				bundle, err := render.Render(t.Context(), render.Options{Root: root})
				if err != nil {
					t.Fatal(err)
				}
				reported := false
				for _, fd := range Evaluate(bundle.Objects, Config{}, nil) {
					if fd.Rule != m.rule {
						continue
					}
					kind, _, _ := strings.Cut(fd.Object, "/")
					if len(m.kinds) == 0 || contains(m.kinds, kind) {
						reported = true
					}
				}
				want := strings.HasPrefix(name, "failure")
				if why, ok := polarisDifferences[check+"/"+name]; ok {
					want = !want
					t.Logf("gitk8s differs from Polaris here: %s", why)
				}
				// A binding to a role that is nowhere is a separate rule.
				if name == "failure.binding_points_to_missing_ref.yaml" {
					reported = false
					for _, fd := range Evaluate(bundle.Objects, Config{}, nil) {
						if fd.Rule == "rbac-binding-ref-missing" {
							reported = true
						}
					}
				}
				if reported != want {
					t.Errorf("%s reported: %v, want %v\nfindings: %+v", m.rule, reported, want, Evaluate(bundle.Objects, Config{}, nil))
				}
			})
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
