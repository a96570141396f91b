// Package daemon keeps clusters converged on Git: per sync and interval (or
// when a push webhook or drift triggers it) it asks the remote for the
// revision, and only when it moved renders, checks policies, plans, applies,
// prunes and waits for health — the same pipeline the CLI drives. It records
// a status per sync, serves webhooks, health, metrics, a status API and
// page, watches managed objects for drift, and elects a leader among
// replicas.
//
// It does not print; the CLI's daemon command runs it.
package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"time"

	yamlv3 "go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/gitk8s/gitk8s/internal/chartdeps"
	"github.com/gitk8s/gitk8s/internal/notify"
	"github.com/gitk8s/gitk8s/internal/policy"
	"github.com/gitk8s/gitk8s/internal/render"
	"github.com/gitk8s/gitk8s/internal/source"
)

// Config is the daemon's configuration file (docs/configuration.md).
type Config struct {
	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Clusters   []ClusterConfig `json:"clusters"`
	Syncs      []SyncConfig    `json:"syncs"`
	// Concurrency bounds how many syncs run at once (default 4).
	Concurrency int `json:"concurrency,omitempty"`
	// Webhooks are the HTTP listeners: push webhooks, health, metrics,
	// the status API and page.
	Webhooks WebhooksConfig `json:"webhooks,omitempty"`
	// LeaderElection lets several daemons run with one reconciling.
	LeaderElection LeaderElectionConfig `json:"leaderElection,omitempty"`
	// SyncResources serves Sync resources beside the syncs of this file.
	SyncResources *SyncResourcesConfig `json:"syncResources,omitempty"`
}

// DefaultListen is the address of the daemon's HTTP API when
// webhooks.listen is not set.
const DefaultListen = ":9292"

// WebhooksConfig are the daemon's HTTP listeners and webhook receivers.
type WebhooksConfig struct {
	// Listen is the address of the daemon's HTTP API (default
	// DefaultListen): health, readiness, metrics, the status API and page,
	// and /hooks/ too unless HooksListen is set.
	Listen string `json:"listen,omitempty"`
	// HooksListen, when set, is a second address, which serves /hooks/
	// and nothing else; Listen then serves everything but /hooks/. So the
	// webhooks alone can be exposed to Git providers while the status,
	// which anyone who reaches it may read, stays internal.
	HooksListen string           `json:"hooksListen,omitempty"`
	Receivers   []ReceiverConfig `json:"receivers,omitempty"`
	// TrustedProxies are the addresses (CIDRs) of reverse proxies in front
	// of the webhooks, such as an Ingress controller: from them,
	// X-Forwarded-For names the client whose budget of unverified requests
	// is used. Without them, every client behind a proxy shares one.
	TrustedProxies []string `json:"trustedProxies,omitempty"`
}

// trustedProxies are the parsed TrustedProxies; validate refuses bad ones.
func (w WebhooksConfig) trustedProxies() []netip.Prefix {
	var out []netip.Prefix
	for _, c := range w.TrustedProxies {
		if p, err := netip.ParsePrefix(c); err == nil {
			out = append(out, p.Masked())
		} else if a, err := netip.ParseAddr(c); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out
}

// ListenAddress is Listen, or DefaultListen when it is not set.
func (w WebhooksConfig) ListenAddress() string {
	if w.Listen == "" {
		return DefaultListen
	}
	return w.Listen
}

// ReceiverConfig is one webhook receiver, served at /hooks/<name>.
// Exactly one of SecretFile and SecretRef holds its shared secret.
type ReceiverConfig struct {
	Name     string `json:"name"`
	Provider string `json:"provider"`
	// SecretFile holds the shared secret (a mounted Secret key).
	SecretFile string `json:"secretFile,omitempty"`
	// SecretRef is a key of a Secret in the home cluster (key default
	// "token").
	SecretRef *SecretKeyRef `json:"secretRef,omitempty"`
	// PerMinute bounds the receiver's signed requests (default 60).
	PerMinute int `json:"perMinute,omitempty"`
	// InvalidBurst and InvalidPerMinute bound, per client address, the
	// requests that are not verified (defaults 20 and 30).
	InvalidBurst     int `json:"invalidBurst,omitempty"`
	InvalidPerMinute int `json:"invalidPerMinute,omitempty"`
	// BodyTimeout bounds the reading of a request's body (default 10s).
	BodyTimeout Duration `json:"bodyTimeout,omitzero"`
}

// SecretRef names a Secret in the home cluster (HomeCluster); the
// namespace defaults to HomeNamespace.
type SecretRef struct {
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// SecretKeyRef names one key of a Secret in the home cluster; the
// namespace defaults to HomeNamespace, the key to what the referring field
// says.
type SecretKeyRef struct {
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Key       string `json:"key,omitempty"`
}

// ClusterConfig names a cluster and how to reach it.
type ClusterConfig struct {
	Name       string            `json:"name"`
	Kubeconfig KubeconfigRef     `json:"kubeconfig"`
	Labels     map[string]string `json:"labels,omitempty"`
}

// KubeconfigRef is a kubeconfig context (in the default or a given file,
// or in a Secret) or the in-cluster service account.
type KubeconfigRef struct {
	Context   string `json:"context,omitempty"`
	Path      string `json:"path,omitempty"`
	InCluster bool   `json:"inCluster,omitempty"`
	// SecretRef is a kubeconfig in a Secret of the home cluster (key
	// default "value", as Cluster API writes it, else "kubeconfig"). It is
	// read again when its cached copy is older than SecretTTL, and refused
	// when it could run a command or read a file in the daemon.
	SecretRef *SecretKeyRef `json:"secretRef,omitempty"`
}

// SyncConfig is one source kept applied to some clusters: a sync of the
// configuration file, or a Sync resource (its name then namespace.name).
type SyncConfig struct {
	Name string `json:"name"`
	SyncSpec
	// Resource is the Sync resource this sync comes from; nil for a sync
	// of the configuration file.
	Resource *ResourceRef `json:"-"`
}

// SyncSpec is what a sync keeps applied and how: a sync of the
// configuration file without its name, and the spec of a Sync resource.
type SyncSpec struct {
	Source          SourceConfig          `json:"source"`
	Clusters        []string              `json:"clusters,omitempty"`
	ClusterSelector *metav1.LabelSelector `json:"clusterSelector,omitempty"`
	// Namespace is the default for namespaced objects without one.
	Namespace string `json:"namespace,omitempty"`
	// Inventory names the ApplySet parent Secret (default gitk8s-<name>
	// in gitk8s-system).
	Inventory InventoryConfig `json:"inventory,omitzero"`
	// Prune deletes objects of the inventory that are no longer rendered.
	Prune bool `json:"prune,omitempty"`
	// AllowDestructivePrune lets a prune delete Namespaces, CRDs,
	// PersistentVolumes and claims, or more than half of the inventory.
	AllowDestructivePrune bool `json:"allowDestructivePrune,omitempty"`
	// PruneTimeout bounds the wait for each pruned object to be gone
	// (default 1m).
	PruneTimeout Duration `json:"pruneTimeout,omitzero"`
	// ForceConflicts takes over fields other field managers own, each
	// reported (default true); false makes them errors.
	ForceConflicts *bool `json:"forceConflicts,omitempty"`
	// RequestConcurrency bounds requests in flight per cluster (default 16).
	RequestConcurrency int `json:"requestConcurrency,omitempty"`
	// ClusterTimeout is the deadline of each cluster's part of a
	// reconcile (default 10m).
	ClusterTimeout Duration `json:"clusterTimeout,omitzero"`
	Wait           struct {
		Timeout Duration `json:"timeout,omitzero"`
	} `json:"wait,omitzero"`
	// Suspend stops reconciling the sync until it is set false again.
	Suspend bool `json:"suspend,omitempty"`
	// Drift is heal (the default: re-apply what someone changed, within
	// seconds) or report (count and log it only).
	Drift string `json:"drift,omitempty"`
	// Policies tune the policy gate of this sync (default: every rule at
	// its own severity, admission policies from the policies/ folder).
	Policies *PoliciesConfig `json:"policies,omitempty"`
	// Notify tells people what the sync did: commit statuses on the Git
	// host, alerts to a webhook or a chat.
	Notify []NotifyConfig `json:"notify,omitempty"`
	// ManagesDaemon lets the sync write objects in the daemon's namespace
	// (gitk8s-system), to keep gitk8s itself in Git; the daemon's
	// credentials, inventories and state there stay protected. A Sync
	// resource cannot set it.
	ManagesDaemon bool `json:"managesDaemon,omitempty"`
}

// NotifyConfig is one notifier of a sync.
type NotifyConfig struct {
	// Provider is github, gitlab or gitea (a commit status per revision,
	// sync and cluster: pending, then success or failure), webhook (a
	// signed JSON body) or slack (an incoming webhook).
	Provider string `json:"provider"`
	// Address is the Git host's API (default https://api.github.com for
	// github, the repository's host for gitlab and gitea), or the
	// webhook's URL.
	Address string `json:"address,omitempty"`
	// SecretRef holds the API token or the webhook's signing secret (key
	// default "token"), and for a webhook or slack notifier without an
	// address, the address (key "address").
	SecretRef *SecretKeyRef `json:"secretRef,omitempty"`
}

// InventoryConfig names a sync's ApplySet parent Secret.
type InventoryConfig struct {
	Name      string `json:"name,omitempty"`
	Namespace string `json:"namespace,omitempty"`
}

// PoliciesConfig is a sync's policy gate, as the CLI's --policy flags set
// it for one run (docs/policies.md).
type PoliciesConfig struct {
	// Skip turns the gate off: no built-in rule and no admission policy
	// runs (the CLI's --no-policy).
	Skip bool `json:"skip,omitempty"`
	// Builtin is the mode of the built-in rules that Modes does not name:
	// enforce (default), warn or off.
	Builtin PolicyMode `json:"builtin,omitempty"`
	// Dirs are the repository's folders of admission policies (default
	// policies, when it exists); a folder named here must exist.
	Dirs []string `json:"dirs,omitempty"`
	// Modes are modes by rule id: enforce, warn or off.
	Modes map[string]PolicyMode `json:"modes,omitempty"`
	// ExcludeNamespaces are not checked.
	ExcludeNamespaces []string `json:"excludeNamespaces,omitempty"`
	// Disabled rule ids are off.
	Disabled []string `json:"disabled,omitempty"`
}

// PolicyMode is enforce, warn or off. YAML reads an unquoted off as the
// boolean false, which reaches here as false or "false"; either is off.
type PolicyMode string

// UnmarshalJSON reads a mode, taking false for off.
func (m *PolicyMode) UnmarshalJSON(b []byte) error {
	if string(b) == "false" {
		*m = PolicyMode(policy.Off)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a policy mode (enforce, warn or off): %w", err)
	}
	if s == "false" {
		s = string(policy.Off)
	}
	*m = PolicyMode(s)
	return nil
}

// settings are the block as the policy package reads it.
func (p *PoliciesConfig) settings() policy.Settings {
	if p == nil {
		return policy.Settings{}
	}
	modes := make(map[string]string, len(p.Modes))
	for id, m := range p.Modes {
		modes[id] = string(m)
	}
	return policy.Settings{Builtin: string(p.Builtin), Modes: modes, Disabled: p.Disabled, ExcludeNamespaces: p.ExcludeNamespaces}
}

// Drift modes.
const (
	DriftHeal   = "heal"
	DriftReport = "report"
)

// SourceConfig is where a sync's manifests come from.
type SourceConfig struct {
	URL      string   `json:"url"`
	Path     string   `json:"path,omitempty"`
	Ref      RefSpec  `json:"ref,omitzero"`
	Interval Duration `json:"interval,omitzero"`
	// Auth holds the remote's credentials.
	Auth *SourceAuth `json:"auth,omitempty"`
	// Timeout bounds each Git network operation (default 1m), as the
	// CLI's --git-timeout does.
	Timeout Duration `json:"timeout,omitzero"`
	// Verify requires an oci:// source's artifacts to be signed: provider
	// cosign, and a Secret whose keys ending in .pub hold the public keys
	// (Flux's convention). An unsigned artifact is refused.
	Verify *VerifyConfig `json:"verify,omitempty"`
	// Insecure lets an oci:// source's registry be reached over plain
	// HTTP although it is not on loopback, as the CLI's --oci-plain-http.
	Insecure bool `json:"insecure,omitempty"`
	// AllowRemoteBases lets kustomizations load bases from remote
	// repositories and URLs.
	AllowRemoteBases bool `json:"allowRemoteBases,omitempty"`
	// Jsonnet are the inputs of jsonnet evaluation.
	Jsonnet *JsonnetConfig `json:"jsonnet,omitempty"`
	// EnableHelm lets kustomizations inflate their helmCharts, as the
	// CLI's --enable-helm does.
	EnableHelm bool `json:"enableHelm,omitempty"`
	// Helm are the inputs of the Helm charts the source holds, as the
	// CLI's --release-name, --release-namespace, --values, --set,
	// --kube-version and --api-versions flags give them, with inline
	// values beside (releaseName, namespace, valuesFiles, values, set,
	// kubeVersion, apiVersions).
	Helm *render.HelmOptions `json:"helm,omitempty"`
	// ChartRepositories are the chart repositories (https:// URLs or
	// oci:// registry paths, matched as prefixes) that the charts'
	// Chart.lock files may fetch dependencies from, as the CLI's
	// --helm-repo flags name them; a dependency from any other must be
	// vendored in charts/.
	ChartRepositories []ChartRepositoryConfig `json:"chartRepositories,omitempty"`
	// Decryption decrypts the files SOPS encrypted, as Flux's
	// spec.decryption does: provider sops, and a Secret whose keys ending
	// in .agekey hold age identities.
	Decryption *DecryptionConfig `json:"decryption,omitempty"`
	// RenderLimits bound the render of each revision, as the CLI's
	// --render-memory, --render-cpu, --render-timeout and --render-output
	// flags do.
	RenderLimits *RenderLimitsConfig `json:"renderLimits,omitempty"`
}

// RenderLimitsConfig bound a sync's render, which runs in a child process
// of gitk8s: its memory and the size of its output as quantities ("1Gi",
// "64Mi"), its CPU time and its wall-clock time as durations. Unset fields
// take the defaults (1Gi, 1m, 2m, 64Mi).
type RenderLimitsConfig struct {
	Memory  *resource.Quantity `json:"memory,omitempty"`
	CPU     Duration           `json:"cpu,omitzero"`
	Timeout Duration           `json:"timeout,omitzero"`
	Output  *resource.Quantity `json:"output,omitempty"`
}

// limits are the render limits these settings give.
func (c *RenderLimitsConfig) limits() render.Limits {
	if c == nil {
		return render.Limits{}
	}
	l := render.Limits{CPU: c.CPU.Duration, Timeout: c.Timeout.Duration}
	if c.Memory != nil {
		l.Memory = c.Memory.Value()
	}
	if c.Output != nil {
		l.Output = c.Output.Value()
	}
	return l
}

// JsonnetConfig are a sync's jsonnet inputs, as the CLI's --jsonnet-entry,
// --tla, --ext-str and --jsonnet-lib flags give them.
type JsonnetConfig struct {
	// Entry is the one .jsonnet file (relative to path) to evaluate
	// instead of every one.
	Entry string `json:"entry,omitempty"`
	// TLAs are top-level arguments, ExtVars external variables, as strings.
	TLAs    map[string]string `json:"tlas,omitempty"`
	ExtVars map[string]string `json:"extVars,omitempty"`
	// Libs are library folders inside the source.
	Libs []string `json:"libs,omitempty"`
}

// SourceAuth says where a remote's credentials are: a Secret in the home
// cluster or a mounted Secret, one file per key. Exactly one is given. The
// keys are Flux's: username, password, bearerToken or token (used as the
// password), ca.crt, identity (an SSH private key), passphrase and
// known_hosts; others are ignored.
type SourceAuth struct {
	SecretRef *SecretRef `json:"secretRef,omitempty"`
	// SecretDir is a directory with one file per key.
	SecretDir string `json:"secretDir,omitempty"`
}

// VerifyConfig names the public keys an artifact must be signed with.
type VerifyConfig struct {
	// Provider is cosign, the only one.
	Provider  string     `json:"provider"`
	SecretRef *SecretRef `json:"secretRef,omitempty"`
	SecretDir string     `json:"secretDir,omitempty"`
}

// DecryptionConfig names the keys of a sync's SOPS-encrypted files.
type DecryptionConfig struct {
	// Provider is sops, the only one.
	Provider string `json:"provider"`
	// SecretRef names a Secret (in the home cluster, namespace default
	// gitk8s-system) whose *.agekey keys hold age identities; SecretDir is
	// such a Secret mounted. Exactly one is given.
	SecretRef *SecretRef `json:"secretRef,omitempty"`
	SecretDir string     `json:"secretDir,omitempty"`
}

// ChartRepositoryConfig is a chart repository a sync may fetch from, with
// its credentials in a Secret of the same keys as a Git remote's
// (username, password or token, ca.crt).
type ChartRepositoryConfig struct {
	URL  string      `json:"url"`
	Auth *SourceAuth `json:"auth,omitempty"`
}

// RefSpec selects a revision; at most one field is set.
type RefSpec struct {
	Branch string `json:"branch,omitempty"`
	Tag    string `json:"tag,omitempty"`
	SemVer string `json:"semver,omitempty"`
	Commit string `json:"commit,omitempty"`
}

// Duration is a time.Duration written as "1m30s".
type Duration struct{ time.Duration }

// UnmarshalJSON reads "1m30s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := yaml.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration such as \"1m\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration: write one such as 30s, 1m or 1h30m", s)
	}
	d.Duration = v
	return nil
}

// MarshalJSON writes "1m30s".
func (d Duration) MarshalJSON() ([]byte, error) { return []byte(`"` + d.String() + `"`), nil }

var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// LoadConfig reads and checks a configuration file; every problem is named.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cfg Config
	if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
		// The decoder names neither the line nor the field; find them.
		if line, field, problem := locateConfigProblem(data); problem != nil {
			return nil, fmt.Errorf("%s:%d: %s: %w", path, line, field, problem)
		}
		if n := tabIndentedLine(data); n > 0 {
			err = fmt.Errorf("%w (line %d is indented with a tab: YAML indents with spaces only)", err, n)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if errs := cfg.validate(); len(errs) > 0 {
		return nil, fmt.Errorf("%s: %w", path, errors.Join(errs...))
	}
	return &cfg, nil
}

func (c *Config) validate() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.APIVersion != "gitk8s.io/v1alpha1" || c.Kind != "Config" {
		bad("apiVersion and kind must be gitk8s.io/v1alpha1 and Config")
	}
	clusters := map[string]bool{}
	for i, cl := range c.Clusters {
		switch {
		case !nameRE.MatchString(cl.Name):
			bad("clusters[%d]: name %q must be a lowercase DNS label", i, cl.Name)
		case clusters[cl.Name]:
			bad("clusters[%d]: cluster %s is named twice", i, cl.Name)
		}
		clusters[cl.Name] = true
		k := cl.Kubeconfig
		switch {
		case k.InCluster && (k.Context != "" || k.Path != "" || k.SecretRef != nil):
			bad("cluster %s: kubeconfig: inCluster excludes context, path and secretRef", cl.Name)
		case k.Path != "" && k.SecretRef != nil:
			bad("cluster %s: kubeconfig: give path or secretRef, not both", cl.Name)
		}
		if k.SecretRef != nil {
			for _, e := range k.SecretRef.problems() {
				bad("cluster %s: kubeconfig.secretRef: %s", cl.Name, e)
			}
		}
	}
	if len(c.Clusters) == 0 {
		bad("clusters: at least one cluster is needed")
	} else if home := c.HomeCluster(); clusters[home] {
		for _, cl := range c.Clusters {
			if cl.Name == home && cl.Kubeconfig.SecretRef != nil {
				bad("cluster %s: kubeconfig: the home cluster, where Secrets are read, cannot itself come from a Secret", home)
			}
		}
	} else {
		bad("leaderElection.cluster %s is not in clusters", home)
	}
	syncs := map[string]bool{}
	for i, s := range c.Syncs {
		where := fmt.Sprintf("syncs[%d]", i)
		if s.Name != "" {
			where = "sync " + s.Name
		}
		switch {
		case !nameRE.MatchString(s.Name):
			bad("syncs[%d]: name %q must be a lowercase DNS label", i, s.Name)
		case syncs[s.Name]:
			bad("syncs[%d]: sync %s is named twice", i, s.Name)
		}
		syncs[s.Name] = true
		errs = append(errs, c.syncProblems(s, where, clusters)...)
	}
	if len(c.Syncs) == 0 && (c.SyncResources == nil || !c.SyncResources.Enabled) {
		bad("syncs: at least one sync is needed, unless syncResources.enabled serves Sync resources")
	}
	for _, e := range c.Webhooks.listenProblems() {
		bad("webhooks: %s", e)
	}
	for i, p := range c.Webhooks.TrustedProxies {
		_, perr := netip.ParsePrefix(p)
		_, aerr := netip.ParseAddr(p)
		if perr != nil && aerr != nil {
			bad("webhooks.trustedProxies[%d]: %q is not an address or CIDR such as 10.0.0.0/8", i, p)
		}
	}
	receivers := map[string]bool{}
	for i, r := range c.Webhooks.Receivers {
		if !nameRE.MatchString(r.Name) || receivers[r.Name] {
			bad("webhooks.receivers[%d]: name %q must be a unique lowercase DNS label", i, r.Name)
		}
		receivers[r.Name] = true
		switch r.Provider {
		case ProviderGitHub, ProviderGitLab, ProviderGitea, ProviderBitbucket, ProviderGeneric:
		default:
			bad("webhooks.receivers[%d]: provider %q is not one of github, gitlab, gitea, bitbucket-server, generic", i, r.Provider)
		}
		switch {
		case r.SecretFile == "" && r.SecretRef == nil:
			bad("webhooks.receivers[%d]: secretFile or secretRef is required: a receiver without a secret would trust anyone", i)
		case r.SecretFile != "" && r.SecretRef != nil:
			bad("webhooks.receivers[%d]: give secretFile or secretRef, not both", i)
		case r.SecretRef != nil:
			for _, e := range r.SecretRef.problems() {
				bad("webhooks.receivers[%d]: secretRef: %s", i, e)
			}
		default:
			if _, err := os.Stat(r.SecretFile); err != nil {
				bad("webhooks.receivers[%d]: secretFile: %v", i, err)
			}
		}
		if r.PerMinute < 0 || r.InvalidBurst < 0 || r.InvalidPerMinute < 0 || r.BodyTimeout.Duration < 0 {
			bad("webhooks.receivers[%d]: perMinute, invalidBurst, invalidPerMinute and bodyTimeout must not be negative (leave one out for its default)", i)
		}
	}
	if c.Concurrency < 0 {
		bad("concurrency must not be negative")
	}
	if r := c.SyncResources; r != nil {
		for _, name := range r.Clusters {
			if !clusters[name] {
				bad("syncResources.clusters: cluster %s is not in clusters", name)
			}
		}
		for _, ns := range r.Namespaces {
			if len(validation.IsDNS1123Label(ns)) > 0 {
				bad("syncResources.namespaces: %q is not a namespace name", ns)
			}
		}
		if sa := r.DefaultServiceAccount; sa != "" && len(validation.IsDNS1123Subdomain(sa)) > 0 {
			bad("syncResources.defaultServiceAccount %q is not a ServiceAccount name", sa)
		}
	}
	return errs
}

// syncProblems names what is wrong with one sync, named where in the
// messages; clusters are the names it may target.
func (c *Config) syncProblems(s SyncConfig, where string, clusters map[string]bool) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if s.Drift != "" && s.Drift != DriftHeal && s.Drift != DriftReport {
		bad("%s: drift %q must be heal or report", where, s.Drift)
	}
	if source.IsOCI(s.Source.URL) {
		if _, err := source.ParseOCI(s.Source.URL, s.Source.Ref.Tag, s.Source.Ref.SemVer); err != nil {
			bad("%s: source.url: %v", where, err)
		}
		if s.Source.Ref.Branch != "" || s.Source.Ref.Commit != "" {
			bad("%s: source.ref: an oci:// source takes a tag or semver (or a digest in the URL), not a branch or commit", where)
		}
	}
	if s.Source.URL == "" {
		bad("%s: source.url is required", where)
	}
	if p := path.Clean(filepath.ToSlash(s.Source.Path)); s.Source.Path != "" && p != "/" && !fs.ValidPath(p) {
		bad("%s: source.path %q must be a folder inside the repository, relative to its root", where, s.Source.Path)
	}
	set := 0
	for _, v := range []string{s.Source.Ref.Branch, s.Source.Ref.Tag, s.Source.Ref.SemVer, s.Source.Ref.Commit} {
		if v != "" {
			set++
		}
	}
	if set > 1 {
		bad("%s: source.ref: give one of branch, tag, semver or commit", where)
	}
	if s.Source.Interval.Duration != 0 && s.Source.Interval.Duration < time.Second {
		bad("%s: source.interval %s is shorter than a second", where, s.Source.Interval.Duration)
	}
	checkAuth := func(field string, a *SourceAuth) {
		if a == nil {
			return
		}
		switch {
		case (a.SecretRef == nil) == (a.SecretDir == ""):
			bad("%s: %s: give one of secretRef or secretDir", where, field)
		case a.SecretRef != nil:
			for _, e := range (&SecretKeyRef{Namespace: a.SecretRef.Namespace, Name: a.SecretRef.Name}).problems() {
				bad("%s: %s.secretRef: %s", where, field, e)
			}
		case !filepath.IsAbs(a.SecretDir):
			bad("%s: %s.secretDir %q must be an absolute path", where, field, a.SecretDir)
		}
	}
	checkAuth("source.auth", s.Source.Auth)
	if v := s.Source.Verify; v != nil {
		if v.Provider != "cosign" {
			bad("%s: source.verify.provider %q: the only provider is cosign", where, v.Provider)
		}
		if !source.IsOCI(s.Source.URL) {
			bad("%s: source.verify: only an oci:// source can be verified", where)
		}
		checkAuth("source.verify", &SourceAuth{SecretRef: v.SecretRef, SecretDir: v.SecretDir})
	}
	if dec := s.Source.Decryption; dec != nil {
		if dec.Provider != "sops" {
			bad("%s: source.decryption.provider %q: the only provider is sops", where, dec.Provider)
		}
		checkAuth("source.decryption", &SourceAuth{SecretRef: dec.SecretRef, SecretDir: dec.SecretDir})
	}
	for i, r := range s.Source.ChartRepositories {
		field := fmt.Sprintf("source.chartRepositories[%d]", i)
		if err := chartdeps.CheckRepositoryURL(r.URL); err != nil {
			bad("%s: %s.url %s: %v", where, field, source.Redact(r.URL), err)
		}
		checkAuth(field+".auth", r.Auth)
	}
	if len(s.Clusters) > 0 && s.ClusterSelector != nil {
		bad("%s: give clusters or clusterSelector, not both", where)
	}
	if len(s.Clusters) == 0 && s.ClusterSelector == nil {
		bad("%s: clusters or clusterSelector is required", where)
	}
	for _, name := range s.Clusters {
		if !clusters[name] {
			bad("%s: cluster %s is not in clusters", where, name)
		}
	}
	if s.ClusterSelector != nil {
		if _, err := metav1.LabelSelectorAsSelector(s.ClusterSelector); err != nil {
			bad("%s: clusterSelector: %v", where, err)
		}
	}
	for _, err := range s.Settings().Validate() {
		bad("%s: %v", where, err)
	}
	for i, n := range s.Notify {
		field := fmt.Sprintf("%s: notify[%d]", where, i)
		switch n.Provider {
		case notify.GitHub, notify.GitLab, notify.Gitea:
			if n.SecretRef == nil {
				bad("%s: a %s commit status needs secretRef, the Secret of an API token", field, n.Provider)
			}
			if source.IsOCI(s.Source.URL) {
				bad("%s: an oci:// source has no commits to set a status on", field)
			}
		case notify.Webhook, notify.Slack:
			if n.Address == "" && n.SecretRef == nil {
				bad("%s: a %s notifier needs its address, or a secretRef holding it", field, n.Provider)
			}
		default:
			bad("%s: provider %q is not one of github, gitlab, gitea, webhook, slack", field, n.Provider)
		}
		if n.Address != "" {
			if u, err := url.Parse(n.Address); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
				bad("%s: address %q must be an http(s) URL without credentials", field, source.Redact(n.Address))
			}
		}
		if n.SecretRef != nil {
			for _, e := range n.SecretRef.problems() {
				bad("%s.secretRef: %s", field, e)
			}
		}
	}
	return errs
}

// listenProblems names what is wrong with the listen addresses: each must
// be host:port, and HooksListen must not be an address Listen binds too.
func (w WebhooksConfig) listenProblems() []string {
	var out []string
	listenHost, listenPort, err := net.SplitHostPort(w.ListenAddress())
	if err != nil {
		out = append(out, fmt.Sprintf("listen %q: %v (write host:port or :port)", w.Listen, err))
	}
	if w.HooksListen == "" {
		return out
	}
	hooksHost, hooksPort, err := net.SplitHostPort(w.HooksListen)
	if err != nil {
		return append(out, fmt.Sprintf("hooksListen %q: %v (write host:port or :port)", w.HooksListen, err))
	}
	anyHost := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	if len(out) == 0 && hooksPort == listenPort && hooksPort != "0" &&
		(hooksHost == listenHost || anyHost(hooksHost) || anyHost(listenHost)) {
		out = append(out, fmt.Sprintf("hooksListen %q is an address listen %q binds too: give /hooks/ a port of its own, or leave hooksListen out to serve everything at listen", w.HooksListen, w.ListenAddress()))
	}
	return out
}

// problems names what is malformed in a reference: the name, namespace
// and key must be what the API server accepts.
func (r *SecretKeyRef) problems() []string {
	var out []string
	if r.Name == "" {
		out = append(out, "name is required")
	} else if errs := validation.IsDNS1123Subdomain(r.Name); len(errs) > 0 {
		out = append(out, fmt.Sprintf("name %q: %s", r.Name, strings.Join(errs, "; ")))
	}
	if r.Namespace != "" {
		if errs := validation.IsDNS1123Label(r.Namespace); len(errs) > 0 {
			out = append(out, fmt.Sprintf("namespace %q: %s", r.Namespace, strings.Join(errs, "; ")))
		}
	}
	if r.Key != "" {
		if errs := validation.IsConfigMapKey(r.Key); len(errs) > 0 {
			out = append(out, fmt.Sprintf("key %q: %s", r.Key, strings.Join(errs, "; ")))
		}
	}
	return out
}

// HomeNamespace is where the daemon keeps its own objects in the home
// cluster: the leader Lease, suspensions, and the Secrets it reads.
const HomeNamespace = "gitk8s-system"

// HomeCluster names the cluster the daemon keeps its own state in and
// reads its Secrets from: leaderElection.cluster when set, else the first
// cluster.
func (c *Config) HomeCluster() string {
	if c.LeaderElection.Cluster != "" {
		return c.LeaderElection.Cluster
	}
	return c.Clusters[0].Name
}

// locateConfigProblem finds the first thing in a configuration file that
// does not decode: a key that names no field, or a value its field cannot
// take. It says on which line, under which field path (syncs[0].source),
// and what is wrong; for an unknown key, which fields there are. It finds
// nothing in a file that is not YAML.
func locateConfigProblem(data []byte) (int, string, error) {
	var doc yamlv3.Node
	if err := yamlv3.Unmarshal(data, &doc); err != nil || len(doc.Content) == 0 {
		return 0, "", nil
	}
	return locateIn(doc.Content[0], reflect.TypeOf(Config{}), "")
}

var jsonUnmarshaler = reflect.TypeOf((*json.Unmarshaler)(nil)).Elem()

func locateIn(n *yamlv3.Node, t reflect.Type, at string) (int, string, error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yamlv3.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	here := at
	if here == "" {
		here = "the configuration"
	}
	switch {
	case reflect.PointerTo(t).Implements(jsonUnmarshaler):
	case t.Kind() == reflect.Struct && n.Kind == yamlv3.MappingNode:
		names, fields := jsonFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				return k.Line, here, fmt.Errorf("unknown field %q; the fields here are %s", k.Value, strings.Join(names, ", "))
			}
			if line, where, err := locateIn(v, ft, joinField(at, k.Value)); err != nil {
				return line, where, err
			}
		}
		return 0, "", nil
	case t.Kind() == reflect.Map && n.Kind == yamlv3.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if line, where, err := locateIn(n.Content[i+1], t.Elem(), joinField(at, n.Content[i].Value)); err != nil {
				return line, where, err
			}
		}
		return 0, "", nil
	case t.Kind() == reflect.Slice && n.Kind == yamlv3.SequenceNode:
		for i, c := range n.Content {
			if line, where, err := locateIn(c, t.Elem(), fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return line, where, err
			}
		}
		return 0, "", nil
	}
	// A value decoded as a whole: decode it alone, as the file is decoded.
	raw, err := yamlv3.Marshal(n)
	if err != nil {
		return 0, "", nil
	}
	j, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return 0, "", nil
	}
	if err := json.Unmarshal(j, reflect.New(t).Interface()); err != nil {
		var typeErr *json.UnmarshalTypeError
		switch {
		case t == reflect.TypeOf(resource.Quantity{}):
			err = fmt.Errorf("%s is not a quantity: write one such as 512Mi or 2Gi", strings.TrimSpace(string(raw)))
		case errors.As(err, &typeErr):
			err = fmt.Errorf("want %s, not %s", typeErr.Type, typeErr.Value)
		}
		return n.Line, here, err
	}
	return 0, "", nil
}

// jsonFields are a struct's fields by their JSON names, in their order,
// those of embedded structs included.
func jsonFields(t reflect.Type) ([]string, map[string]reflect.Type) {
	var names []string
	fields := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" && (f.Anonymous || strings.Contains(opts, "inline")) {
			more, types := jsonFields(f.Type)
			names = append(names, more...)
			for k, v := range types {
				fields[k] = v
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
		fields[name] = f.Type
	}
	return names, fields
}

func joinField(at, name string) string {
	if at == "" {
		return name
	}
	return at + "." + name
}

// tabIndentedLine is the first line (from 1) whose indentation holds a
// tab, or 0.
func tabIndentedLine(data []byte) int {
	for i, line := range strings.Split(string(data), "\n") {
		indent := line[:len(line)-len(strings.TrimLeft(line, " \t"))]
		if strings.Contains(indent, "\t") && strings.TrimSpace(line) != "" {
			return i + 1
		}
	}
	return 0
}
