package main

import (
	"strings"
	"testing"
)

// TestConfigRefusesSourceSettings refuses the flags that would open an
// oci:// SRC otherwise than the daemon's sync does (its source.verify and
// source.insecure).
func TestConfigRefusesSourceSettings(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--verify-key", "cosign.pub"}, "--verify-key cannot be given"},
		{[]string{"--oci-plain-http"}, "--oci-plain-http cannot be given"},
	} {
		args := append([]string{"diff", dir, "--config", "config.yaml", "--sync", "shop"}, tt.args...)
		_, stderr, code := gitk8s(t, args...)
		if code != exitError || !strings.Contains(stderr, tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tt.args, code, stderr, exitError, tt.want)
		}
	}
}

// TestSettingFlagsAreFlags keeps settingFlags to flags of apply or diff
// (--wait is apply's alone): a misspelt name would let its flag through
// with --config.
func TestSettingFlagsAreFlags(t *testing.T) {
	var help strings.Builder
	for _, command := range []string{"apply", "diff"} {
		out, stderr, code := gitk8s(t, command, "--help")
		if code != 0 {
			t.Fatalf("%s --help: exit %d\n%s", command, code, stderr)
		}
		help.WriteString(out)
	}
	for _, name := range settingFlags {
		if !strings.Contains(help.String(), "--"+name+" ") {
			t.Errorf("neither apply nor diff has a flag --%s, which settingFlags names", name)
		}
	}
}
