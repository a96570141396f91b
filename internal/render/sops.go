package render

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/getsops/sops/v3"
	"github.com/getsops/sops/v3/aes"
	sopsage "github.com/getsops/sops/v3/age"
	"github.com/getsops/sops/v3/config"
	"github.com/getsops/sops/v3/keyservice"
	"github.com/getsops/sops/v3/logging"
	sopsdotenv "github.com/getsops/sops/v3/stores/dotenv"
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
func decryptSOPS(file string, data []byte, opts SOPSOptions) (plain []byte, decrypted []string, err error) {
	fail := func(format string, args ...any) ([]byte, []string, error) {
		return nil, nil, &Error{Source: Source{File: file}, Err: fmt.Errorf(format, args...)}
	}
	if len(data) > maxEncryptedBytes {
		return fail("the encrypted file is larger than %d MiB", maxEncryptedBytes>>20)
	}
	var store sops.Store
	switch strings.ToLower(path.Ext(file)) {
	case ".json":
		store = sopsjson.NewStore(&config.JSONStoreConfig{Indent: -1})
	case ".env":
		store = sopsdotenv.NewStore(&config.DotenvStoreConfig{})
	default:
		store = sopsyaml.NewStore(&config.YAMLStoreConfig{})
	}
	tree, err := store.LoadEncryptedFile(data)
	if err != nil {
		return fail("the file looks encrypted with SOPS but cannot be read as such (%v); encrypt it again with sops --encrypt", err)
	}
	recipients := ageRecipients(tree.Metadata)
	if strings.TrimSpace(opts.AgeKeys) == "" {
		return fail("the file is encrypted with SOPS%s and this sync has no age key to decrypt it; give one ($SOPS_AGE_KEY_FILE or $SOPS_AGE_KEY on the command line, source.decryption.secretRef in a daemon sync)", recipientList(recipients))
	}
	var identities sopsage.ParsedIdentities
	if err := identities.Import(opts.AgeKeys); err != nil {
		return fail("the age keys given cannot be read: %v", sanitizeKeyError(err))
	}
	if len(recipients) == 0 {
		return fail("the file is encrypted with SOPS for no age recipient (only %s); gitk8s decrypts with age keys: add an age recipient with sops updatekeys", keyTypes(tree.Metadata))
	}
	key, err := tree.Metadata.GetDataKeyWithKeyServices([]keyservice.KeyServiceClient{ageKeyService{identities: identities}}, nil)
	if err != nil {
		return fail("none of the age keys given decrypts the file%s; give the key of one of its recipients", recipientList(recipients))
	}
	// The values that are encrypted, by their place in the tree, to know
	// afterwards which plain values came from decryption.
	encrypted := map[string]bool{}
	walkLeaves(tree.Branches, "", func(at string, v any) {
		if s, ok := v.(string); ok && strings.HasPrefix(s, "ENC[") {
			encrypted[at] = true
		}
	})
	cipher := aes.NewCipher()
	mac, err := tree.Decrypt(key, cipher)
	if err != nil {
		// sops's own message quotes the value it could not decrypt, which
		// may be one written in the clear: it is left out.
		return fail("a value cannot be decrypted: the file was changed by hand after it was encrypted, or half of it is in the clear; edit it with sops and commit that")
	}
	want, err := cipher.Decrypt(tree.Metadata.MessageAuthenticationCode, key, tree.Metadata.LastModified.Format(time.RFC3339))
	if err != nil || want != mac {
		return fail("the file's MAC does not match its values: it was changed after it was encrypted (by hand, or a value left in the clear); edit it with sops and commit that")
	}
	walkLeaves(tree.Branches, "", func(at string, v any) {
		if encrypted[at] {
			if text := fmt.Sprint(v); text != "" {
				decrypted = append(decrypted, text)
			}
		}
	})
	plain, err = store.EmitPlainFile(tree.Branches)
	if err != nil {
		return fail("the decrypted file cannot be written out: %v", err)
	}
	return plain, decrypted, nil
}

// walkLeaves calls fn with every scalar of a SOPS tree and its place.
func walkLeaves(v any, at string, fn func(at string, v any)) {
	switch v := v.(type) {
	case sops.TreeBranches:
		for i, b := range v {
			walkLeaves(b, fmt.Sprintf("%s/%d", at, i), fn)
		}
	case sops.TreeBranch:
		for i, item := range v {
			walkLeaves(item.Value, fmt.Sprintf("%s/%d", at, i), fn)
		}
	case []any:
		for i, e := range v {
			walkLeaves(e, fmt.Sprintf("%s/%d", at, i), fn)
		}
	default:
		fn(at, v)
	}
}

// sopsReader decrypts the SOPS-encrypted files that kustomize and Helm
// read (resources, generator files and env files, values files), in
// memory, and remembers every value it decrypted, so that a render can
// refuse an object other than a Secret that holds one.
type sopsReader struct {
	opts SOPSOptions
	mu   sync.Mutex
	seen []string
}

// read returns the plaintext of data, read from file, when SOPS encrypted
// it; other data as it is.
func (r *sopsReader) read(file string, data []byte) ([]byte, error) {
	if r == nil || r.opts.Ciphertext || !isSOPSFile(data) {
		return data, nil
	}
	plain, values, err := decryptSOPS(file, data, r.opts)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.seen = append(r.seen, values...)
	r.mu.Unlock()
	return plain, nil
}

// minLeakCheck is the shortest decrypted value looked for in objects
// other than Secrets; shorter ones would match by chance.
const minLeakCheck = 4

// checkHeld fails when an object other than a Secret holds a value this
// reader decrypted: the masker masks Secrets, so such a value would reach
// diffs and logs in the clear.
func (r *sopsReader) checkHeld(file string, objs []*Object) error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	values := append([]string(nil), r.seen...)
	r.mu.Unlock()
	if len(values) == 0 {
		return nil
	}
	for _, o := range objs {
		if o.Object.GetKind() == "Secret" && o.Object.GroupVersionKind().Group == "" {
			o.Encrypted = true
			continue
		}
		data, err := o.Object.MarshalJSON()
		if err != nil {
			continue
		}
		for _, v := range values {
			if len(v) >= minLeakCheck && bytes.Contains(data, []byte(v)) {
				return &Error{Source: Source{File: file}, Object: o.Ref(), Err: errors.New("holds a value decrypted from a SOPS-encrypted file; gitk8s lets only Secrets hold decrypted values, so that they stay masked in every output")}
			}
		}
	}
	return nil
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
