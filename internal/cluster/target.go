package cluster

import (
	"fmt"
	"sort"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Target is one cluster gitk8s talks to.
type Target struct {
	// Name is the kubeconfig context, or the name given in configuration.
	Name string
	// Server is the API server's URL.
	Server string
	// Labels are the cluster's labels, for selectors and placements.
	Labels map[string]string
	// Namespace is where namespaced objects without a namespace go: the
	// context's namespace, or "default".
	Namespace string
	// Config is the REST configuration, rate limits included.
	Config *rest.Config
	// Dynamic reads and writes objects of any kind.
	Dynamic dynamic.Interface
	// Metadata lists objects' metadata only, for inventories.
	Metadata metadata.Interface
	// Discovery is cached for the life of the Target; Mapper reads it.
	Discovery discovery.CachedDiscoveryInterface
	// Mapper maps kinds to resources. Call Mapper.Reset after CRDs change.
	Mapper meta.ResettableRESTMapper
	// Impersonated is the user every request is made as (Impersonating),
	// empty for the credentials' own. Such a user, a team's
	// ServiceAccount, is expected to list in its namespaces only.
	Impersonated string
	// Original is the Target an impersonating one was made from, which
	// acts with the credentials' own identity; nil for that one itself.
	Original *Target
}

// Options say how to reach clusters.
type Options struct {
	// Kubeconfig is an explicit kubeconfig path; empty means $KUBECONFIG or
	// ~/.kube/config, as kubectl does.
	Kubeconfig string
	// QPS and Burst limit requests per cluster on the client side. A real
	// API server's default priority-and-fairness budget for one client is
	// comfortably above the defaults here.
	QPS   float32
	Burst int
	// Timeout bounds every single request.
	Timeout time.Duration
}

// DefaultOptions are the limits gitk8s uses unless told otherwise.
func DefaultOptions() Options {
	return Options{QPS: 500, Burst: 1000, Timeout: 30 * time.Second}
}

// FromKubeconfig makes a Target for one kubeconfig context; an empty
// context means the kubeconfig's current context.
func FromKubeconfig(opts Options, context string) (*Target, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = opts.Kubeconfig
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context})
	raw, err := loader.RawConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	name := context
	if name == "" {
		name = raw.CurrentContext
	}
	if _, ok := raw.Contexts[name]; !ok {
		return nil, fmt.Errorf("kubeconfig has no context %q (contexts: %v); pick one with --context", name, contextNames(raw.Contexts))
	}
	cfg, err := loader.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("context %s: %w", name, err)
	}
	ns, _, err := loader.Namespace()
	if err != nil {
		return nil, fmt.Errorf("context %s: %w", name, err)
	}
	return New(name, ns, cfg, opts)
}

// New makes a Target from a REST configuration.
func New(name, namespace string, cfg *rest.Config, opts Options) (*Target, error) {
	cfg = rest.CopyConfig(cfg)
	if opts.QPS > 0 {
		cfg.QPS, cfg.Burst = opts.QPS, opts.Burst
	}
	if opts.Timeout > 0 {
		cfg.Timeout = opts.Timeout
	}
	cfg.UserAgent = "gitk8s"
	if namespace == "" {
		namespace = "default"
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("context %s: %w", name, err)
	}
	md, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("context %s: %w", name, err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("context %s: %w", name, err)
	}
	cached := memory.NewMemCacheClient(dc)
	return &Target{
		Name:      name,
		Server:    cfg.Host,
		Namespace: namespace,
		Config:    cfg,
		Dynamic:   dyn,
		Metadata:  md,
		Discovery: cached,
		Mapper:    restmapper.NewDeferredDiscoveryRESTMapper(cached),
	}, nil
}

func contextNames(m map[string]*clientcmdapi.Context) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Impersonating is a Target that makes every request as user (and the
// groups Kubernetes gives that user, which the API server adds), so that
// the API server's RBAC for that user decides what it may do. It shares
// the discovery cache and mapper of t: what a cluster serves does not
// depend on who asks.
func (t *Target) Impersonating(user string) (*Target, error) {
	cfg := rest.CopyConfig(t.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster %s as %s: %w", t.Name, user, err)
	}
	md, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster %s as %s: %w", t.Name, user, err)
	}
	out := *t
	out.Config, out.Dynamic, out.Metadata, out.Impersonated, out.Original = cfg, dyn, md, user, t
	return &out, nil
}
