package reconcile

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/gitk8s/gitk8s/internal/source"
)

// InventoryName is the ApplySet parent of the sync with this name, the
// same from the CLI and the daemon: gitk8s-<name>.
func InventoryName(syncName string) string { return "gitk8s-" + syncName }

var notNameChars = regexp.MustCompile(`[^a-z0-9-]+`)

// SyncNameOf names the sync of a source that was given no name, as the
// CLI has always named it: the last element of its path or URL, then the
// rendered folder, lowercased, at most 56 characters (so that its
// inventory name is a DNS label). A manifest file is named without its
// extension (deploy.yaml: deploy), standard input (-) is stdin.
func SyncNameOf(origin, folder string) string {
	// Credentials in a URL never become part of a name.
	origin = source.Redact(origin)
	base := strings.TrimSuffix(filepath.Base(strings.TrimRight(origin, "/")), ".git")
	if source.IsOCI(origin) {
		// The tag or digest moves; the repository names the sync.
		base, _, _ = strings.Cut(base, "@")
		base, _, _ = strings.Cut(base, ":")
	}
	// A manifest file is named without its extension; standard input is
	// "stdin".
	switch strings.ToLower(filepath.Ext(base)) {
	case ".yaml", ".yml", ".json", ".jsonnet":
		base = strings.TrimSuffix(base, filepath.Ext(base))
	}
	if origin == source.Stdin {
		base = "stdin"
	}
	if abs, err := filepath.Abs(origin); err == nil && (origin == "." || origin == "") {
		base = filepath.Base(abs)
	}
	name := "gitk8s-" + base
	if folder != "" && folder != "." {
		name += "-" + folder
	}
	name = strings.Trim(notNameChars.ReplaceAllString(strings.ToLower(name), "-"), "-")
	if len(name) > 63 {
		name = strings.TrimRight(name[:63], "-")
	}
	return strings.TrimPrefix(name, "gitk8s-")
}

// SyncNameOfSources names the sync of sources given together, as the CLI
// takes them (SRC and more files): one source is named as SyncNameOf
// names it; several are named after the first, without its extension,
// and how many more there are (deploy.yaml and two more:
// deploy-and-2-more).
func SyncNameOfSources(sources []string, folder string) string {
	if len(sources) == 0 {
		return SyncNameOf("", folder)
	}
	origin := sources[0]
	if more := len(sources) - 1; more > 0 {
		origin = fmt.Sprintf("%s-and-%d-more", strings.TrimSuffix(filepath.Base(origin), filepath.Ext(origin)), more)
	}
	return SyncNameOf(origin, folder)
}
