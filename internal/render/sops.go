package render

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/getsops/sops/v3"
	"github.com/getsops/sops/v3/aes"
	sopsage "github.com/getsops/sops/v3/age"
	"github.com/getsops/sops/v3/config"
	"github.com/getsops/sops/v3/keyservice"
	"github.com/getsops/sops/v3/logging"
	sopsjson "github.com/getsops/sops/v3/stores/json"
	sopsyaml "github.com/getsops/sops/v3/stores/yaml"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
)

func init() {
	// SOPS logs each decryption; the renderer's standard error is for its
	// failures only.
	logging.SetLevel(logrus.ErrorLevel)
}

// SOPSOptions say how files encrypted with SOPS are read. The keys reach
// the renderer child on its standard input, never in its environment or
// arguments, and nothing of them is returned.
type SOPSOptions struct {
	// AgeKeys are age identities, one AGE-SECRET-KEY-1… per line, as in an
	// age key file; lines starting with # are comments.
	AgeKeys string
	// Ciphertext reads encrypted files as they are, without decrypting, so
	// that two revisions can be compared without keys (gitk8s diff
	// --against-ref). Such a render is never applied.
	Ciphertext bool
}

// maxEncryptedBytes bounds one SOPS-encrypted file.
const maxEncryptedBytes = 4 << 20

// isSOPSFile reports whether data looks like a file SOPS encrypted: a
// sops block with a MAC and values in SOPS's format.
func isSOPSFile(data []byte) bool {
	return bytes.Contains(data, []byte("ENC[AES256_GCM,")) && bytes.Contains(data, []byte("sops")) && bytes.Contains(data, []byte("mac"))
}

// decryptSOPS returns the plaintext of a SOPS-encrypted manifest file. It
// decrypts with the given age keys only: a file whose only keys are in a
// cloud KMS, Vault or PGP fails, as no request may leave the renderer. The
// file's MAC is checked, so a value changed by hand (or a value left in
// the clear where the file says it encrypts) is refused.
func decryptSOPS(file string, data []byte, opts SOPSOptions) ([]byte, error) {
	bad := func(format string, args ...any) error {
		return &Error{Source: Source{File: file}, Err: fmt.Errorf(format, args...)}
	}
	if len(data) > maxEncryptedBytes {
		return nil, bad("the encrypted file is larger than %d MiB", maxEncryptedBytes>>20)
	}
	var store sops.Store
	if strings.EqualFold(path.Ext(file), ".json") {
		store = sopsjson.NewStore(&config.JSONStoreConfig{Indent: -1})
	} else {
		store = sopsyaml.NewStore(&config.YAMLStoreConfig{})
	}
	tree, err := store.LoadEncryptedFile(data)
	if err != nil {
		return nil, bad("the file looks encrypted with SOPS but cannot be read as such (%v); encrypt it again with sops --encrypt", err)
	}
	recipients := ageRecipients(tree.Metadata)
	if strings.TrimSpace(opts.AgeKeys) == "" {
		return nil, bad("the file is encrypted with SOPS%s and this sync has no age key to decrypt it; give one ($SOPS_AGE_KEY_FILE or $SOPS_AGE_KEY on the command line, source.decryption.secretRef in a daemon sync)", recipientList(recipients))
	}
	var identities sopsage.ParsedIdentities
	if err := identities.Import(opts.AgeKeys); err != nil {
		return nil, bad("the age keys given cannot be read: %v", sanitizeKeyError(err))
	}
	if len(recipients) == 0 {
		return nil, bad("the file is encrypted with SOPS for no age recipient (only %s); gitk8s decrypts with age keys: add an age recipient with sops updatekeys", keyTypes(tree.Metadata))
	}
	key, err := tree.Metadata.GetDataKeyWithKeyServices([]keyservice.KeyServiceClient{ageKeyService{identities: identities}}, nil)
	if err != nil {
		return nil, bad("none of the age keys given decrypts the file%s; give the key of one of its recipients", recipientList(recipients))
	}
	cipher := aes.NewCipher()
	mac, err := tree.Decrypt(key, cipher)
	if err != nil {
		// sops's own message quotes the value it could not decrypt, which
		// may be one written in the clear: it is left out.
		return nil, bad("a value cannot be decrypted: the file was changed by hand after it was encrypted, or half of it is in the clear; edit it with sops and commit that")
	}
	want, err := cipher.Decrypt(tree.Metadata.MessageAuthenticationCode, key, tree.Metadata.LastModified.Format(time.RFC3339))
	if err != nil || want != mac {
		return nil, bad("the file's MAC does not match its values: it was changed after it was encrypted (by hand, or a value left in the clear); edit it with sops and commit that")
	}
	plain, err := store.EmitPlainFile(tree.Branches)
	if err != nil {
		return nil, bad("the decrypted file cannot be written out: %v", err)
	}
	return plain, nil
}

// ageRecipients are the age recipients of every key group.
func ageRecipients(m sops.Metadata) []string {
	var out []string
	for _, group := range m.KeyGroups {
		for _, k := range group {
			if a, ok := k.(*sopsage.MasterKey); ok {
				out = append(out, a.Recipient)
			}
		}
	}
	return out
}

// keyTypes names the kinds of key a file is encrypted for.
func keyTypes(m sops.Metadata) string {
	seen := map[string]bool{}
	var out []string
	for _, group := range m.KeyGroups {
		for _, k := range group {
			if t := k.TypeToIdentifier(); !seen[t] {
				seen[t] = true
				out = append(out, t)
			}
		}
	}
	if len(out) == 0 {
		return "no key at all"
	}
	return strings.Join(out, ", ")
}

func recipientList(recipients []string) string {
	if len(recipients) == 0 {
		return ""
	}
	return " for " + strings.Join(recipients, ", ")
}

// sanitizeKeyError keeps an error about keys from quoting them.
func sanitizeKeyError(err error) string {
	msg := err.Error()
	if strings.Contains(msg, "AGE-SECRET-KEY-") {
		return "an identity is malformed"
	}
	return msg
}

// ageKeyService is a SOPS key service that decrypts data keys with age
// identities held in memory, and nothing else: no cloud KMS, Vault, PGP
// agent or network is ever asked.
type ageKeyService struct {
	identities sopsage.ParsedIdentities
}

// Encrypt is never needed to decrypt.
func (ageKeyService) Encrypt(context.Context, *keyservice.EncryptRequest, ...grpc.CallOption) (*keyservice.EncryptResponse, error) {
	return nil, errors.New("gitk8s does not encrypt")
}

// Decrypt decrypts a data key encrypted for an age recipient.
func (s ageKeyService) Decrypt(_ context.Context, req *keyservice.DecryptRequest, _ ...grpc.CallOption) (*keyservice.DecryptResponse, error) {
	k := req.GetKey().GetAgeKey()
	if k == nil {
		return nil, errors.New("not an age key")
	}
	mk := &sopsage.MasterKey{Recipient: k.GetRecipient(), EncryptedKey: string(req.GetCiphertext())}
	s.identities.ApplyToMasterKey(mk)
	plain, err := mk.Decrypt()
	if err != nil {
		return nil, err
	}
	return &keyservice.DecryptResponse{Plaintext: plain}, nil
}
