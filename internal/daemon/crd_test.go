package daemon

import (
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

var updateCRDs = flag.Bool("update-crds", false, "write deploy/05-crds.yaml from the Go types")

// crdFile is the CRD of Sync as deploy/ installs it.
const crdFile = "../../deploy/05-crds.yaml"

// TestSyncCRDIsGenerated checks that deploy/05-crds.yaml is what the Go
// types of Sync say, doc comments as descriptions; after changing them,
// run go test ./internal/daemon -run TestSyncCRDIsGenerated -update-crds.
func TestSyncCRDIsGenerated(t *testing.T) {
	want := generateSyncCRD(t)
	if *updateCRDs {
		if err := os.WriteFile(crdFile, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(crdFile)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("%s is not what the Go types generate: run go test ./internal/daemon -run TestSyncCRDIsGenerated -update-crds", crdFile)
	}
}

// jsonSchema is an OpenAPI v3 schema as a CRD holds it.
type jsonSchema = map[string]any

// crdGenerator builds schemas from Go types by reflection.
type crdGenerator struct {
	docs map[string]string // "Type.Field" → doc comment
}

// fieldDocs reads the doc comments of struct fields in Go source folders.
func fieldDocs(t *testing.T, dirs ...string) map[string]string {
	docs := map[string]string{}
	for _, dir := range dirs {
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				ts, ok := n.(*ast.TypeSpec)
				if !ok {
					return true
				}
				st, ok := ts.Type.(*ast.StructType)
				if !ok {
					return true
				}
				for _, field := range st.Fields.List {
					text := strings.TrimSpace(field.Doc.Text())
					if text == "" {
						continue
					}
					for _, name := range field.Names {
						docs[ts.Name.Name+"."+name.Name] = strings.Join(strings.Fields(text), " ")
					}
				}
				return true
			})
		}
	}
	return docs
}

var (
	durationType  = reflect.TypeOf(Duration{})
	quantityType  = reflect.TypeOf(resource.Quantity{})
	timeType      = reflect.TypeOf(metav1.Time{})
	policyModeTyp = reflect.TypeOf(PolicyMode(""))
)

// durationPattern is what time.ParseDuration reads, without a sign.
const durationPattern = `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`

// enums are the values a field takes, by Type.Field.
var enums = map[string][]any{
	"SyncSpec.Drift":                  {DriftHeal, DriftReport},
	"SyncResourceSpec.DeletionPolicy": {DeletionPrune, DeletionOrphan},
	"VerifyConfig.Provider":           {"cosign"},
	"DecryptionConfig.Provider":       {"sops"},
	"NotifyConfig.Provider":           {"github", "gitlab", "gitea", "webhook", "slack"},
}

// rules are CEL validations, by type name.
var rules = map[string][]jsonSchema{
	"SyncResourceSpec": {
		{"rule": "!(has(self.clusters) && has(self.clusterSelector))", "message": "give clusters or clusterSelector, not both"},
		{"rule": "!(has(self.kubeConfig) && (has(self.clusters) || has(self.clusterSelector)))", "message": "give kubeConfig or clusters/clusterSelector, not both"},
		{"rule": "!has(self.managesDaemon) || !self.managesDaemon", "message": "managesDaemon: only a sync of the daemon's configuration file may write the daemon's namespace"},
	},
	"RefSpec": {
		{"rule": "[has(self.branch), has(self.tag), has(self.semver), has(self.commit)].filter(x, x).size() <= 1", "message": "give one of branch, tag, semver or commit"},
	},
	"SourceConfig": {
		{"rule": "self.url.startsWith('https://') || self.url.startsWith('http://') || self.url.startsWith('ssh://') || self.url.startsWith('oci://') || self.url.matches('^[A-Za-z0-9._-]+@[^:/]+:')", "message": "url must be an https://, http://, ssh:// or oci:// URL, or user@host:path"},
		{"rule": "!has(self.verify) || self.url.startsWith('oci://')", "message": "only an oci:// source can be verified"},
	},
	"SourceAuth": {
		{"rule": "!has(self.secretDir)", "message": "a Sync cannot read the daemon's files: put the credentials in a Secret of the Sync's namespace and use secretRef"},
		{"rule": "has(self.secretRef)", "message": "secretRef is required"},
	},
	"VerifyConfig": {
		{"rule": "!has(self.secretDir) && has(self.secretRef)", "message": "a Sync names its keys with secretRef, a Secret of its namespace"},
	},
	"DecryptionConfig": {
		{"rule": "!has(self.secretDir) && has(self.secretRef)", "message": "a Sync names its keys with secretRef, a Secret of its namespace"},
	},
}

// schemaOf is the schema of a Go type; owner.field names it for docs and
// enums.
func (g *crdGenerator) schemaOf(t reflect.Type, owner, field string) jsonSchema {
	s := g.typeSchema(t)
	key := owner + "." + field
	if doc := g.docs[key]; doc != "" {
		s["description"] = doc
	}
	if e, ok := enums[key]; ok {
		s["enum"] = e
	}
	return s
}

func (g *crdGenerator) typeSchema(t reflect.Type) jsonSchema {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t {
	case durationType:
		return jsonSchema{"type": "string", "pattern": durationPattern}
	case quantityType:
		return jsonSchema{"x-kubernetes-int-or-string": true, "anyOf": []any{jsonSchema{"type": "integer"}, jsonSchema{"type": "string"}},
			"pattern": `^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$`}
	case timeType:
		return jsonSchema{"type": "string", "format": "date-time"}
	case policyModeTyp:
		// The daemon's file takes an unquoted off (false) too; the API
		// server wants a string: kubectl names the field if it gets false.
		return jsonSchema{"type": "string", "enum": []any{"enforce", "warn", "off"}, "description": "enforce, warn or off (quote \"off\": YAML reads it unquoted as false)"}
	}
	switch t.Kind() {
	case reflect.String:
		return jsonSchema{"type": "string"}
	case reflect.Bool:
		return jsonSchema{"type": "boolean"}
	case reflect.Int, reflect.Int32, reflect.Int64:
		return jsonSchema{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return jsonSchema{"type": "number"}
	case reflect.Slice:
		return jsonSchema{"type": "array", "items": g.typeSchema(t.Elem())}
	case reflect.Map:
		if t.Elem().Kind() == reflect.Interface {
			return jsonSchema{"type": "object", "x-kubernetes-preserve-unknown-fields": true}
		}
		return jsonSchema{"type": "object", "additionalProperties": g.typeSchema(t.Elem())}
	case reflect.Interface:
		return jsonSchema{"x-kubernetes-preserve-unknown-fields": true}
	case reflect.Struct:
		props := jsonSchema{}
		var required []any
		g.addFields(t, props, &required)
		s := jsonSchema{"type": "object", "properties": props}
		if len(required) > 0 {
			s["required"] = required
		}
		if r := rules[t.Name()]; len(r) > 0 {
			s["x-kubernetes-validations"] = r
		}
		return s
	}
	panic("no schema for " + t.String())
}

// addFields adds a struct's JSON fields, those of inline structs included.
func (g *crdGenerator) addFields(t reflect.Type, props jsonSchema, required *[]any) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" && (f.Anonymous || strings.Contains(opts, "inline")) {
			g.addFields(f.Type, props, required)
			continue
		}
		props[name] = g.schemaOf(f.Type, t.Name(), f.Name)
		if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") && f.Type.Kind() != reflect.Bool {
			*required = append(*required, name)
		}
	}
}

func generateSyncCRD(t *testing.T) []byte {
	g := &crdGenerator{docs: fieldDocs(t, ".", "../render")}
	spec := g.typeSchema(reflect.TypeOf(SyncResourceSpec{}))
	spec["description"] = "What the Sync keeps applied and how: the fields of a sync in the daemon's configuration file (docs/configuration.md), and who it acts as."
	status := g.typeSchema(reflect.TypeOf(SyncResourceStatus{}))
	status["description"] = "What the daemon last did, as kstatus reads it: conditions Ready, Reconciling and Stalled with the engine's reasons."
	ready := `.status.conditions[?(@.type=="Ready")]`
	crd := jsonSchema{
		"apiVersion": "apiextensions.k8s.io/v1",
		"kind":       "CustomResourceDefinition",
		"metadata":   jsonSchema{"name": "syncs." + SyncGroup},
		"spec": jsonSchema{
			"group": SyncGroup,
			"names": jsonSchema{"kind": "Sync", "listKind": "SyncList", "plural": "syncs", "singular": "sync", "categories": []any{"gitk8s"}},
			"scope": "Namespaced",
			"versions": []any{jsonSchema{
				"name": SyncVersion, "served": true, "storage": true,
				"subresources": jsonSchema{"status": jsonSchema{}},
				"additionalPrinterColumns": []any{
					jsonSchema{"name": "Ready", "type": "string", "jsonPath": ready + ".status"},
					jsonSchema{"name": "Reason", "type": "string", "jsonPath": ready + ".reason"},
					jsonSchema{"name": "Revision", "type": "string", "jsonPath": ".status.lastAppliedRevision"},
					jsonSchema{"name": "Objects", "type": "integer", "jsonPath": ".status.objects"},
					jsonSchema{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
					jsonSchema{"name": "Message", "type": "string", "jsonPath": ready + ".message", "priority": 1},
				},
				"schema": jsonSchema{"openAPIV3Schema": jsonSchema{
					"description": "A Sync keeps a source (a Git repository or an OCI artifact) applied to clusters, acting as its ServiceAccount.",
					"type":        "object",
					"required":    []any{"spec"},
					"properties": jsonSchema{
						"apiVersion": jsonSchema{"type": "string"},
						"kind":       jsonSchema{"type": "string"},
						"metadata":   jsonSchema{"type": "object"},
						"spec":       spec,
						"status":     status,
					},
					"x-kubernetes-validations": []any{
						jsonSchema{"rule": "self.metadata.name.size() <= 63 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')", "message": "a Sync's name must be a lowercase DNS label (at most 63 letters, digits and dashes)"},
					},
				}},
			}},
		},
	}
	out, err := yaml.Marshal(crd)
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte("# The Sync resource (gitk8s.io/v1alpha1), generated from internal/daemon's Go types:\n# go test ./internal/daemon -run TestSyncCRDIsGenerated -update-crds\n"), out...)
}
