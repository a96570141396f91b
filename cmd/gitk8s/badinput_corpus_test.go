package main

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/gitk8s/gitk8s/internal/testenv"
)

// The bad-input corpus lives in testdata/badinput/<category>/<case>.txt,
// one case per file, in the txtar layout: a header of "key: value" lines
// (and "#" lines saying what the case is about), then sections that each
// start with a line "-- NAME --". See docs/bad-input.md for the keys.
const corpusDir = "testdata/badinput"

// corpusCategories are the corpus's folders, in the order the test runs
// them.
var corpusCategories = []string{"yaml", "kustomize", "jsonnet", "git", "objects", "config", "webhooks"}

// badCase is one case of the corpus.
type badCase struct {
	category, name, file string
	about                string

	// want must be in the error of every face; wantValidate, wantApply,
	// wantDaemon and wantCLI only in that face's.
	want, wantValidate, wantApply, wantDaemon, wantCLI []string
	// avoid must be in no face's output (a Secret's value, say).
	avoid []string
	// reason is the daemon's Ready reason, or "refused" for a daemon
	// configuration the daemon does not start with.
	reason string
	// validate, apply and daemonCommand are the exit codes expected of
	// `gitk8s validate`, `gitk8s apply` and `gitk8s daemon`; nil: not run.
	validate, apply, daemonCommand *int
	validateArgs                   []string
	// cli are further command lines, each with its exit code.
	cli []cliRun
	// limits override the corpus's render limits (memory, cpu, timeout,
	// output).
	limits map[string]string

	// files are the repository's files: a name is relative to the sync's
	// folder (deploy/), or to the repository root when it starts with "/".
	files []caseFile
	links []caseLink
	// tree are entries written as Git plumbing would, in the order given,
	// duplicates and odd names included (section @tree).
	tree []treeLine
	// config is a daemon configuration (section @config); secrets are
	// Secrets to create before the case (sections "@secret NAME").
	config  string
	secrets map[string]map[string]string

	// A webhook request: receiver, method, path (default
	// /hooks/<receiver>), signing (good, wrong, none), headers and body;
	// the answer's status.
	receiver, method, hookPath, sign string
	headers                          [][2]string
	body                             string
	bodySize                         int64
	slow                             bool
	status                           int
}

type caseFile struct {
	name string
	data []byte
}

type caseLink struct{ name, target string }

type cliRun struct {
	exit int
	args []string
}

// treeLine is one entry of a @tree section:
//
//	file PATH TEXT    a file (TEXT may be a Go-quoted string)
//	link PATH TARGET  a symbolic link (TARGET may be quoted)
//	big PATH SIZE     a file of SIZE bytes (a quantity: 65Mi)
//
// PATH is from the repository root, split at "/"; each part is
// URL-unescaped (a%2Fb is one name holding a slash), and a suffix ~N makes
// a second folder of the same name.
type treeLine struct {
	mode, path, data string
	size             int64
}

// TestBadInputCorpusIsComplete checks the corpus itself: every case reads
// and asserts something, and every category has cases.
func TestBadInputCorpusIsComplete(t *testing.T) {
	total := 0
	for category, cases := range readCorpus(t) {
		if len(cases) < 5 {
			t.Errorf("category %s has %d cases", category, len(cases))
		}
		total += len(cases)
	}
	if total < 60 {
		t.Errorf("the corpus has %d cases; it is meant to have at least 60", total)
	}
}

// readCorpus reads every case, by category.
func readCorpus(t *testing.T) map[string][]*badCase {
	t.Helper()
	out := map[string][]*badCase{}
	for _, category := range corpusCategories {
		entries, err := os.ReadDir(filepath.Join(corpusDir, category))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.IsDir() || !strings.HasSuffix(e.Name(), ".txt") {
				continue
			}
			file := filepath.Join(corpusDir, category, e.Name())
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			c, err := parseCase(category, strings.TrimSuffix(e.Name(), ".txt"), data)
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			c.file = file
			out[category] = append(out[category], c)
		}
	}
	return out
}

// parseCase reads one case file.
func parseCase(category, name string, data []byte) (*badCase, error) {
	header, sections := splitTxtar(data)
	c := &badCase{category: category, name: name, secrets: map[string]map[string]string{}}
	var about []string
	for i, line := range strings.Split(header, "\n") {
		line = strings.TrimRight(line, " \r")
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "#") {
			about = append(about, strings.TrimSpace(strings.TrimPrefix(line, "#")))
			continue
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("line %d: want key: value, got %q", i+1, line)
		}
		value = strings.TrimSpace(value)
		if err := c.set(strings.TrimSpace(key), value); err != nil {
			return nil, fmt.Errorf("line %d: %s: %w", i+1, key, err)
		}
	}
	c.about = strings.Join(about, " ")
	for _, s := range sections {
		switch {
		case s.name == "@tree":
			for i, line := range strings.Split(string(s.data), "\n") {
				if strings.TrimSpace(line) == "" {
					continue
				}
				tl, err := parseTreeLine(line)
				if err != nil {
					return nil, fmt.Errorf("@tree line %d: %w", i+1, err)
				}
				c.tree = append(c.tree, tl)
			}
		case s.name == "@config":
			c.config = string(s.data)
		case s.name == "@body":
			c.body = strings.TrimSuffix(string(s.data), "\n")
		case strings.HasPrefix(s.name, "@secret "):
			keys := map[string]string{}
			for _, line := range strings.Split(string(s.data), "\n") {
				if line == "" {
					continue
				}
				k, v, ok := strings.Cut(line, "=")
				if !ok {
					return nil, fmt.Errorf("%s: want key=value lines, got %q", s.name, line)
				}
				keys[k] = strings.ReplaceAll(v, `\n`, "\n")
			}
			c.secrets[strings.TrimPrefix(s.name, "@secret ")] = keys
		case strings.HasPrefix(s.name, "@"):
			return nil, fmt.Errorf("unknown section %s", s.name)
		default:
			c.files = append(c.files, caseFile{name: s.name, data: s.data})
		}
	}
	return c, c.check()
}

func (c *badCase) set(key, value string) error {
	code := func(into **int) error {
		n, err := strconv.Atoi(value)
		if err != nil {
			return err
		}
		*into = &n
		return nil
	}
	switch key {
	case "want":
		c.want = append(c.want, value)
	case "want-validate":
		c.wantValidate = append(c.wantValidate, value)
	case "want-apply":
		c.wantApply = append(c.wantApply, value)
	case "want-daemon":
		c.wantDaemon = append(c.wantDaemon, value)
	case "want-cli":
		c.wantCLI = append(c.wantCLI, value)
	case "avoid":
		c.avoid = append(c.avoid, value)
	case "reason":
		c.reason = value
	case "validate":
		return code(&c.validate)
	case "apply":
		return code(&c.apply)
	case "daemon-command":
		return code(&c.daemonCommand)
	case "validate-args":
		c.validateArgs = strings.Fields(value)
	case "cli":
		exit, args, _ := strings.Cut(value, " ")
		n, err := strconv.Atoi(exit)
		if err != nil {
			return fmt.Errorf("want EXIT ARGS…: %w", err)
		}
		c.cli = append(c.cli, cliRun{exit: n, args: strings.Fields(args)})
	case "limits":
		c.limits = map[string]string{}
		for _, kv := range strings.Fields(value) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return fmt.Errorf("want name=value, got %q", kv)
			}
			c.limits[k] = v
		}
	case "link":
		name, target, ok := strings.Cut(value, " ")
		if !ok {
			return fmt.Errorf("want NAME TARGET")
		}
		c.links = append(c.links, caseLink{name: name, target: strings.TrimSpace(target)})
	case "generate":
		// generate: NAME KIND ARG, kept as a file whose content is made
		// when the repository is built.
		f := strings.Fields(value)
		if len(f) != 3 {
			return fmt.Errorf("want NAME KIND ARG")
		}
		data, err := generateFile(f[1], f[2])
		if err != nil {
			return err
		}
		c.files = append(c.files, caseFile{name: f[0], data: data})
	case "receiver":
		c.receiver = value
	case "method":
		c.method = value
	case "path":
		c.hookPath = value
	case "sign":
		c.sign = value
	case "header":
		k, v, ok := strings.Cut(value, ":")
		if !ok {
			return fmt.Errorf("want Name: value")
		}
		c.headers = append(c.headers, [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
	case "body-size":
		q, err := resource.ParseQuantity(value)
		if err != nil {
			return err
		}
		c.bodySize = q.Value()
	case "slow":
		c.slow = value == "true"
	case "status":
		n, err := strconv.Atoi(value)
		if err != nil {
			return err
		}
		c.status = n
	default:
		return fmt.Errorf("unknown key")
	}
	return nil
}

// check refuses a case that would assert nothing.
func (c *badCase) check() error {
	if c.about == "" {
		return fmt.Errorf("say what the case is about in a # line")
	}
	// A webhook answered 202 did nothing and has no error to name.
	if len(c.want)+len(c.wantDaemon) == 0 && (c.category != "webhooks" || c.status != 202) {
		return fmt.Errorf("no want: every case names what its error must say")
	}
	switch c.category {
	case "webhooks":
		if c.status == 0 || c.receiver == "" {
			return fmt.Errorf("a webhook case needs receiver and status")
		}
	case "config":
		if c.config == "" || c.reason == "" {
			return fmt.Errorf("a configuration case needs a @config section and a reason")
		}
		if c.apply == nil && c.daemonCommand == nil && len(c.cli) == 0 {
			return fmt.Errorf("no CLI face: give apply, daemon-command or cli")
		}
	default:
		if c.reason == "" {
			return fmt.Errorf("no reason: the daemon's Ready reason is asserted")
		}
		if c.validate == nil && c.apply == nil {
			return fmt.Errorf("no CLI face: give validate or apply")
		}
	}
	return nil
}

type txtarSection struct {
	name string
	data []byte
}

// splitTxtar cuts a file at its "-- NAME --" lines.
func splitTxtar(data []byte) (header string, sections []txtarSection) {
	var head bytes.Buffer
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		trimmed := strings.TrimRight(string(line), "\r\n")
		if strings.HasPrefix(trimmed, "-- ") && strings.HasSuffix(trimmed, " --") && len(trimmed) > 6 {
			sections = append(sections, txtarSection{name: strings.TrimSpace(trimmed[3 : len(trimmed)-3])})
			continue
		}
		if len(sections) == 0 {
			head.Write(line)
		} else {
			last := &sections[len(sections)-1]
			last.data = append(last.data, line...)
		}
	}
	return head.String(), sections
}

func parseTreeLine(line string) (treeLine, error) {
	fields := strings.SplitN(strings.TrimSpace(line), " ", 3)
	if len(fields) != 3 {
		return treeLine{}, fmt.Errorf("want KIND PATH VALUE, got %q", line)
	}
	text, err := unquoteMaybe(fields[2])
	if err != nil {
		return treeLine{}, err
	}
	switch fields[0] {
	case "file":
		return treeLine{mode: "100644", path: fields[1], data: text}, nil
	case "link":
		return treeLine{mode: "120000", path: fields[1], data: text}, nil
	case "big":
		q, err := resource.ParseQuantity(text)
		if err != nil {
			return treeLine{}, err
		}
		return treeLine{mode: "100644", path: fields[1], size: q.Value()}, nil
	}
	return treeLine{}, fmt.Errorf("unknown entry kind %q", fields[0])
}

func unquoteMaybe(s string) (string, error) {
	if strings.HasPrefix(s, `"`) {
		return strconv.Unquote(s)
	}
	return s, nil
}

// generateFile makes the content of a generated file:
//
//	configmap SIZE  a ConfigMap "huge" whose one value has SIZE bytes
//	nested DEPTH    a ConfigMap whose data is DEPTH flow sequences deep
//	filler SIZE     SIZE bytes of YAML comments
func generateFile(kind, arg string) ([]byte, error) {
	switch kind {
	case "configmap", "filler":
		q, err := resource.ParseQuantity(arg)
		if err != nil {
			return nil, err
		}
		n := int(q.Value())
		if kind == "filler" {
			line := "# a line of a file far larger than any manifest needs to be\n"
			return bytes.Repeat([]byte(line), n/len(line)+1)[:n], nil
		}
		return []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: huge}\ndata:\n  blob: " + strings.Repeat("x", n) + "\n"), nil
	case "nested":
		n, err := strconv.Atoi(arg)
		if err != nil {
			return nil, err
		}
		return []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: deep}\ndata:\n  deep: " + strings.Repeat("[", n) + strings.Repeat("]", n) + "\n"), nil
	}
	return nil, fmt.Errorf("unknown generator %q", kind)
}

// expand fills a case's placeholders: {{namespace}}, {{sync}}, {{url}} …
func expand(s string, vars map[string]string) string {
	for k, v := range vars {
		s = strings.ReplaceAll(s, "{{"+k+"}}", v)
	}
	return s
}

func expandAll(list []string, vars map[string]string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = expand(s, vars)
	}
	return out
}

// repoPath is where a case's file or link lives in the repository.
func repoPath(name string) string {
	if strings.HasPrefix(name, "/") {
		return strings.TrimPrefix(name, "/")
	}
	return path.Join(corpusSyncPath, name)
}

// corpusSyncPath is the folder of the repository every sync renders.
const corpusSyncPath = "deploy"

// writeCaseDir writes a case's files and links into a directory, as a
// checkout would hold them, for `gitk8s validate DIR`.
func writeCaseDir(t *testing.T, base map[string]string, c *badCase, vars map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, data []byte) {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range base {
		write(name, []byte(content))
	}
	for _, f := range c.files {
		write(repoPath(f.name), []byte(expand(string(f.data), vars)))
	}
	for _, l := range c.links {
		p := filepath.Join(dir, filepath.FromSlash(repoPath(l.name)))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(l.target, p); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// gitTree is a tree to write with Git plumbing, entries in the order they
// are added: no sorting into Git's order beyond a stable one, and no
// refusal of duplicate or odd names, which is what a hostile pusher can
// write too.
type gitTree struct {
	entries []*gitEntry
}

type gitEntry struct {
	mode, name, key string
	data            []byte
	tree            *gitTree
}

// add puts an entry at p (parts split at "/", each URL-unescaped, ~N
// naming a second folder of one name).
func (g *gitTree) add(t *testing.T, p, mode string, data []byte) {
	t.Helper()
	parts := strings.Split(p, "/")
	dir := g
	for _, key := range parts[:len(parts)-1] {
		var next *gitTree
		for _, e := range dir.entries {
			if e.key == key && e.tree != nil {
				next = e.tree
			}
		}
		if next == nil {
			next = &gitTree{}
			dir.entries = append(dir.entries, &gitEntry{mode: "40000", name: entryName(t, key), key: key, tree: next})
		}
		dir = next
	}
	key := parts[len(parts)-1]
	dir.entries = append(dir.entries, &gitEntry{mode: mode, name: entryName(t, key), key: key, data: data})
}

func entryName(t *testing.T, key string) string {
	t.Helper()
	if i := strings.LastIndex(key, "~"); i > 0 {
		if _, err := strconv.Atoi(key[i+1:]); err == nil {
			key = key[:i]
		}
	}
	name, err := url.PathUnescape(key)
	if err != nil {
		t.Fatalf("tree entry %q: %v", key, err)
	}
	return name
}

// write stores the tree in the repository at dir and returns its id.
// Entries are put in Git's order (a folder sorts as its name and "/"),
// stably, so that duplicates stay as given.
func (g *gitTree) write(t *testing.T, dir string) string {
	t.Helper()
	return testenv.MkTree(t, dir, g.treeEntries())
}

// treeEntries are the tree's entries, folders with theirs, in Git's order.
func (g *gitTree) treeEntries() []testenv.TreeEntry {
	sorted := append([]*gitEntry(nil), g.entries...)
	sortKey := func(e *gitEntry) string {
		if e.tree != nil {
			return e.name + "/"
		}
		return e.name
	}
	sort.SliceStable(sorted, func(i, j int) bool { return sortKey(sorted[i]) < sortKey(sorted[j]) })
	out := make([]testenv.TreeEntry, len(sorted))
	for i, e := range sorted {
		out[i] = testenv.TreeEntry{Mode: e.mode, Name: e.name, Data: string(e.data)}
		if e.tree != nil {
			out[i].Kids = e.tree.treeEntries()
		}
	}
	return out
}

// faceTimeout is how long a face may take before the test gives up on it.
const faceTimeout = 2 * time.Minute
