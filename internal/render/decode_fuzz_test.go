package render

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	yamlv3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/yaml"
)

// decodeSeeds are inputs the decoder has to tell apart: documents, lists,
// JSON, comments, separators of every form, and the malformed YAML people
// push (tabs, duplicate keys, aliases, scalars where a mapping belongs).
var decodeSeeds = []string{
	"",
	"---\n",
	"--- # only a comment\n---\n",
	"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: b}\ndata: {k: v}\n",
	"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {p: q}\n",
	"apiVersion: v1\r\nkind: ConfigMap\r\nmetadata:\r\n  name: crlf\r\n---\r\n",
	`{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "one"}}, 7, {"kind": "Pod"}]}`,
	"apiVersion: v1\nkind: ConfigMapList\nitems:\n- apiVersion: v1\n  kind: List\n  items:\n  - {apiVersion: v1, kind: ConfigMap, metadata: {name: nested}}\n",
	"apiVersion: v1\nkind: ConfigMap\nmetadata:\n\tname: tab\n",
	"apiVersion: v1\nkind: ConfigMap\nkind: Secret\nmetadata: {name: dup}\n",
	"a: &a [x, x, x]\nb: &b [*a, *a, *a]\nc: &c [*b, *b, *b]\n",
	"- just\n- a list\n",
	"just a string\n",
	"apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: web-}\n",
	"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [x], namespace: 3}\n",
	"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: n}\ndata:\n  a: |\n    ---\n    not a separator\n",
	"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: n}\n...\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: after-end}\n",
	"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: n, labels: {a: 1.0, b: 1e3, c: 0x1F, d: ~, e: yes}}\n",
	"---apiVersion: v1\n--- \n---\t\n----\n",
	"apiVersion: v1\rkind: ConfigMap\rmetadata: {name: a}\r---\rapiVersion: v1\rkind: ConfigMap\rmetadata: {name: b}\r",
	"\r---\rapiVersion: v1\rkind: ConfigMap\rmetadata: {name: only}\r",
}

// addManifestSeeds adds every YAML and JSON file under the folders, which
// hold manifests written by other projects (see their PROVENANCE.md) and
// the repository's own examples.
func addManifestSeeds(f *testing.F, folders ...string) {
	f.Helper()
	for _, folder := range folders {
		err := filepath.WalkDir(folder, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			switch filepath.Ext(p) {
			case ".yaml", ".yml", ".json":
				data, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				f.Add(data)
			}
			return nil
		})
		if err != nil {
			f.Fatal(err)
		}
	}
}

// FuzzSplitDocuments checks that the splitter accounts for every line:
// each document starts on the line after the previous one ends, none holds
// a separator, and joining the documents again with plain separators gives
// the same documents on the same lines. The splitter reads "\r\n" as a line
// break and a lone "\r" as text, so input with carriage returns is checked
// for its lines but not joined again; FuzzDecode checks that nothing after a
// carriage return is lost.
func FuzzSplitDocuments(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		docs := splitDocuments(data)
		if len(docs) == 0 {
			t.Fatal("no documents")
		}
		if docs[0].line != 1 {
			t.Fatalf("the first document starts on line %d", docs[0].line)
		}
		var joined bytes.Buffer
		for i, d := range docs {
			if len(d.data) > 0 && d.data[len(d.data)-1] != '\n' {
				t.Fatalf("document %d does not end in a newline: %q", i, d.data)
			}
			lines := bytes.Count(d.data, []byte("\n"))
			for _, l := range strings.SplitAfter(string(d.data), "\n") {
				if isSeparator(strings.TrimSuffix(l, "\n")) {
					t.Fatalf("document %d holds a separator line %q", i, l)
				}
			}
			if i+1 < len(docs) && docs[i+1].line != d.line+lines+1 {
				t.Fatalf("document %d starts on line %d, %d lines after document %d on line %d", i+1, docs[i+1].line, lines, i, d.line)
			}
			if i > 0 {
				joined.WriteString("---\n")
			}
			joined.Write(d.data)
		}
		if bytes.ContainsRune(data, '\r') {
			return
		}
		again := splitDocuments(joined.Bytes())
		if len(again) != len(docs) {
			t.Fatalf("%d documents, %d once joined again", len(docs), len(again))
		}
		for i := range docs {
			if again[i].line != docs[i].line || !bytes.Equal(again[i].data, docs[i].data) {
				t.Fatalf("document %d: line %d %q, once joined again line %d %q", i, docs[i].line, docs[i].data, again[i].line, again[i].data)
			}
		}
	})
}

// FuzzDecode checks that decoding never panics, that every error is an
// *Error naming the file, that a file decoded without error lost no
// document a YAML parser sees in it, and that every object it returns is
// addressable and decodes again, from its JSON and from its YAML, to the
// same object.
func FuzzDecode(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	addManifestSeeds(f, "../../examples", "testdata", "../federation/testdata", "../policy/testdata", "../apiversions/testdata")
	const file = "deploy/app.yaml"
	f.Fuzz(func(t *testing.T, data []byte) {
		objects, err := Decode(file, data)
		checkErrorsName(t, err, file)
		if seen := yamlDocuments(data); err == nil && seen > len(splitDocuments(data)) {
			t.Fatalf("a YAML parser sees %d documents with content, the decoder read %d without an error", seen, len(splitDocuments(data)))
		}
		lines := bytes.Count(data, []byte("\n")) + 1
		for _, o := range objects {
			if o.Source.File != file || o.Source.Line < 1 || o.Source.Line > lines {
				t.Fatalf("%s: source %v, want %s within its %d lines", o.Ref(), o.Source, file, lines)
			}
			if o.Object.GetAPIVersion() == "" || o.Object.GetKind() == "" || o.Object.GetName() == "" {
				t.Fatalf("object without apiVersion, kind or name: %v", o.Object.Object)
			}
			if o.Object.IsList() {
				t.Fatalf("%s: a List was returned, not its items", o.Ref())
			}
			want, err := json.Marshal(o.Object.Object)
			if err != nil {
				t.Fatalf("%s: %v", o.Ref(), err)
			}
			asYAML, err := yaml.JSONToYAML(want)
			if err != nil {
				t.Fatalf("%s: %v", o.Ref(), err)
			}
			for name, encoded := range map[string][]byte{"again.json": want, "again.yaml": asYAML} {
				again, err := Decode(name, encoded)
				if err != nil || len(again) != 1 {
					t.Fatalf("%s: %d objects from %s, error %v:\n%s", o.Ref(), len(again), name, err, encoded)
				}
				got, err := json.Marshal(again[0].Object.Object)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(want, got) {
					t.Fatalf("%s decodes from %s to\n%s\nnot\n%s", o.Ref(), name, got, want)
				}
			}
		}
	})
}

// TestDecodeLosesNoDocument holds what FuzzSplitDocuments led to: documents
// a YAML parser starts where the splitter does not cut were dropped without
// an error.
func TestDecodeLosesNoDocument(t *testing.T) {
	const cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s}\n"
	tests := []struct{ name, data, want string }{
		{"carriage returns only", "apiVersion: v1\rkind: ConfigMap\rmetadata: {name: a}\r---\rapiVersion: v1\rkind: ConfigMap\rmetadata: {name: b}\r", "f.yaml:1: a second YAML document"},
		{"a separator ending in two carriage returns", fmt.Sprintf(cm, "a") + "---\r\r" + fmt.Sprintf(cm, "b"), "f.yaml:1: a second YAML document"},
		{"line separators", "apiVersion: v1\u2028kind: ConfigMap\u2028metadata: {name: a}\u2028---\u2028kind: Secret\n", "f.yaml:1: a second YAML document"},
		{"a document after a document end", "---\n" + fmt.Sprintf(cm, "a") + "...\n" + fmt.Sprintf(cm, "b"), "f.yaml:2: invalid YAML after the end of the document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode("f.yaml", []byte(tt.data))
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
	for _, ok := range []string{fmt.Sprintf(cm, "a") + "...\n", fmt.Sprintf(cm, "a") + "...\n# a comment\n", "# ---\n" + fmt.Sprintf(cm, "a") + "data: {x: \"---\"}\n"} {
		if objs, err := Decode("f.yaml", []byte(ok)); err != nil || len(objs) != 1 {
			t.Errorf("%q: %d objects, error %v", ok, len(objs), err)
		}
	}
}

// yamlDocuments counts the documents of a YAML stream that hold more than
// null, as a YAML parser reads them; 0 when it cannot read the stream.
func yamlDocuments(data []byte) int {
	dec := yamlv3.NewDecoder(bytes.NewReader(data))
	n := 0
	for {
		var doc yamlv3.Node
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				return n
			}
			return 0
		}
		if len(doc.Content) > 0 && doc.Content[0].Tag != "!!null" {
			n++
		}
	}
}

// checkErrorsName fails unless every error joined into err is an *Error
// whose message starts with file.
func checkErrorsName(t *testing.T, err error, file string) {
	t.Helper()
	if err == nil {
		return
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			checkErrorsName(t, e, file)
		}
		return
	}
	var e *Error
	if !errors.As(err, &e) || e.Source.File != file || !strings.HasPrefix(err.Error(), file) {
		t.Fatalf("error %q (%T) does not name %s", err, err, file)
	}
}
