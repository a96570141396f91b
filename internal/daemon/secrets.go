package daemon

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/go-git/go-git/v5/plumbing/transport"

	"github.com/gitk8s/gitk8s/internal/source"
)

// SecretTTL is how long a Secret read from the home cluster is used before
// it is read again: a rotated Secret takes effect within it, without a
// restart.
var SecretTTL = 10 * time.Second

// secretCache reads Secrets from the home cluster, keeping each one for
// SecretTTL so that syncs on short intervals and webhook requests do not
// each cost a request. Failed reads are not kept: the next use asks again.
type secretCache struct {
	client corev1client.SecretsGetter

	mu      sync.Mutex
	entries map[string]cachedSecret
}

type cachedSecret struct {
	data map[string][]byte
	read time.Time
}

func newSecretCache(client corev1client.SecretsGetter) *secretCache {
	return &secretCache{client: client, entries: map[string]cachedSecret{}}
}

// get returns a Secret's data. Its errors name the Secret and never hold
// a value.
func (c *secretCache) get(ctx context.Context, namespace, name string) (map[string][]byte, error) {
	key := namespace + "/" + name
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if ok && time.Since(e.read) < SecretTTL {
		return e.data, nil
	}
	// Read outside the lock: one slow read must not hold up every other
	// Secret. Two syncs missing the same entry at once both read it.
	s, err := c.client.Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("Secret %s: %w", key, err)
	}
	c.mu.Lock()
	c.entries[key] = cachedSecret{data: s.Data, read: time.Now()}
	c.mu.Unlock()
	return s.Data, nil
}

// secretOrigin says where a set of keys came from, for errors: a Secret
// (namespace/name) or a directory.
type secretOrigin string

// gitAuth reads the credentials of a sync's remote, if it has any.
func (d *Daemon) gitAuth(ctx context.Context, s SyncConfig) (source.Auth, error) {
	a := s.Source.Auth
	if a == nil {
		return source.Auth{}, nil
	}
	data, origin, err := d.authKeys(ctx, a)
	if err != nil {
		return source.Auth{}, fmt.Errorf("source.auth: %w", err)
	}
	return authFromKeys(s.Source.URL, origin, data)
}

// readAuth reads HTTPS credentials (username, password or token, ca.crt)
// from a Secret or a mounted Secret, as for a Git remote; nil reads none.
func (d *Daemon) readAuth(ctx context.Context, a *SourceAuth) (source.Auth, error) {
	if a == nil {
		return source.Auth{}, nil
	}
	data, _, err := d.authKeys(ctx, a)
	if err != nil {
		return source.Auth{}, err
	}
	line := func(key string) string { return strings.TrimSpace(string(data[key])) }
	auth := source.Auth{Username: line("username"), Password: line("password"), CABundle: data["ca.crt"]}
	for _, key := range []string{"bearerToken", "token"} {
		if auth.Password == "" {
			auth.Password = line(key)
		}
	}
	return auth, nil
}

// ociAuth reads the credentials of a sync's registry: username and
// password (or token) keys, or a .dockerconfigjson (a Secret of type
// kubernetes.io/dockerconfigjson) with an entry for the registry's host.
func (d *Daemon) ociAuth(ctx context.Context, s SyncConfig) (source.Auth, error) {
	a := s.Source.Auth
	if a == nil {
		return source.Auth{}, nil
	}
	data, origin, err := d.authKeys(ctx, a)
	if err != nil {
		return source.Auth{}, fmt.Errorf("source.auth: %w", err)
	}
	auth, err := d.readAuth(ctx, a)
	if err != nil {
		return source.Auth{}, fmt.Errorf("source.auth: %w", err)
	}
	if cfg, ok := data[".dockerconfigjson"]; ok && auth.Username == "" && auth.Password == "" {
		ref, err := source.ParseOCI(s.Source.URL, "", "")
		if err != nil {
			return source.Auth{}, err
		}
		host, _, _ := strings.Cut(ref.Repository, "/")
		var docker struct {
			Auths map[string]struct {
				Username string `json:"username"`
				Password string `json:"password"`
				Auth     string `json:"auth"`
			} `json:"auths"`
		}
		if err := json.Unmarshal(cfg, &docker); err != nil {
			return source.Auth{}, fmt.Errorf("source.auth: %s: .dockerconfigjson is not a Docker configuration", origin)
		}
		e, ok := docker.Auths[host]
		if !ok {
			e, ok = docker.Auths["https://"+host]
		}
		if !ok {
			return source.Auth{}, fmt.Errorf("source.auth: %s: .dockerconfigjson has no entry for %s", origin, host)
		}
		auth.Username, auth.Password = e.Username, e.Password
		if e.Auth != "" {
			if raw, err := base64.StdEncoding.DecodeString(e.Auth); err == nil {
				auth.Username, auth.Password, _ = strings.Cut(string(raw), ":")
			}
		}
	}
	return auth, nil
}

// verifyKeys reads the public keys of a sync's verify Secret: every key
// whose name ends in .pub.
func (d *Daemon) verifyKeys(ctx context.Context, v *VerifyConfig) ([]crypto.PublicKey, error) {
	data, origin, err := d.authKeys(ctx, &SourceAuth{SecretRef: v.SecretRef, SecretDir: v.SecretDir})
	if err != nil {
		return nil, fmt.Errorf("source.verify: %w", err)
	}
	var keys []crypto.PublicKey
	for name, value := range data {
		if !strings.HasSuffix(name, ".pub") {
			continue
		}
		k, err := source.ParsePublicKeys(value)
		if err != nil {
			return nil, fmt.Errorf("source.verify: %s key %s: %w", origin, name, err)
		}
		keys = append(keys, k...)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("source.verify: %s has no key ending in .pub (a PEM public key, as cosign generate-key-pair writes cosign.pub)", origin)
	}
	return keys, nil
}

// ageKeys reads the age identities of a sync's decryption Secret: every
// key whose name ends in .agekey, as Flux names them.
func (d *Daemon) ageKeys(ctx context.Context, dec *DecryptionConfig) (string, error) {
	data, origin, err := d.authKeys(ctx, &SourceAuth{SecretRef: dec.SecretRef, SecretDir: dec.SecretDir})
	if err != nil {
		return "", err
	}
	names := make([]string, 0, len(data))
	for k := range data {
		if strings.HasSuffix(k, ".agekey") {
			names = append(names, k)
		}
	}
	if len(names) == 0 {
		return "", fmt.Errorf("%s has no key ending in .agekey (an age identity, as age-keygen writes it)", origin)
	}
	sort.Strings(names)
	var keys strings.Builder
	for _, k := range names {
		keys.Write(data[k])
		keys.WriteString("\n")
	}
	return keys.String(), nil
}

// authKeys reads the keys of the Secret (or mounted Secret) a names.
func (d *Daemon) authKeys(ctx context.Context, a *SourceAuth) (map[string][]byte, secretOrigin, error) {
	var data map[string][]byte
	var origin secretOrigin
	if a.SecretRef != nil {
		ns := a.SecretRef.Namespace
		if ns == "" {
			ns = HomeNamespace
		}
		origin = secretOrigin("Secret " + ns + "/" + a.SecretRef.Name)
		var err error
		if data, err = d.secrets.get(ctx, ns, a.SecretRef.Name); err != nil {
			return nil, origin, err
		}
	} else {
		origin = secretOrigin("secretDir " + a.SecretDir)
		var err error
		if data, err = readSecretDir(a.SecretDir); err != nil {
			return nil, origin, err
		}
	}
	return data, origin, nil
}

// authFromKeys maps a Secret's keys, as Flux names them, to credentials.
// An SSH remote needs identity and known_hosts: without known_hosts every
// host would be refused anyway, and it is clearer to say so up front.
func authFromKeys(url string, origin secretOrigin, data map[string][]byte) (source.Auth, error) {
	line := func(key string) string { return strings.TrimSpace(string(data[key])) }
	auth := source.Auth{
		Username:         line("username"),
		Password:         line("password"),
		CABundle:         data["ca.crt"],
		SSHKey:           data["identity"],
		SSHKeyPassphrase: line("passphrase"),
		KnownHosts:       data["known_hosts"],
	}
	for _, key := range []string{"bearerToken", "token"} {
		if auth.Password == "" {
			auth.Password = line(key)
		}
	}
	ep, err := transport.NewEndpoint(url)
	if err != nil {
		return source.Auth{}, fmt.Errorf("git URL %s: %w", source.Redact(url), err)
	}
	if ep.Protocol == "ssh" {
		for _, key := range []string{"identity", "known_hosts"} {
			if len(data[key]) == 0 {
				return source.Auth{}, fmt.Errorf("source.auth: %s has no key %s, which the SSH remote %s needs", origin, key, source.Redact(url))
			}
		}
	}
	return auth, nil
}

// readSecretDir reads a mounted Secret: one file per key. The kubelet's
// own entries ("..data" and the timestamped directory it points at) are
// skipped; the key files are symbolic links into them, which are followed.
func readSecretDir(dir string) (map[string][]byte, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("secretDir: %w", err)
	}
	data := map[string][]byte{}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "..") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		info, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("secretDir: %w", err)
		}
		if !info.Mode().IsRegular() {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("secretDir: %w", err)
		}
		data[e.Name()] = b
	}
	return data, nil
}

// secretKey reads one key of a referenced Secret; the first of keys that
// is present wins. The error names the Secret and the keys tried.
func (d *Daemon) secretKey(ctx context.Context, ref *SecretKeyRef, keys ...string) ([]byte, string, error) {
	ns := ref.Namespace
	if ns == "" {
		ns = HomeNamespace
	}
	if ref.Key != "" {
		keys = []string{ref.Key}
	}
	data, err := d.secrets.get(ctx, ns, ref.Name)
	if err != nil {
		return nil, "", err
	}
	for _, k := range keys {
		v, ok := data[k]
		switch {
		case ok && len(v) == 0:
			return nil, "", fmt.Errorf("Secret %s/%s: key %s is empty", ns, ref.Name, k)
		case ok:
			return v, k, nil
		}
	}
	return nil, "", fmt.Errorf("Secret %s/%s has no key %s", ns, ref.Name, strings.Join(keys, " or "))
}
