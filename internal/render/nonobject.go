package render

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"
)

// Skipped is a file or folder the render found and left out because it
// is not Kubernetes objects: a tool's file kept next to the manifests.
type Skipped struct {
	// File is the file or folder, relative to the source root.
	File string
	// What says what it is ("a file of Helm values", "a Skaffold
	// configuration").
	What string
}

// errNotAnObject marks the decode errors of a document that is not a
// Kubernetes object at all (no apiVersion and kind, or not a mapping), as
// opposed to an object written wrong.
var errNotAnObject = errors.New("not a Kubernetes object")

// notAnObject wraps err so that errors.Is(err, errNotAnObject) holds.
type notAnObject struct{ err error }

func (e notAnObject) Error() string        { return e.err.Error() }
func (e notAnObject) Unwrap() error        { return e.err }
func (e notAnObject) Is(target error) bool { return target == errNotAnObject }

// toolDocument is the decode error of a document that carries apiVersion
// and kind of a tool's file, never served by an API server.
type toolDocument struct{ what string }

func (e toolDocument) Error() string {
	return e.what + ", not a Kubernetes object; move it out of the manifests, or list it in " + IgnoreFile
}

// Is makes a tool's document one that is not an object.
func (e toolDocument) Is(target error) bool { return target == errNotAnObject }

// toolFilesByName are files that tools other than Kubernetes read, known
// by their name (lower case). They are recognised only when they hold no
// Kubernetes object, so a manifest with one of these names is still read.
var toolFilesByName = map[string]string{
	"chart.yaml":            "a Helm chart's Chart.yaml",
	"requirements.yaml":     "a Helm chart's dependency list",
	"values.schema.json":    "a Helm values schema",
	"skaffold.yaml":         "a Skaffold configuration",
	"docker-compose.yaml":   "a Docker Compose file",
	"docker-compose.yml":    "a Docker Compose file",
	"compose.yaml":          "a Docker Compose file",
	"compose.yml":           "a Docker Compose file",
	"package.json":          "an npm package file",
	"package-lock.json":     "an npm lock file",
	"tsconfig.json":         "a TypeScript configuration",
	"renovate.json":         "a Renovate configuration",
	"jsonnetfile.json":      "a jsonnet-bundler dependency list",
	"jsonnetfile.lock.json": "a jsonnet-bundler lock file",
	"mkdocs.yml":            "an MkDocs configuration",
	"mkdocs.yaml":           "an MkDocs configuration",
	"codecov.yml":           "a Codecov configuration",
	"codecov.yaml":          "a Codecov configuration",
	"taskfile.yml":          "a Task file",
	"taskfile.yaml":         "a Task file",
	"ct.yaml":               "a chart-testing configuration",
	"artifacthub-repo.yml":  "an Artifact Hub repository file",
	"artifacthub-pkg.yml":   "an Artifact Hub package file",
	"cloudbuild.yaml":       "a Cloud Build configuration",
	"azure-pipelines.yml":   "an Azure Pipelines definition",
	"devfile.yaml":          "a Devfile",
	"buf.yaml":              "a Buf configuration",
	"buf.gen.yaml":          "a Buf configuration",
	"kustomizeconfig.yaml":  "a kustomize transformer configuration (read through a kustomization's configurations)",
}

// toolAPIVersions are apiVersion prefixes of files that carry apiVersion
// and kind but are read by a tool, never served by an API server.
var toolAPIVersions = []struct{ prefix, what string }{
	{"skaffold/", "a Skaffold configuration"},
	{"kustomize.config.k8s.io/", "a kustomization in a file kustomize does not read by that name (kustomize reads kustomization.yaml, kustomization.yml or Kustomization)"},
	{"builtin", "a kustomize transformer or generator configuration (read by the kustomization that lists it)"},
	{"config.kubernetes.io/", "a KRM function's input"},
	{"kind.x-k8s.io/", "a kind cluster configuration"},
	{"k3d.io/", "a k3d cluster configuration"},
	{"ctlptl.dev/", "a ctlptl configuration"},
	{"kpt.dev/", "a kpt package file"},
	{"backstage.io/", "a Backstage catalog entry"},
	{"kubeadm.k8s.io/", "a kubeadm configuration"},
	{"kubelet.config.k8s.io/", "a kubelet configuration (read by the kubelet, not served by the API)"},
	{"kubeproxy.config.k8s.io/", "a kube-proxy configuration (read by kube-proxy, not served by the API)"},
	{"kubescheduler.config.k8s.io/", "a kube-scheduler configuration (read by the scheduler, not served by the API)"},
	{"apiserver.config.k8s.io/", "a kube-apiserver configuration (read by the API server, not served by it)"},
	{"audit.k8s.io/", "an audit policy (read by the API server, not served by it)"},
}

// isHelmValuesName reports whether a file's name says it holds Helm
// values: values.yaml, values-prod.yaml, prod.values.yaml, prod-values.yaml
// and the like, or any YAML file in a folder named values or helm-values.
func isHelmValuesName(rel string) bool {
	base := strings.ToLower(path.Base(rel))
	ext := path.Ext(base)
	if ext != ".yaml" && ext != ".yml" {
		return false
	}
	stem := strings.TrimSuffix(base, ext)
	switch parent := strings.ToLower(path.Base(path.Dir(rel))); parent {
	case "values", "helm-values":
		return true
	}
	if stem == "values" {
		return true
	}
	for _, sep := range []string{"-", "_", "."} {
		if strings.HasPrefix(stem, "values"+sep) || strings.HasSuffix(stem, sep+"values") {
			return true
		}
	}
	return false
}

// toolFile says what a manifest file is when it belongs to another tool:
// by the apiVersion of its documents (all of them one tool's), or by its
// name when none of its documents is an object. It returns "" for a file
// with objects in it, and for a file with real mistakes in it, whose
// errors are what to show.
func toolFile(rel string, objects []*Object, err error) string {
	if err == nil || len(objects) > 0 {
		return ""
	}
	what := ""
	for _, e := range flattenErrors(err) {
		if !errors.Is(e, errNotAnObject) {
			return ""
		}
		var doc toolDocument
		if !errors.As(e, &doc) {
			what = "-"
		} else if what == "" {
			what = doc.what
		} else if what != doc.what {
			what = "-"
		}
	}
	if what != "" && what != "-" {
		return what
	}
	if isHelmValuesName(rel) {
		return helmValues
	}
	return toolFilesByName[strings.ToLower(path.Base(rel))]
}

// toolAPIVersion says whose file an apiVersion and kind mark, or "".
func toolAPIVersion(apiVersion, kind string) string {
	if apiVersion == "v1" && kind == "Config" {
		return "a kubeconfig (it holds credentials: keep it out of Git)"
	}
	for _, t := range toolAPIVersions {
		if strings.HasPrefix(apiVersion, t.prefix) {
			return t.what
		}
	}
	return ""
}

// toolFileHint is what to do with a tool's file named as a manifest.
func toolFileHint(what string) string {
	switch {
	case what == helmValues:
		return "they belong to a chart: give them with --values FILE (a sync: source.helm.valuesFiles) and the chart's folder as SRC"
	case strings.HasPrefix(what, "a Helm chart's"):
		return "give the chart's folder as SRC"
	case strings.HasPrefix(what, "a kustomization"), strings.HasPrefix(what, "a kustomize"):
		return "give the folder of the kustomization as SRC"
	case strings.HasPrefix(what, "a kubeconfig"):
		return "remove it from the source and rotate the credentials it holds"
	}
	return "leave it out of what gitk8s renders"
}

// isComponent reports whether the kustomization file of a folder is a
// kustomize Component, which kustomizations include under components and
// which is not meant to be built on its own.
func isComponent(root, file string) bool {
	data, err := os.ReadFile(filepath.Join(root, file))
	if err != nil {
		return false
	}
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if yaml.Unmarshal(data, &head) != nil {
		return false
	}
	return head.Kind == "Component" && strings.HasPrefix(head.APIVersion, "kustomize.config.k8s.io/")
}

// enclosingChart is the folder of the Helm chart that dir lies in, below
// the chart's own folder, or "": the folder's templates are not manifests
// on their own.
func enclosingChart(root, dir string) string {
	for dir != "." {
		dir = path.Dir(dir)
		if isChart(root, dir) {
			return dir
		}
	}
	return ""
}

// toolFileError is the error for a tool's file named as a manifest.
func toolFileError(rel, what string) error {
	return &Error{Source: Source{File: rel}, Err: fmt.Errorf("this is %s, not Kubernetes objects; %s", what, toolFileHint(what))}
}

// helmValues is what a file of Helm values is said to be.
const helmValues = "a file of Helm values"
