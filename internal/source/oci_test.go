package source

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"

	"github.com/gitk8s/gitk8s/internal/testenv"
	"github.com/gitk8s/gitk8s/internal/testenv/chartrepo"
)

func readTree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		rel, _ := filepath.Rel(root, p)
		out[filepath.ToSlash(rel)] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestOCIArtifacts: a folder pushed as a Flux-format artifact to a
// registry on loopback (the distribution registry, with htpasswd auth) is
// read back file for file; an unchanged tag costs a manifest HEAD and no
// blob; a moved tag gives the new artifact; a semver range picks the
// highest tag in it; a plain YAML layer (as oras push makes it) is read by
// its title; a deleted tag, refused credentials and a corrupted layer are
// errors that say so, and nothing of a corrupted artifact is kept.
func TestOCIArtifacts(t *testing.T) {
	reg := chartrepo.NewRegistry(t, "ci", "oci-pw-3371")
	opts := OCIOptions{Auth: Auth{Username: "ci", Password: "oci-pw-3371"}}
	files := map[string]string{
		"deploy/app.yaml":           "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\n",
		"deploy/nested/secret.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n",
		"README.md":                 "the artifact\n",
	}
	dir := testenv.WriteFiles(t, files)
	ref, err := ParseOCI("oci://"+reg.Host+"/team/app:v1", "", "")
	if err != nil {
		t.Fatal(err)
	}
	pushed, err := PushOCI(t.Context(), ref, dir, map[string]string{"org.opencontainers.image.revision": "main@sha1:abc"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	again, err := PushOCI(t.Context(), ref, dir, map[string]string{"org.opencontainers.image.revision": "main@sha1:abc"}, opts)
	if err != nil || again != pushed {
		t.Fatalf("pushing the same folder again made %s, not %s (%v): the artifact is not reproducible", again, pushed, err)
	}
	f := NewOCIFetcher(t.TempDir())
	snap, d, err := f.Fetch(t.Context(), ref, "deploy", opts)
	if err != nil {
		t.Fatal(err)
	}
	if d != again || snap.Revision != d || snap.Path != "deploy" {
		t.Errorf("fetched %s (snapshot %s at %s), pushed %s", d, snap.Revision, snap.Path, again)
	}
	if got := readTree(t, snap.Root); len(got) != len(files) || got["deploy/nested/secret.yaml"] != files["deploy/nested/secret.yaml"] {
		t.Errorf("the artifact's files: %v", got)
	}

	before := len(reg.Requests())
	if _, d2, err := f.Fetch(t.Context(), ref, "deploy", opts); err != nil || d2 != d {
		t.Fatalf("an unchanged tag: %s, %v", d2, err)
	}
	var heads int
	for _, r := range reg.Requests()[before:] {
		if strings.Contains(r, "/blobs/") || strings.HasPrefix(r, "GET ") && strings.Contains(r, "/manifests/") {
			t.Errorf("an unchanged tag fetched %s", r)
		}
		if strings.HasPrefix(r, "HEAD ") {
			heads++
		}
	}
	if heads != 1 || len(reg.Requests())-before != 1 {
		t.Errorf("an unchanged tag made %v, want one HEAD request", reg.Requests()[before:])
	}

	t.Run("moved tag", func(t *testing.T) {
		moved := testenv.WriteFiles(t, map[string]string{"deploy/app.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: moved}\n"})
		if _, err := PushOCI(t.Context(), ref, moved, nil, opts); err != nil {
			t.Fatal(err)
		}
		snap, d2, err := f.Fetch(t.Context(), ref, "deploy", opts)
		if err != nil || d2 == d || !strings.Contains(readTree(t, snap.Root)["deploy/app.yaml"], "moved") {
			t.Errorf("a moved tag: %s (was %s), %v", d2, d, err)
		}
	})

	t.Run("semver", func(t *testing.T) {
		want := ""
		for _, tag := range []string{"1.0.0", "1.2.0", "2.0.0", "not-a-version"} {
			r, _ := ParseOCI("oci://"+reg.Host+"/team/app:"+tag, "", "")
			got, err := PushOCI(t.Context(), r, testenv.WriteFiles(t, map[string]string{"v.yaml": "# " + tag + "\n"}), nil, opts)
			if err != nil {
				t.Fatal(err)
			}
			if tag == "1.2.0" {
				want = got
			}
		}
		r, _ := ParseOCI("oci://"+reg.Host+"/team/app", "", "^1")
		if desc, err := f.Resolve(t.Context(), r, opts); err != nil || desc.Digest.String() != want {
			t.Errorf("semver ^1 resolved to %s (%v), want 1.2.0's %s", desc.Digest, err, want)
		}
	})

	t.Run("plain YAML layer", func(t *testing.T) {
		r, _ := ParseOCI("oci://"+reg.Host+"/team/plain:v1", "", "")
		repo, err := repository(r, opts)
		if err != nil {
			t.Fatal(err)
		}
		body := []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\n")
		layer := ocispec.Descriptor{MediaType: "application/yaml", Digest: digest.FromBytes(body), Size: int64(len(body)),
			Annotations: map[string]string{ocispec.AnnotationTitle: "plain.yaml"}}
		if err := repo.Push(t.Context(), layer, bytes.NewReader(body)); err != nil {
			t.Fatal(err)
		}
		m, err := oras.PackManifest(t.Context(), repo, oras.PackManifestVersion1_1, "application/vnd.example.manifests", oras.PackManifestOptions{Layers: []ocispec.Descriptor{layer}})
		if err != nil {
			t.Fatal(err)
		}
		if err := repo.Tag(t.Context(), m, "v1"); err != nil {
			t.Fatal(err)
		}
		snap, _, err := f.Fetch(t.Context(), r, "", opts)
		if err != nil || readTree(t, snap.Root)["plain.yaml"] != string(body) {
			t.Errorf("a plain YAML layer: %v", err)
		}
	})

	t.Run("refused credentials", func(t *testing.T) {
		_, _, err := NewOCIFetcher(t.TempDir()).Fetch(t.Context(), ref, "", OCIOptions{Auth: Auth{Username: "ci", Password: "not-it-9911"}})
		if err == nil || !strings.Contains(err.Error(), "refused the credentials") || strings.Contains(err.Error(), "not-it-9911") {
			t.Errorf("want a refusal without the password, got %v", err)
		}
	})

	t.Run("corrupted layer", func(t *testing.T) {
		r, _ := ParseOCI("oci://"+reg.Host+"/team/app:corrupt", "", "")
		if _, err := PushOCI(t.Context(), r, testenv.WriteFiles(t, map[string]string{"c.yaml": "# corrupt\n"}), nil, opts); err != nil {
			t.Fatal(err)
		}
		reg.CorruptBlobs(true)
		defer reg.CorruptBlobs(false)
		cache := t.TempDir()
		_, _, err := NewOCIFetcher(cache).Fetch(t.Context(), r, "", opts)
		if err == nil || !strings.Contains(err.Error(), "does not match its digest") {
			t.Errorf("want an error saying the layer does not match its digest, got %v", err)
		}
		if kept, _ := filepath.Glob(filepath.Join(cache, "sha256", "*")); len(kept) > 0 {
			t.Errorf("a corrupted artifact was kept: %v", kept)
		}
	})

	t.Run("deleted tag", func(t *testing.T) {
		reg.Delete(t, "team/app", "v1")
		_, _, err := NewOCIFetcher(t.TempDir()).Fetch(t.Context(), ref, "", opts)
		if !errors.Is(err, ErrRefNotFound) || !strings.Contains(err.Error(), "team/app:v1") {
			t.Errorf("want a not-found error naming the tag, got %v", err)
		}
	})
}

// TestOCIExtractRefusesHostileTarballs: a layer whose tarball names a
// path outside the artifact, an absolute path, a link, a device or one
// name twice is refused, and nothing is written outside the folder.
func TestOCIExtractRefusesHostileTarballs(t *testing.T) {
	type entry struct {
		name     string
		typeflag byte
		link     string
	}
	cases := map[string][]entry{
		"parent":    {{name: "../escape.yaml", typeflag: tar.TypeReg}},
		"nested up": {{name: "a/../../escape.yaml", typeflag: tar.TypeReg}},
		"absolute":  {{name: "/tmp/escape.yaml", typeflag: tar.TypeReg}},
		"symlink":   {{name: "link", typeflag: tar.TypeSymlink, link: "/etc"}, {name: "link/passwd", typeflag: tar.TypeReg}},
		"hard link": {{name: "h", typeflag: tar.TypeLink, link: "/etc/passwd"}},
		"device":    {{name: "dev", typeflag: tar.TypeChar}},
		"twice":     {{name: "a.yaml", typeflag: tar.TypeReg}, {name: "./a.yaml", typeflag: tar.TypeReg}},
	}
	for name, entries := range cases {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			tw := tar.NewWriter(zw)
			for _, e := range entries {
				h := &tar.Header{Name: e.name, Typeflag: e.typeflag, Linkname: e.link, Mode: 0o644}
				if e.typeflag == tar.TypeReg {
					h.Size = 3
				}
				if err := tw.WriteHeader(h); err != nil {
					t.Fatal(err)
				}
				if e.typeflag == tar.TypeReg {
					_, _ = tw.Write([]byte("x: "))
				}
			}
			tw.Close()
			zw.Close()
			outside := t.TempDir()
			root := filepath.Join(outside, "artifact")
			if err := os.Mkdir(root, 0o755); err != nil {
				t.Fatal(err)
			}
			x := &extractor{root: root, seen: map[string]bool{}}
			err := x.layer(ocispec.Descriptor{MediaType: FluxContentMediaType}, buf.Bytes())
			if err == nil {
				t.Fatal("the tarball was extracted")
			}
			t.Log(err)
			if entries, _ := os.ReadDir(outside); len(entries) != 1 {
				t.Errorf("something was written beside the artifact's folder: %v", entries)
			}
		})
	}
}

// BenchmarkOCISource compares the two remote sources on one workload of
// 1,000 ConfigMaps: an OCI artifact in a registry on loopback (with
// htpasswd auth) and a Git repository served by git http-backend over
// HTTPS on loopback (with basic auth). "unchanged" is a reconcile's
// question whether the source moved; "cached" a fetch of a revision the
// cache holds; "cold" a first fetch into an empty cache.
func BenchmarkOCISource(b *testing.B) {
	files := map[string]string{}
	for i := range 1000 {
		files[fmt.Sprintf("deploy/ns-%02d/cm-%d.yaml", i/50, i)] = fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-%d}\ndata: {index: \"%d\"}\n", i, i)
	}
	dir := testenv.WriteFiles(b, files)
	reg := chartrepo.NewRegistry(b, "bench", "bench-pw")
	opts := OCIOptions{Auth: Auth{Username: "bench", Password: "bench-pw"}}
	ref, err := ParseOCI("oci://"+reg.Host+"/bench/app:v1", "", "")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := PushOCI(context.Background(), ref, dir, nil, opts); err != nil {
		b.Fatal(err)
	}
	up := &upstream{root: b.TempDir(), work: dir}
	testenv.Git(b, up.root, "init", "-q", "--bare", "-b", "main", "repo.git")
	testenv.Git(b, up.work, "init", "-q", "-b", "main")
	testenv.Git(b, up.work, "remote", "add", "origin", filepath.Join(up.root, "repo.git"))
	testenv.Git(b, up.work, "add", ".")
	testenv.Git(b, up.work, "-c", "user.name=b", "-c", "user.email=b@example.test", "commit", "-q", "-m", "x")
	testenv.Git(b, up.work, "push", "-q", "origin", "main")
	srv := up.serveHTTPSFor(b, "u", "p")
	gitOpts := RemoteOptions{URL: srv.URL + "/repo.git", Ref: Ref{Branch: "main"}, Path: "deploy", Auth: Auth{Username: "u", Password: "p", CABundle: srv.caPEM}}

	oci := NewOCIFetcher(b.TempDir())
	if _, _, err := oci.Fetch(context.Background(), ref, "deploy", opts); err != nil {
		b.Fatal(err)
	}
	git := NewFetcher(b.TempDir())
	if snap, _, err := git.Fetch(context.Background(), gitOpts); err != nil {
		b.Fatal(err)
	} else {
		snap.Close()
	}
	requests := func(b *testing.B, before int) {
		b.ReportMetric(float64(len(reg.Requests())-before)/float64(b.N), "requests/op")
	}
	b.Run("oci/unchanged", func(b *testing.B) {
		before := len(reg.Requests())
		for b.Loop() {
			if _, err := oci.Resolve(context.Background(), ref, opts); err != nil {
				b.Fatal(err)
			}
		}
		requests(b, before)
	})
	b.Run("git/unchanged", func(b *testing.B) {
		for b.Loop() {
			if _, err := git.Resolve(context.Background(), gitOpts); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("oci/cached", func(b *testing.B) {
		before := len(reg.Requests())
		for b.Loop() {
			if _, _, err := oci.Fetch(context.Background(), ref, "deploy", opts); err != nil {
				b.Fatal(err)
			}
		}
		requests(b, before)
	})
	b.Run("git/cached", func(b *testing.B) {
		for b.Loop() {
			snap, _, err := git.Fetch(context.Background(), gitOpts)
			if err != nil {
				b.Fatal(err)
			}
			snap.Close()
		}
	})
	b.Run("oci/cold", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := NewOCIFetcher(b.TempDir()).Fetch(context.Background(), ref, "deploy", opts); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("git/cold", func(b *testing.B) {
		for b.Loop() {
			snap, _, err := NewFetcher(b.TempDir()).Fetch(context.Background(), gitOpts)
			if err != nil {
				b.Fatal(err)
			}
			snap.Close()
		}
	})
}

// signLikeCosign stores a signature of the manifest desc as cosign sign
// --key stores it, made with priv: a simple-signing payload naming
// signedDigest, and its signature in the layer's annotation.
func signLikeCosign(t *testing.T, ref OCIRef, opts OCIOptions, desc ocispec.Descriptor, signedDigest string, priv *ecdsa.PrivateKey) {
	t.Helper()
	repo, err := repository(ref, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte(fmt.Sprintf(`{"critical":{"identity":{"docker-reference":%q},"image":{"docker-manifest-digest":%q},"type":"cosign container image signature"},"optional":null}`, ref.Repository, signedDigest))
	sum := sha256.Sum256(payload)
	sig, err := ecdsa.SignASN1(rand.Reader, priv, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	layer := ocispec.Descriptor{MediaType: cosignPayloadMediaType, Digest: digest.FromBytes(payload), Size: int64(len(payload)),
		Annotations: map[string]string{cosignSignatureKey: base64.StdEncoding.EncodeToString(sig)}}
	if err := repo.Push(t.Context(), layer, bytes.NewReader(payload)); err != nil {
		t.Fatal(err)
	}
	m, err := oras.PackManifest(t.Context(), repo, oras.PackManifestVersion1_1, "application/vnd.dev.cosign.artifact.sig.v1+json", oras.PackManifestOptions{Layers: []ocispec.Descriptor{layer}})
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.Tag(t.Context(), m, "sha256-"+desc.Digest.Encoded()+".sig"); err != nil {
		t.Fatal(err)
	}
}

func publicKeyPEM(t *testing.T, priv *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// TestOCISignatures: a sync that names public keys takes an artifact
// signed (cosign's format) by one of them, and refuses one that is
// unsigned, signed by another key, or carries a signature made for
// another artifact; nothing of a refused artifact is extracted. The
// signature cosign itself makes is checked by TestOCICosignCLI.
func TestOCISignatures(t *testing.T) {
	reg := chartrepo.NewRegistry(t, "", "")
	opts := OCIOptions{}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keys, err := ParsePublicKeys(publicKeyPEM(t, key))
	if err != nil {
		t.Fatal(err)
	}
	push := func(tag, content string) (OCIRef, ocispec.Descriptor) {
		t.Helper()
		ref, _ := ParseOCI("oci://"+reg.Host+"/team/signed:"+tag, "", "")
		if _, err := PushOCI(t.Context(), ref, testenv.WriteFiles(t, map[string]string{"a.yaml": content}), nil, opts); err != nil {
			t.Fatal(err)
		}
		desc, err := NewOCIFetcher(t.TempDir()).Resolve(t.Context(), ref, opts)
		if err != nil {
			t.Fatal(err)
		}
		return ref, desc
	}
	good, goodDesc := push("good", "# good\n")
	signLikeCosign(t, good, opts, goodDesc, goodDesc.Digest.String(), key)
	unsigned, _ := push("unsigned", "# unsigned\n")
	byOther, otherDesc := push("other", "# other\n")
	signLikeCosign(t, byOther, opts, otherDesc, otherDesc.Digest.String(), other)
	replayed, replayedDesc := push("replayed", "# replayed\n")
	signLikeCosign(t, replayed, opts, replayedDesc, goodDesc.Digest.String(), key)

	verify := OCIOptions{VerifyKeys: keys}
	if _, _, err := NewOCIFetcher(t.TempDir()).Fetch(t.Context(), good, "", verify); err != nil {
		t.Errorf("a signed artifact: %v", err)
	}
	for name, tc := range map[string]struct {
		ref  OCIRef
		want string
	}{
		"unsigned":           {unsigned, "is not signed"},
		"signed by another":  {byOther, "no valid cosign signature"},
		"signature replayed": {replayed, "no valid cosign signature"},
	} {
		t.Run(name, func(t *testing.T) {
			cache := t.TempDir()
			_, _, err := NewOCIFetcher(cache).Fetch(t.Context(), tc.ref, "", verify)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error saying %q, got %v", tc.want, err)
			}
			if kept, _ := filepath.Glob(filepath.Join(cache, "sha256", "*")); len(kept) > 0 {
				t.Errorf("a refused artifact was extracted: %v", kept)
			}
		})
	}
	if _, _, err := NewOCIFetcher(t.TempDir()).Fetch(t.Context(), unsigned, "", opts); err != nil {
		t.Errorf("without keys an unsigned artifact is read: %v", err)
	}
}

// TestOCICosignCLI: an artifact gitk8s pushed and the cosign CLI signed
// with a key pair it generated (cosign sign --key, no transparency log)
// is taken with cosign's public key, and the same key refuses an
// artifact cosign did not sign.
func TestOCICosignCLI(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cosign := filepath.Join(root, ".cache", "bin", "cosign")
	if _, err := os.Stat(cosign); err != nil {
		t.Fatalf("cosign missing at %s; build it with `make cosign`", cosign)
	}
	home := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(cosign, args...)
		cmd.Dir = home
		cmd.Env = []string{"HOME=" + home, "COSIGN_PASSWORD=", "COSIGN_YES=true", "PATH=" + os.Getenv("PATH"), "DOCKER_CONFIG=" + home}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("generate-key-pair")
	pub, err := os.ReadFile(filepath.Join(home, "cosign.pub"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := ParsePublicKeys(pub)
	if err != nil {
		t.Fatal(err)
	}
	reg := chartrepo.NewRegistry(t, "", "")
	signed, _ := ParseOCI("oci://"+reg.Host+"/team/app:signed", "", "")
	d, err := PushOCI(t.Context(), signed, testenv.WriteFiles(t, map[string]string{"a.yaml": "# signed\n"}), nil, OCIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	run("sign", "--key", "cosign.key", "--tlog-upload=false", "--allow-insecure-registry", "--allow-http-registry", reg.Host+"/team/app@"+d)
	if _, _, err := NewOCIFetcher(t.TempDir()).Fetch(t.Context(), signed, "", OCIOptions{VerifyKeys: keys}); err != nil {
		t.Errorf("an artifact cosign signed: %v", err)
	}
	unsigned, _ := ParseOCI("oci://"+reg.Host+"/team/app:unsigned", "", "")
	if _, err := PushOCI(t.Context(), unsigned, testenv.WriteFiles(t, map[string]string{"a.yaml": "# not signed\n"}), nil, OCIOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := NewOCIFetcher(t.TempDir()).Fetch(t.Context(), unsigned, "", OCIOptions{VerifyKeys: keys}); err == nil || !strings.Contains(err.Error(), "is not signed") {
		t.Errorf("an artifact cosign did not sign: want a refusal, got %v", err)
	}
}
