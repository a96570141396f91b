package render

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/yaml"
)

// document is one YAML document of a file and the line it starts on.
type document struct {
	line int
	data []byte
}

// splitDocuments cuts a YAML stream at its `---` separators, remembering
// where each document starts so errors can name the line in the file.
func splitDocuments(data []byte) []document {
	var docs []document
	var cur bytes.Buffer
	start, lineNo := 1, 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), len(data)+1)
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		if isSeparator(line) {
			docs = append(docs, document{line: start, data: bytes.Clone(cur.Bytes())})
			cur.Reset()
			start = lineNo + 1
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
	}
	return append(docs, document{line: start, data: cur.Bytes()})
}

func isSeparator(line string) bool {
	if !strings.HasPrefix(line, "---") {
		return false
	}
	rest := line[3:]
	return rest == "" || rest[0] == ' ' || rest[0] == '\t' || rest[0] == '#'
}

// decodeFile parses every document of one file into objects. Errors are
// *Error values naming the file and line.
func decodeFile(file string, data []byte) ([]*Object, error) {
	var objects []*Object
	var errs []error
	for _, doc := range splitDocuments(data) {
		objs, err := decodeDocument(file, doc)
		objects = append(objects, objs...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return objects, errors.Join(errs...)
}

func decodeDocument(file string, doc document) ([]*Object, error) {
	src := Source{File: file, Line: doc.line}
	jsonData, err := yaml.YAMLToJSON(doc.data)
	if err != nil {
		// Parse again behind as many blank lines as the document is deep in
		// the file, so that the parser's own line number is the file's.
		padded := append(bytes.Repeat([]byte("\n"), doc.line-1), doc.data...)
		if _, perr := yaml.YAMLToJSON(padded); perr != nil {
			err = perr
		}
		if n := tabIndentedLine(doc.data); n > 0 {
			err = fmt.Errorf("%w (line %d is indented with a tab: YAML indents with spaces only)", err, doc.line-1+n)
		}
		if bytes.Contains(doc.data, []byte("{{")) && bytes.Contains(doc.data, []byte("}}")) {
			err = fmt.Errorf("%w (the file holds {{ }} template actions: a Helm template is rendered with its chart, so give the folder with Chart.yaml)", err)
		}
		return nil, &Error{Source: Source{File: file}, Err: fmt.Errorf("invalid YAML: %w", err)}
	}
	// YAMLToJSON keeps the last of two equal keys without a word, so that
	// which of two values is applied would depend on their order.
	var tree yamlv3.Node
	if yamlv3.Unmarshal(doc.data, &tree) == nil {
		if key, first := duplicateKey(&tree); key != nil {
			return nil, &Error{Source: Source{File: file, Line: doc.line - 1 + key.Line},
				Err: fmt.Errorf("key %q is defined twice in one mapping, first at line %d; keep one", key.Value, doc.line-1+first)}
		}
	}
	// YAMLToJSON reads the first document only. A YAML parser also ends a
	// document at a `...` line and at a `---` after a line break other
	// than "\n" (a lone "\r", U+2028), where the splitter does not cut, so
	// what follows would be lost without a word.
	if bytes.Contains(doc.data, []byte("---")) || bytes.Contains(doc.data, []byte("...")) {
		dec := yamlv3.NewDecoder(bytes.NewReader(doc.data))
		var first yamlv3.Node
		if dec.Decode(&first) == nil {
			for {
				var next yamlv3.Node
				err := dec.Decode(&next)
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					return nil, &Error{Source: src, Err: fmt.Errorf("invalid YAML after the end of the document (%w); start each document after a line holding only ---", err)}
				}
				if len(next.Content) > 0 && next.Content[0].Tag != "!!null" {
					return nil, &Error{Source: src, Err: errors.New("a second YAML document starts inside this one, after a `...` line or a `---` between line breaks other than \"\\n\", and would not be read; put each document after a line holding only ---")}
				}
			}
		}
	}
	jsonData = bytes.TrimSpace(jsonData)
	if len(jsonData) == 0 || bytes.Equal(jsonData, []byte("null")) {
		return nil, nil // an empty document, or only comments
	}
	var content any
	if err := utiljson.Unmarshal(jsonData, &content); err != nil {
		return nil, &Error{Source: src, Err: fmt.Errorf("invalid document: %w", err)}
	}
	m, ok := content.(map[string]any)
	if !ok {
		return nil, &Error{Source: src, Err: notAnObject{fmt.Errorf("document is a %s, not a Kubernetes object (a mapping with apiVersion, kind and metadata)", jsonType(content))}}
	}
	u := &unstructured.Unstructured{Object: m}
	if what := toolAPIVersion(u.GetAPIVersion(), u.GetKind()); what != "" {
		return nil, &Error{Source: src, Err: toolDocument{what}}
	}
	if err := checkObject(u); err != nil {
		return nil, &Error{Source: src, Object: describe(u), Err: err}
	}
	if !u.IsList() {
		return []*Object{{Object: u, Source: src}}, nil
	}
	return expandList(u, src)
}

// tabIndentedLine is the first line (from 1) of a document whose
// indentation holds a tab, or 0.
func tabIndentedLine(data []byte) int {
	for i, line := range bytes.Split(data, []byte("\n")) {
		indent := line[:len(line)-len(bytes.TrimLeft(line, " \t"))]
		if bytes.IndexByte(indent, '\t') >= 0 && len(bytes.TrimSpace(line)) > 0 {
			return i + 1
		}
	}
	return 0
}

// duplicateKey finds a key that a mapping of the tree holds twice, and the
// line of its first definition. Merge keys (<<) and the keys they bring
// in are not compared: overriding a merged key is what merging is for.
// Aliases are not followed.
func duplicateKey(n *yamlv3.Node) (*yamlv3.Node, int) {
	switch n.Kind {
	case yamlv3.DocumentNode, yamlv3.SequenceNode:
		for _, c := range n.Content {
			if key, first := duplicateKey(c); key != nil {
				return key, first
			}
		}
	case yamlv3.MappingNode:
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind == yamlv3.ScalarNode && k.Tag != "!!merge" {
				if first, ok := seen[k.Value]; ok {
					return k, first
				}
				seen[k.Value] = k.Line
			}
			if key, first := duplicateKey(n.Content[i+1]); key != nil {
				return key, first
			}
		}
	}
	return nil, 0
}

// expandList turns a List (kind: List or any *List with items) into its items.
func expandList(list *unstructured.Unstructured, src Source) ([]*Object, error) {
	items, _, err := unstructured.NestedSlice(list.Object, "items")
	if err != nil {
		return nil, &Error{Source: src, Object: list.GetKind(), Err: fmt.Errorf("items: %w", err)}
	}
	var objects []*Object
	var errs []error
	for i, item := range items {
		m, ok := item.(map[string]any)
		if !ok {
			errs = append(errs, &Error{Source: src, Object: fmt.Sprintf("%s items[%d]", list.GetKind(), i),
				Err: fmt.Errorf("item is a %s, not a Kubernetes object", jsonType(item))})
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if err := checkObject(u); err != nil {
			errs = append(errs, &Error{Source: src, Object: fmt.Sprintf("%s items[%d] %s", list.GetKind(), i, describe(u)), Err: err})
			continue
		}
		if u.IsList() {
			nested, err := expandList(u, src)
			objects = append(objects, nested...)
			if err != nil {
				errs = append(errs, err)
			}
			continue
		}
		objects = append(objects, &Object{Object: u, Source: src})
	}
	return objects, errors.Join(errs...)
}

// checkObject makes sure the object has what the API needs to address it.
func checkObject(u *unstructured.Unstructured) error {
	var missing []string
	if s, ok := u.Object["apiVersion"].(string); !ok || s == "" {
		missing = append(missing, "apiVersion")
	}
	if s, ok := u.Object["kind"].(string); !ok || s == "" {
		missing = append(missing, "kind")
	}
	if len(missing) > 0 {
		return notAnObject{fmt.Errorf("%s missing: every object needs apiVersion and kind (for example `apiVersion: apps/v1` and `kind: Deployment`)", strings.Join(missing, " and "))}
	}
	if u.IsList() {
		return nil
	}
	if _, ok := u.Object["metadata"].(map[string]any); !ok {
		return fmt.Errorf("metadata missing: every object needs metadata.name")
	}
	name, found, err := unstructured.NestedString(u.Object, "metadata", "name")
	if err != nil {
		return fmt.Errorf("metadata.name must be a string: %w", err)
	}
	if !found || name == "" {
		if g, _, _ := unstructured.NestedString(u.Object, "metadata", "generateName"); g != "" {
			if isHookObject(u) {
				return nil // a hook is created anew on each run
			}
			return fmt.Errorf("metadata.name missing: generateName makes a new object on every apply; set metadata.name (only hooks, annotated gitk8s.io/hook, may use generateName)")
		}
		return fmt.Errorf("metadata.name missing: set a name")
	}
	if _, _, err := unstructured.NestedString(u.Object, "metadata", "namespace"); err != nil {
		return fmt.Errorf("metadata.namespace must be a string: %w", err)
	}
	return nil
}

// describe names an object as far as it can be named.
func describe(u *unstructured.Unstructured) string {
	kind, _ := u.Object["kind"].(string)
	md, _ := u.Object["metadata"].(map[string]any)
	name, _ := md["name"].(string)
	ns, _ := md["namespace"].(string)
	switch {
	case kind == "" && name == "":
		return ""
	case kind == "":
		kind = "(no kind)"
	case name == "":
		return kind
	}
	if ns != "" {
		return kind + "/" + ns + "/" + name
	}
	return kind + "/" + name
}

func jsonType(v any) string {
	switch v.(type) {
	case []any:
		return "list"
	case string:
		return "string"
	case bool:
		return "boolean"
	case nil:
		return "null"
	default:
		return "number"
	}
}

// Decode parses one YAML or JSON file's documents into objects, as Render
// does for each file it reads; file names the source in errors.
func Decode(file string, data []byte) ([]*Object, error) {
	return decodeFile(file, data)
}

// isHookObject reports whether u carries a hook annotation that package
// hook reads (gitk8s's, Argo CD's or Helm's).
func isHookObject(u *unstructured.Unstructured) bool {
	a := u.GetAnnotations()
	for _, k := range []string{"gitk8s.io/hook", "argocd.argoproj.io/hook", "helm.sh/hook"} {
		if _, ok := a[k]; ok {
			return true
		}
	}
	return false
}
