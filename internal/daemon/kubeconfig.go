package daemon

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/gitk8s/gitk8s/internal/cluster"
)

// secretTarget is a cluster reached with a kubeconfig from a Secret, kept
// while the kubeconfig does not change so that its discovery cache and
// drift watches live on.
type secretTarget struct {
	sum    [sha256.Size]byte
	target *cluster.Target
}

// target returns the Target of a configured cluster. A cluster whose
// kubeconfig is in a Secret is built from the Secret as it is now (read
// through the cache), and built again when the Secret changes.
func (d *Daemon) target(ctx context.Context, c ClusterConfig) (*cluster.Target, error) {
	ref := c.Kubeconfig.SecretRef
	if ref == nil {
		return d.targets[c.Name], nil
	}
	data, key, err := d.secretKey(ctx, ref, "value", "kubeconfig")
	if err != nil {
		return nil, fmt.Errorf("cluster %s: kubeconfig: %w", c.Name, err)
	}
	sum := sha256.Sum256(data)
	d.secretTargetsMu.Lock()
	cached, ok := d.secretTargets[c.Name]
	d.secretTargetsMu.Unlock()
	if ok && cached.sum == sum {
		return cached.target, nil
	}
	ns := ref.Namespace
	if ns == "" {
		ns = HomeNamespace
	}
	where := fmt.Sprintf("cluster %s: kubeconfig in Secret %s/%s key %s", c.Name, ns, ref.Name, key)
	t, err := targetFromKubeconfig(c, data, d.clusterOptions)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	d.secretTargetsMu.Lock()
	defer d.secretTargetsMu.Unlock()
	if cached, ok := d.secretTargets[c.Name]; ok && cached.sum == sum {
		// Another sync built it meanwhile: share one, so that drift
		// watches are not started again for a new Target.
		return cached.target, nil
	}
	d.secretTargets[c.Name] = secretTarget{sum: sum, target: t}
	return t, nil
}

// targetFromKubeconfig builds a Target from kubeconfig content after
// refusing what could run a command or read a file in the daemon.
func targetFromKubeconfig(c ClusterConfig, data []byte, opts cluster.Options) (*cluster.Target, error) {
	raw, err := clientcmd.Load(data)
	if err != nil {
		// The parser's message may quote the content; say only that it
		// is not a kubeconfig.
		return nil, errors.New("not a valid kubeconfig")
	}
	if err := refuseLocalAccess(raw); err != nil {
		return nil, err
	}
	name := c.Kubeconfig.Context
	if name == "" {
		name = raw.CurrentContext
	}
	if _, ok := raw.Contexts[name]; !ok {
		return nil, fmt.Errorf("no context %q (contexts: %v)", name, sortedKeys(raw.Contexts))
	}
	loader := clientcmd.NewNonInteractiveClientConfig(*raw, name, &clientcmd.ConfigOverrides{}, nil)
	rc, err := loader.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("context %s: %w", name, err)
	}
	ns, _, err := loader.Namespace()
	if err != nil {
		return nil, fmt.Errorf("context %s: %w", name, err)
	}
	t, err := cluster.New(c.Name, ns, rc, opts)
	if err != nil {
		return nil, err
	}
	t.Labels = c.Labels
	return t, nil
}

// refuseLocalAccess refuses a kubeconfig that would make the daemon run a
// command (exec plugins, auth providers, which may run one to refresh a
// token) or read one of its own files (tokenFile, certificate, key and CA
// paths): whoever can write the Secret could otherwise run code in the
// daemon or make it send its files to a server of their choosing. Inline
// data is fine. Every entry is checked, not only the one used.
func refuseLocalAccess(raw *clientcmdapi.Config) error {
	var errs []error
	for _, name := range sortedKeys(raw.AuthInfos) {
		u := raw.AuthInfos[name]
		if u == nil {
			continue
		}
		if u.Exec != nil {
			errs = append(errs, fmt.Errorf("user %q has an exec plugin: a kubeconfig from a Secret may not run commands in the daemon", name))
		}
		if u.AuthProvider != nil {
			errs = append(errs, fmt.Errorf("user %q has an auth provider (%s): a kubeconfig from a Secret may not run commands in the daemon", name, u.AuthProvider.Name))
		}
		for _, f := range []struct{ field, path, inline string }{
			{"tokenFile", u.TokenFile, "token"},
			{"client-certificate", u.ClientCertificate, "client-certificate-data"},
			{"client-key", u.ClientKey, "client-key-data"},
		} {
			if f.path != "" {
				errs = append(errs, fmt.Errorf("user %q has %s, a file path: a kubeconfig from a Secret may not read files in the daemon; inline it (%s)", name, f.field, f.inline))
			}
		}
	}
	for _, name := range sortedKeys(raw.Clusters) {
		c := raw.Clusters[name]
		if c != nil && c.CertificateAuthority != "" {
			errs = append(errs, fmt.Errorf("cluster entry %q has certificate-authority, a file path: a kubeconfig from a Secret may not read files in the daemon; inline it (certificate-authority-data)", name))
		}
	}
	return errors.Join(errs...)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
