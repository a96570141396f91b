package testenv

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// SOPSEncrypt encrypts content (a file's, named name for its format) with
// the sops CLI the Makefile builds (make sops), for the age recipients,
// as a repository's maintainer would: the data and stringData of a
// manifest (YAML or JSON with a kind), every value of other files. It
// returns the encrypted content.
func SOPSEncrypt(t testing.TB, name, content string, recipients ...string) string {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, ".cache", "bin", "sops")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("sops missing at %s; build it with `make sops`", bin)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, name)
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--encrypt", "--age", strings.Join(recipients, ",")}
	if strings.Contains(content, "kind:") || strings.Contains(content, `"kind"`) {
		args = append(args, "--encrypted-regex", "^(data|stringData)$")
	}
	cmd := exec.Command(bin, append(args, file)...)
	cmd.Env = []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH")}
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("sops --encrypt %s: %v\n%s", name, err, ee.Stderr)
		}
		t.Fatal(err)
	}
	return string(out)
}
