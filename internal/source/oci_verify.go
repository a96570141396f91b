package source

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"
)

// Cosign's signatures, as cosign sign --key stores them: a manifest tagged
// sha256-<digest of the signed manifest>.sig in the same repository, each
// layer a "simple signing" payload that names the signed digest, with the
// payload's signature in an annotation.
const (
	cosignPayloadMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	cosignSignatureKey     = "dev.cosignproject.cosign/signature"
	maxCosignPayloadBytes  = 1 << 20
)

// ParsePublicKeys reads PEM public keys (ECDSA, RSA or Ed25519, as cosign
// generate-key-pair writes them); data may hold several.
func ParsePublicKeys(data []byte) ([]crypto.PublicKey, error) {
	var keys []crypto.PublicKey
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "PUBLIC KEY" {
			continue
		}
		key, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("a public key cannot be read: %v", err)
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM public key (-----BEGIN PUBLIC KEY-----) found")
	}
	return keys, nil
}

// verifyPayload reports whether sig is a signature of payload by key.
func verifyPayload(key crypto.PublicKey, payload, sig []byte) bool {
	sum := sha256.Sum256(payload)
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		return ecdsa.VerifyASN1(k, sum[:], sig)
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, sum[:], sig) == nil || rsa.VerifyPSS(k, crypto.SHA256, sum[:], sig, nil) == nil
	case ed25519.PublicKey:
		return ed25519.Verify(k, payload, sig)
	}
	return false
}

// verifySignature checks that the manifest desc of ref has a cosign
// signature by one of keys: an artifact without one, or with signatures
// by other keys only, or whose signed payload names another digest, is
// refused.
func verifySignature(ctx context.Context, repo *remote.Repository, ref OCIRef, desc ocispec.Descriptor, keys []crypto.PublicKey) error {
	sigTag := desc.Digest.Algorithm().String() + "-" + desc.Digest.Encoded() + ".sig"
	sigDesc, err := repo.Resolve(ctx, sigTag)
	if err != nil {
		if errors.Is(registryError(ref, err), ErrRefNotFound) {
			return fmt.Errorf("%s@%s is not signed (no cosign signature %s in the repository), and this sync requires a signature by its keys; sign it with cosign sign --key", ref, desc.Digest, sigTag)
		}
		return registryError(ref, err)
	}
	if sigDesc.Size > maxManifestBytes {
		return fmt.Errorf("%s: the signature manifest is larger than %d MiB", ref, maxManifestBytes>>20)
	}
	rc, err := repo.Fetch(ctx, sigDesc)
	if err != nil {
		return registryError(ref, err)
	}
	data, err := content.ReadAll(rc, sigDesc)
	rc.Close()
	if err != nil {
		return fmt.Errorf("%s: the signature manifest does not match its digest: %v", ref, err)
	}
	var manifest ocispec.Manifest
	if err := json.Unmarshal(data, &manifest); err != nil {
		return fmt.Errorf("%s: the signature manifest cannot be read: %v", ref, err)
	}
	for _, l := range manifest.Layers {
		if l.MediaType != cosignPayloadMediaType || l.Size > maxCosignPayloadBytes {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(l.Annotations[cosignSignatureKey])
		if err != nil || len(sig) == 0 {
			continue
		}
		blob, err := repo.Blobs().Fetch(ctx, l)
		if err != nil {
			return registryError(ref, err)
		}
		payload, err := content.ReadAll(blob, l)
		blob.Close()
		if err != nil {
			continue
		}
		var signed struct {
			Critical struct {
				Image struct {
					Digest string `json:"docker-manifest-digest"`
				} `json:"image"`
				Type string `json:"type"`
			} `json:"critical"`
		}
		if json.Unmarshal(payload, &signed) != nil || signed.Critical.Image.Digest != desc.Digest.String() {
			continue
		}
		for _, key := range keys {
			if verifyPayload(key, payload, sig) {
				return nil
			}
		}
	}
	return fmt.Errorf("%s@%s has no valid cosign signature by the sync's keys (signatures by other keys, or for another digest, do not count)", ref, desc.Digest)
}
