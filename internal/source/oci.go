package source

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/Masterminds/semver/v3"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// OCI artifacts as a source: oci://REGISTRY/REPOSITORY[:TAG|@DIGEST]. The
// artifact is what `flux push artifact` and `gitk8s push` make (a config
// of Flux's media type and one gzipped tarball layer of the folder), or
// layers of plain YAML files as `oras push` makes them (each named by its
// title annotation). An artifact is extracted once per digest into the
// cache, so a tag that did not move costs one manifest HEAD request.

// Media types of the artifacts gitk8s reads and makes.
const (
	// FluxConfigMediaType is the config of a Flux artifact.
	FluxConfigMediaType = "application/vnd.cncf.flux.config.v1+json"
	// FluxContentMediaType is its layer: a gzipped tarball of the files.
	FluxContentMediaType = "application/vnd.cncf.flux.content.v1.tar+gzip"
)

// Bounds of an artifact.
const (
	maxManifestBytes = 4 << 20
	maxArtifactBytes = 256 << 20 // compressed, all layers
	maxExtractBytes  = 512 << 20 // extracted, all files
	maxArtifactFiles = 100000
)

// IsOCI reports whether src names an OCI artifact.
func IsOCI(src string) bool { return strings.HasPrefix(src, "oci://") }

// OCIOptions say how to reach a registry.
type OCIOptions struct {
	// Auth: Username and Password (or a token), CABundle.
	Auth Auth
	// DockerConfig lets a registry without credentials in Auth use those
	// of Docker's configuration, as the CLI does.
	DockerConfig bool
	// PlainHTTP allows plain HTTP to a registry that is not on loopback
	// (loopback is always reached over plain HTTP).
	PlainHTTP bool
	// Timeout bounds each request (default 60s).
	Timeout time.Duration
	// VerifyKeys, when set, require a cosign signature of the artifact by
	// one of them: an unsigned artifact is refused.
	VerifyKeys []crypto.PublicKey
}

// OCIRef is an artifact reference: the repository and one of tag, digest
// or semver range over its tags.
type OCIRef struct {
	// Repository is REGISTRY/PATH.
	Repository string
	Tag        string
	Digest     string
	SemVer     string
}

func (r OCIRef) String() string {
	switch {
	case r.Digest != "":
		return "oci://" + r.Repository + "@" + r.Digest
	case r.SemVer != "":
		return "oci://" + r.Repository + " (semver " + r.SemVer + ")"
	}
	return "oci://" + r.Repository + ":" + r.Tag
}

// ParseOCI reads oci://REGISTRY/PATH[:TAG|@sha256:…]; tag and semver, when
// given, replace a tag in the URL. With none of them the tag is latest.
func ParseOCI(src, tag, semverRange string) (OCIRef, error) {
	rest, ok := strings.CutPrefix(src, "oci://")
	if !ok || rest == "" {
		return OCIRef{}, fmt.Errorf("%s: an OCI source is oci://REGISTRY/REPOSITORY[:TAG|@DIGEST]", src)
	}
	ref := OCIRef{}
	if repo, d, ok := strings.Cut(rest, "@"); ok {
		if _, err := digest.Parse(d); err != nil {
			return OCIRef{}, fmt.Errorf("%s: digest %q: %v", src, d, err)
		}
		ref.Repository, ref.Digest = repo, d
	} else {
		ref.Repository = rest
		if i := strings.LastIndex(rest, ":"); i > strings.LastIndex(rest, "/") {
			ref.Repository, ref.Tag = rest[:i], rest[i+1:]
		}
	}
	if !strings.Contains(ref.Repository, "/") {
		return OCIRef{}, fmt.Errorf("%s: name a repository inside the registry (oci://REGISTRY/REPOSITORY)", src)
	}
	if semverRange != "" {
		if ref.Digest != "" {
			return OCIRef{}, fmt.Errorf("%s: a digest pins the artifact, so a semver range has no meaning with it", src)
		}
		ref.Tag, ref.SemVer = "", semverRange
	} else if tag != "" {
		if ref.Digest != "" {
			return OCIRef{}, fmt.Errorf("%s: a digest pins the artifact, so tag %s has no meaning with it", src, tag)
		}
		ref.Tag = tag
	}
	if ref.Tag == "" && ref.Digest == "" && ref.SemVer == "" {
		ref.Tag = "latest"
	}
	if _, err := remote.NewRepository(ref.Repository); err != nil {
		return OCIRef{}, fmt.Errorf("%s: %v", src, err)
	}
	return ref, nil
}

// OCIFetcher reads artifacts and keeps them, extracted, by digest. It
// remembers each registry's auth scheme (and tokens) per set of
// credentials, so that asking whether a tag moved is one request, and no
// sync ever uses a token another sync's credentials obtained.
type OCIFetcher struct {
	// Dir holds the cache.
	Dir string

	locks     KeyLocks
	mu        sync.Mutex
	authCache map[string]auth.Cache
}

// cacheFor is the auth cache of one registry and set of credentials.
func (f *OCIFetcher) cacheFor(host string, opts OCIOptions) auth.Cache {
	sum := sha256.Sum256([]byte(host + "\x00" + opts.Auth.Username + "\x00" + opts.Auth.Password + fmt.Sprint(opts.DockerConfig)))
	key := hex.EncodeToString(sum[:])
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.authCache == nil {
		f.authCache = map[string]auth.Cache{}
	}
	c, ok := f.authCache[key]
	if !ok {
		c = auth.NewCache()
		f.authCache[key] = c
	}
	return c
}

// NewOCIFetcher returns an OCIFetcher caching under dir.
func NewOCIFetcher(dir string) *OCIFetcher { return &OCIFetcher{Dir: dir} }

// repository is the remote repository of ref with opts' credentials,
// with the auth cache of the fetcher when there is one.
func (f *OCIFetcher) repository(ref OCIRef, opts OCIOptions) (*remote.Repository, error) {
	repo, err := repository(ref, opts)
	if err != nil {
		return nil, err
	}
	repo.Client.(*auth.Client).Cache = f.cacheFor(repo.Reference.Registry, opts)
	return repo, nil
}

// KeyLocks serializes work per key (a cache entry); the zero value is
// ready.
type KeyLocks struct {
	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

// Lock locks key and returns its unlock.
func (k *KeyLocks) Lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*sync.Mutex{}
	}
	l, ok := k.locks[key]
	if !ok {
		l = &sync.Mutex{}
		k.locks[key] = l
	}
	k.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// TransportWithCA is the default HTTP transport with caBundle's PEM
// certificates trusted beside the system's.
func TransportWithCA(caBundle []byte) (*http.Transport, error) {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if len(caBundle) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(caBundle) {
			return nil, errors.New("the CA bundle holds no PEM certificate")
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return transport, nil
}

// repository is the remote repository of ref with opts' credentials.
func repository(ref OCIRef, opts OCIOptions) (*remote.Repository, error) {
	repo, err := remote.NewRepository(ref.Repository)
	if err != nil {
		return nil, err
	}
	host := repo.Reference.Registry
	repo.PlainHTTP = opts.PlainHTTP || IsLoopbackHost(host)
	repo.TagListMaxPages = 100
	transport, err := TransportWithCA(opts.Auth.CABundle)
	if err != nil {
		return nil, err
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	client := &auth.Client{Client: &http.Client{Transport: transport, Timeout: timeout}, Cache: auth.NewCache()}
	switch {
	case opts.Auth.Username != "" || opts.Auth.Password != "":
		client.Credential = auth.StaticCredential(host, auth.Credential{Username: opts.Auth.Username, Password: opts.Auth.Password})
	case opts.DockerConfig:
		store, err := credentials.NewStoreFromDocker(credentials.StoreOptions{})
		if err != nil {
			return nil, fmt.Errorf("Docker's configuration cannot be read for the registry's credentials: %v", err)
		}
		client.Credential = credentials.Credential(store)
	}
	repo.Client = client
	return repo, nil
}

// IsLoopbackHost reports whether host (or host:port) is this machine:
// only there is plain HTTP used unless asked for.
func IsLoopbackHost(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	ip := net.ParseIP(h)
	return h == "localhost" || (ip != nil && ip.IsLoopback())
}

// Resolve asks the registry which manifest the reference names: one HEAD
// request for a tag, a tag list for a semver range, none for a digest.
func (f *OCIFetcher) Resolve(ctx context.Context, ref OCIRef, opts OCIOptions) (ocispec.Descriptor, error) {
	repo, err := f.repository(ref, opts)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%s: %w", ref, err)
	}
	return resolve(ctx, repo, ref)
}

func resolve(ctx context.Context, repo *remote.Repository, ref OCIRef) (ocispec.Descriptor, error) {
	target := ref.Tag
	switch {
	case ref.Digest != "":
		target = ref.Digest
	case ref.SemVer != "":
		tag, err := highestTag(ctx, repo, ref)
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		target = tag
	}
	desc, err := repo.Resolve(ctx, target)
	if err != nil {
		return ocispec.Descriptor{}, registryError(ref, err)
	}
	if desc.Size > maxManifestBytes {
		return ocispec.Descriptor{}, fmt.Errorf("%s: the manifest is larger than %d MiB", ref, maxManifestBytes>>20)
	}
	return desc, nil
}

// highestTag is the highest tag of the repository in ref's semver range.
func highestTag(ctx context.Context, repo *remote.Repository, ref OCIRef) (string, error) {
	constraint, err := semver.NewConstraint(ref.SemVer)
	if err != nil {
		return "", fmt.Errorf("%s: semver range %q: %w", ref, ref.SemVer, err)
	}
	var best *semver.Version
	bestTag := ""
	err = repo.Tags(ctx, "", func(tags []string) error {
		for _, t := range tags {
			v, err := semver.NewVersion(t)
			if err != nil || !constraint.Check(v) {
				continue
			}
			if best == nil || v.GreaterThan(best) {
				best, bestTag = v, t
			}
		}
		return nil
	})
	if err != nil {
		return "", registryError(ref, err)
	}
	if best == nil {
		return "", fmt.Errorf("%s: %w: no tag is in the semver range %q", ref, ErrRefNotFound, ref.SemVer)
	}
	return bestTag, nil
}

// registryError says what a failed registry request means, without the
// credentials.
func registryError(ref OCIRef, err error) error {
	var resp *errcode.ErrorResponse
	switch {
	case errors.Is(err, errdef.ErrNotFound), errors.As(err, &resp) && resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%s: %w: the registry has no such artifact (a deleted or mistyped tag?)", ref, ErrRefNotFound)
	case errors.As(err, &resp) && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden):
		return fmt.Errorf("%s: the registry refused the credentials (or needs some): %s; give them as a Docker config or the sync's auth Secret", ref, http.StatusText(resp.StatusCode))
	}
	return fmt.Errorf("%s: %s", ref, Redact(err.Error()))
}

// Fetch resolves ref and returns a snapshot of the artifact at path, and
// its digest. An artifact the cache holds is not fetched again.
func (f *OCIFetcher) Fetch(ctx context.Context, ref OCIRef, folder string, opts OCIOptions) (*Snapshot, string, error) {
	repo, err := f.repository(ref, opts)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", ref, err)
	}
	desc, err := resolve(ctx, repo, ref)
	if err != nil {
		return nil, "", err
	}
	d := desc.Digest.String()
	if desc.Digest.Validate() != nil || desc.Digest.Algorithm() != digest.SHA256 {
		return nil, "", fmt.Errorf("%s: the manifest's digest %q is not a SHA-256", ref, d)
	}
	if len(opts.VerifyKeys) > 0 {
		if err := verifySignature(ctx, repo, ref, desc, opts.VerifyKeys); err != nil {
			return nil, "", err
		}
	}
	dir := filepath.Join(f.Dir, "sha256", desc.Digest.Encoded())
	unlock := f.locks.Lock(dir)
	defer unlock()
	if _, err := os.Stat(dir); err != nil {
		if err := f.extract(ctx, repo, ref, desc, dir); err != nil {
			return nil, "", err
		}
	}
	tag := ref.Tag
	if ref.SemVer != "" {
		tag = "semver " + ref.SemVer
	}
	return &Snapshot{Origin: ref.String(), Root: dir, Path: folder, Ref: tag, Revision: d}, d, nil
}

// extract fetches the manifest and its layers, each checked against its
// digest, and writes the files into dir through a temporary folder, so
// that dir exists only complete.
func (f *OCIFetcher) extract(ctx context.Context, repo *remote.Repository, ref OCIRef, desc ocispec.Descriptor, dir string) error {
	rc, err := repo.Fetch(ctx, desc)
	if err != nil {
		return registryError(ref, err)
	}
	data, err := content.ReadAll(rc, desc)
	rc.Close()
	if err != nil {
		return fmt.Errorf("%s: the manifest does not match its digest (%v); the registry or something on the way altered it", ref, err)
	}
	var manifest ocispec.Manifest
	if err := json.Unmarshal(data, &manifest); err != nil {
		return fmt.Errorf("%s: the manifest cannot be read: %v", ref, err)
	}
	if len(manifest.Layers) == 0 {
		return fmt.Errorf("%s is not an artifact of manifests: its manifest has no layer (an image index or a config-only artifact?)", ref)
	}
	var total int64
	for _, l := range manifest.Layers {
		if total += l.Size; l.Size < 0 || total > maxArtifactBytes {
			return fmt.Errorf("%s: the artifact's layers are more than %d MiB", ref, maxArtifactBytes>>20)
		}
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".extract-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	x := &extractor{root: tmp, seen: map[string]bool{}}
	for i, l := range manifest.Layers {
		blob, err := repo.Blobs().Fetch(ctx, l)
		if err != nil {
			return registryError(ref, err)
		}
		data, err := content.ReadAll(blob, l)
		blob.Close()
		if err != nil {
			return fmt.Errorf("%s: layer %d does not match its digest %s (%v); the registry or something on the way altered it, so nothing of it is used", ref, i, l.Digest, err)
		}
		if err := x.layer(l, data); err != nil {
			return fmt.Errorf("%s: layer %d: %w", ref, i, err)
		}
	}
	return os.Rename(tmp, dir)
}

// extractor writes an artifact's files under root: regular files and
// folders only, each name once, inside root, within the bounds.
type extractor struct {
	root  string
	seen  map[string]bool
	bytes int64
	files int
}

// layer writes one layer: a tarball (gzipped or not), or one file named by
// its title annotation.
func (x *extractor) layer(l ocispec.Descriptor, data []byte) error {
	switch {
	case strings.HasSuffix(l.MediaType, "tar+gzip") || strings.HasSuffix(l.MediaType, ".tar.gzip"):
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return fmt.Errorf("the layer is not gzip: %v", err)
		}
		return x.tarball(zr)
	case strings.HasSuffix(l.MediaType, ".tar") || strings.HasSuffix(l.MediaType, "+tar"):
		return x.tarball(bytes.NewReader(data))
	}
	title := l.Annotations[ocispec.AnnotationTitle]
	if title == "" {
		return fmt.Errorf("a layer of type %s without a title annotation is neither a tarball nor a named file", l.MediaType)
	}
	return x.file(title, bytes.NewReader(data), int64(len(data)))
}

func (x *extractor) tarball(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("the tarball cannot be read: %v", err)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if _, err := x.name(h.Name, true); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := x.file(h.Name, tr, h.Size); err != nil {
				return err
			}
		case tar.TypeXGlobalHeader:
		default:
			return fmt.Errorf("%s: only regular files and folders are read from an artifact (links and devices are refused)", h.Name)
		}
	}
}

// name checks an entry's name and returns where it goes on disk.
func (x *extractor) name(name string, dir bool) (string, error) {
	clean := strings.TrimPrefix(filepath.ToSlash(name), "./")
	if dir {
		clean = strings.TrimSuffix(clean, "/")
		if clean == "" || clean == "." {
			return x.root, nil
		}
	}
	if !fs.ValidPath(clean) || clean == "." || strings.Contains(clean, "\\") {
		return "", fmt.Errorf("%q is not a clean relative name inside the artifact", name)
	}
	if strings.Count(clean, "/") >= 64 {
		return "", fmt.Errorf("%s: folders nested more than 64 deep", clean)
	}
	if !dir {
		if x.seen[clean] {
			return "", fmt.Errorf("%s is in the artifact twice", clean)
		}
		x.seen[clean] = true
	}
	return filepath.Join(x.root, filepath.FromSlash(clean)), nil
}

// file writes one regular file of at most size bytes.
func (x *extractor) file(name string, r io.Reader, size int64) error {
	dst, err := x.name(name, false)
	if err != nil {
		return err
	}
	if x.files++; x.files > maxArtifactFiles {
		return fmt.Errorf("the artifact has more than %d files", maxArtifactFiles)
	}
	if x.bytes += size; size < 0 || x.bytes > maxExtractBytes {
		return fmt.Errorf("the artifact's files are more than %d MiB", maxExtractBytes>>20)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	n, err := io.Copy(out, io.LimitReader(r, size))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != size {
		err = fmt.Errorf("%s is shorter than its header says", name)
	}
	return err
}
