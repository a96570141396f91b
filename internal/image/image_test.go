package image

import (
	"archive/tar"
	"crypto/x509"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/gitk8s/gitk8s/internal/testenv"
)

// TestImage builds gitk8s as make image does — a static binary stamped
// with a version, then the image — and checks what the image holds, read
// back from its tarball: the binary is static and runs `gitk8s version`
// with the version and the ApplySet tooling stamped, the user is not
// root, the entrypoint is the binary, the CA certificates parse, and the
// OCI layout holds the same image.
func TestImage(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	const version = "v9.9.9-imagetest"
	dir := t.TempDir()
	bin := filepath.Join(dir, "gitk8s")
	build := exec.Command("go", "build", "-trimpath", "-ldflags",
		"-s -w -X main.version="+version+" -X github.com/gitk8s/gitk8s/internal/apply.Tooling=gitk8s/"+version, "-o", bin, "./cmd/gitk8s")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	img, err := Build(Options{Binary: bin, Version: version, CACertificates: "/etc/ssl/certs/ca-certificates.crt", Repository: "gitk8s"})
	if err != nil {
		t.Fatal(err)
	}
	tarFile := filepath.Join(dir, "gitk8s.tar")
	if err := WriteTarball(img, "gitk8s:"+version, tarFile); err != nil {
		t.Fatal(err)
	}
	layoutDir := filepath.Join(dir, "oci")
	if err := WriteLayout(img, layoutDir); err != nil {
		t.Fatal(err)
	}

	loaded, err := tarball.ImageFromPath(tarFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := loaded.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if u := cfg.Config.User; u == "" || u == "0" || strings.HasPrefix(u, "0:") || u == "root" {
		t.Errorf("the image runs as %q, want a non-root user", u)
	}
	if len(cfg.Config.Entrypoint) != 1 || cfg.Config.Entrypoint[0] != BinaryPath {
		t.Errorf("entrypoint %v, want [%s]", cfg.Config.Entrypoint, BinaryPath)
	}
	if cfg.Config.Labels["org.opencontainers.image.version"] != version {
		t.Errorf("labels %v", cfg.Config.Labels)
	}

	// The files, as a container would see them.
	got := map[string][]byte{}
	modes := map[string]int64{}
	rc := mutate.Extract(loaded)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		got["/"+strings.TrimSuffix(h.Name, "/")] = data
		modes["/"+strings.TrimSuffix(h.Name, "/")] = h.Mode
	}
	if !x509.NewCertPool().AppendCertsFromPEM(got[CAPath]) {
		t.Errorf("%s holds no CA certificate", CAPath)
	}
	if !strings.Contains(string(got["/etc/passwd"]), ":65532:65532:") {
		t.Errorf("/etc/passwd has no user 65532: %q", got["/etc/passwd"])
	}
	if modes[BinaryPath]&0o111 == 0 {
		t.Errorf("%s is not executable (mode %o)", BinaryPath, modes[BinaryPath])
	}
	extracted := filepath.Join(dir, "from-image")
	if err := os.WriteFile(extracted, got[BinaryPath], 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(extracted)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary in the image is dynamically linked")
		}
	}
	f.Close()
	out, err := exec.Command(extracted, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "gitk8s "+version) || !strings.Contains(string(out), "ApplySet tooling gitk8s/"+version) {
		t.Errorf("gitk8s version from the image: %v\n%s", err, out)
	}

	p, err := layout.FromPath(layoutDir)
	if err != nil {
		t.Fatal(err)
	}
	index, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	m, err := index.IndexManifest()
	if err != nil || len(m.Manifests) != 1 {
		t.Fatalf("the layout's index: %v %v", m, err)
	}
	want, _ := img.Digest()
	if m.Manifests[0].Digest != want {
		t.Errorf("the layout holds %s, the tarball %s", m.Manifests[0].Digest, want)
	}

	if _, err := Build(Options{Binary: "/bin/sh", Version: version, CACertificates: "/etc/ssl/certs/ca-certificates.crt"}); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Errorf("a dynamic binary: want a refusal, got %v", err)
	}
}
