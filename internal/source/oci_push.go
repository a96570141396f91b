package source

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
)

// PushOCI makes an artifact of the folder dir in Flux's format (a config
// of FluxConfigMediaType and one gzipped tarball of the folder's regular
// files, .git left out), pushes it to ref's repository and tags it. The
// annotations (source, revision) join the manifest's. It returns the
// manifest's digest. The tarball is reproducible: names sorted, times and
// owners zeroed, so one folder always makes one digest.
func PushOCI(ctx context.Context, ref OCIRef, dir string, annotations map[string]string, opts OCIOptions) (string, error) {
	if ref.Tag == "" {
		return "", fmt.Errorf("%s: name a tag to push to (oci://REGISTRY/REPOSITORY:TAG)", ref)
	}
	layer, err := tarFolder(dir)
	if err != nil {
		return "", err
	}
	repo, err := repository(ref, opts)
	if err != nil {
		return "", fmt.Errorf("%s: %w", ref, err)
	}
	push := func(mediaType string, data []byte) (ocispec.Descriptor, error) {
		desc := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
		if exists, err := repo.Exists(ctx, desc); err == nil && exists {
			return desc, nil
		}
		if err := repo.Push(ctx, desc, bytes.NewReader(data)); err != nil {
			return desc, registryError(ref, err)
		}
		return desc, nil
	}
	config, err := push(FluxConfigMediaType, []byte("{}"))
	if err != nil {
		return "", err
	}
	content, err := push(FluxContentMediaType, layer)
	if err != nil {
		return "", err
	}
	ann := map[string]string{ocispec.AnnotationCreated: time.Unix(0, 0).UTC().Format(time.RFC3339)}
	for k, v := range annotations {
		ann[k] = v
	}
	manifest, err := oras.PackManifest(ctx, repo, oras.PackManifestVersion1_1, "", oras.PackManifestOptions{
		ConfigDescriptor: &config, Layers: []ocispec.Descriptor{content}, ManifestAnnotations: ann})
	if err != nil {
		return "", registryError(ref, err)
	}
	if err := repo.Tag(ctx, manifest, ref.Tag); err != nil {
		return "", registryError(ref, err)
	}
	return manifest.Digest.String(), nil
}

// tarFolder is the gzipped tarball of dir's regular files and folders.
func tarFolder(dir string) ([]byte, error) {
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if rel == "." {
			return nil
		}
		if !d.IsDir() && !d.Type().IsRegular() {
			return fmt.Errorf("%s is not a regular file; an artifact holds regular files only", rel)
		}
		names = append(names, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, name := range names {
		p := filepath.Join(dir, filepath.FromSlash(name))
		info, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		h := &tar.Header{Name: name, Mode: 0o644, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if info.IsDir() {
			h.Name, h.Mode, h.Typeflag = strings.TrimSuffix(name, "/")+"/", 0o755, tar.TypeDir
			if err := tw.WriteHeader(h); err != nil {
				return nil, err
			}
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		h.Size = int64(len(data))
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
