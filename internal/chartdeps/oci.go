package chartdeps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/gitk8s/gitk8s/internal/source"
)

// ChartLayerMediaType is the layer of a Helm chart pushed to an OCI
// registry (helm push): the chart archive.
const ChartLayerMediaType = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"

// maxManifestBytes bounds an OCI manifest.
const maxManifestBytes = 4 << 20

// fetchOCI fetches d from an OCI registry as helm pull oci://… does: the
// tag is the version (a "+" written "_"), the chart is the manifest's
// chart layer, verified against its digest. A layer the cache holds is
// not fetched again, so an unchanged dependency costs the manifest's
// HEAD request.
func (f *Fetcher) fetchOCI(ctx context.Context, r Repository, d Dependency) (string, error) {
	ref := strings.TrimSuffix(strings.TrimPrefix(d.Repository, "oci://"), "/") + "/" + d.Name
	repository, err := remote.NewRepository(ref)
	if err != nil {
		return "", fmt.Errorf("%s is not an OCI repository: %v", source.Redact(d.Repository), err)
	}
	host := repository.Reference.Registry
	repository.PlainHTTP = source.IsLoopbackHost(host)
	client, err := f.httpClient(r)
	if err != nil {
		return "", err
	}
	credential, err := f.ociCredential(r, host)
	if err != nil {
		return "", err
	}
	repository.Client = &auth.Client{Client: client, Credential: credential, Cache: auth.NewCache()}
	tag := strings.ReplaceAll(d.Version, "+", "_")
	where := source.Redact(ref) + ":" + tag

	desc, err := repository.Resolve(ctx, tag)
	if err != nil {
		return "", ociError(where, err)
	}
	if desc.Size > maxManifestBytes {
		return "", fmt.Errorf("%s: the manifest is larger than %d MiB", where, maxManifestBytes>>20)
	}
	rc, err := repository.Fetch(ctx, desc)
	if err != nil {
		return "", ociError(where, err)
	}
	data, err := content.ReadAll(rc, desc)
	rc.Close()
	if err != nil {
		return "", fmt.Errorf("%s: the manifest does not match its digest: %v", where, err)
	}
	var manifest ocispec.Manifest
	if err := json.Unmarshal(data, &manifest); err != nil {
		return "", fmt.Errorf("%s: the manifest cannot be read: %v", where, err)
	}
	var layer *ocispec.Descriptor
	for i := range manifest.Layers {
		if manifest.Layers[i].MediaType == ChartLayerMediaType {
			layer = &manifest.Layers[i]
			break
		}
	}
	if layer == nil {
		return "", fmt.Errorf("%s is not a Helm chart: its manifest has no %s layer", where, ChartLayerMediaType)
	}
	if layer.Digest.Algorithm() != "sha256" || layer.Digest.Validate() != nil {
		return "", fmt.Errorf("%s: the chart layer's digest %q is not a SHA-256", where, layer.Digest)
	}
	if layer.Size > maxArchiveBytes {
		return "", fmt.Errorf("%s: the chart is larger than %d MiB", where, maxArchiveBytes>>20)
	}
	digest := layer.Digest.Encoded()
	defer f.locks.Lock(digest)()
	if file, ok := f.cached(digest, d); ok {
		return file, nil
	}
	blob, err := repository.Blobs().Fetch(ctx, *layer)
	if err != nil {
		return "", ociError(where, err)
	}
	defer blob.Close()
	archive, err := content.ReadAll(blob, *layer)
	if err != nil {
		return "", fmt.Errorf("%s: the chart layer does not match its digest %s (%v); the registry or something on the way altered it, so it is not used", where, layer.Digest, err)
	}
	return f.store(digest, d, archive)
}

// ociCredential is the credential of the registry host: the repository's
// own, else (when allowed) Docker's configuration's.
func (f *Fetcher) ociCredential(r Repository, host string) (auth.CredentialFunc, error) {
	if r.Auth.Username != "" || r.Auth.Password != "" {
		return auth.StaticCredential(host, auth.Credential{Username: r.Auth.Username, Password: r.Auth.Password}), nil
	}
	if !f.DockerConfig {
		return auth.StaticCredential(host, auth.EmptyCredential), nil
	}
	store, err := credentials.NewStoreFromDocker(credentials.StoreOptions{})
	if err != nil {
		return nil, fmt.Errorf("Docker's configuration cannot be read for the registry's credentials: %v", err)
	}
	return credentials.Credential(store), nil
}

// ociError says what a failed registry request means.
func ociError(where string, err error) error {
	var resp *errcode.ErrorResponse
	switch {
	case errors.Is(err, errdef.ErrNotFound):
		return fmt.Errorf("%s is not in the registry; run helm dependency update against it and commit %s", where, LockFile)
	case errors.As(err, &resp) && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden):
		return fmt.Errorf("%s: the registry refused the credentials (or needs some): %s; give them as for Git (the sync's repository secretRef, or Docker's configuration on the command line)", where, http.StatusText(resp.StatusCode))
	case errors.As(err, &resp) && resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%s is not in the registry; run helm dependency update against it and commit %s", where, LockFile)
	}
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, where, source.Redact(err.Error()))
}
