package daemon

import (
	"errors"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/gitk8s/gitk8s/internal/render"
)

// The Sync resource: group, version, and what the daemon writes on it.
const (
	// SyncGroup and SyncVersion are the API group and version of Sync.
	SyncGroup   = "gitk8s.io"
	SyncVersion = "v1alpha1"
	// SyncFinalizer holds a deleted Sync until what it applied is pruned
	// (or orphaned, as its deletionPolicy says).
	SyncFinalizer = "gitk8s.io/finalizer"
	// AnnotationReconcileRequestedAt on a Sync asks for a reconcile now
	// whenever its value changes (gitk8s reconcile sets it to the time);
	// status.lastHandledReconcileAt says which request was served.
	AnnotationReconcileRequestedAt = "gitk8s.io/reconcile-requested-at"
)

// Deletion policies of a Sync.
const (
	// DeletionPrune (the default) prunes what the Sync applied when it is
	// deleted, under the usual prune guards.
	DeletionPrune = "Prune"
	// DeletionOrphan leaves the objects in the cluster and removes only
	// the inventory.
	DeletionOrphan = "Orphan"
)

// SyncGVR is the resource of Sync objects.
var SyncGVR = schema.GroupVersionResource{Group: SyncGroup, Version: SyncVersion, Resource: "syncs"}

// SyncResource is a gitk8s.io/v1alpha1 Sync: a sync that a team owns in its
// namespace, kept applied by the daemon with the rights of its
// ServiceAccount.
type SyncResource struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              SyncResourceSpec   `json:"spec"`
	Status            SyncResourceStatus `json:"status,omitzero"`
}

// SyncResourceSpec is a Sync's spec: what a sync of the configuration file
// holds, and who it acts as.
type SyncResourceSpec struct {
	SyncSpec `json:",inline"`
	// ServiceAccountName is a ServiceAccount of the Sync's namespace;
	// every request of its apply, prune and drift heal impersonates it,
	// so the API server's RBAC decides what it may deploy. The operator
	// may require one and give a default (syncResources in the daemon's
	// configuration).
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
	// DeletionPolicy is Prune (the default: deleting the Sync prunes what
	// it applied, under the prune guards) or Orphan (the objects stay).
	DeletionPolicy string `json:"deletionPolicy,omitempty"`
	// KubeConfig is a cluster the team reaches itself: a kubeconfig in a
	// Secret of the Sync's namespace (key default "value", else
	// "kubeconfig"), with the team's credentials, instead of clusters of
	// the daemon's configuration. Its requests use those credentials; a
	// kubeconfig that would run a command or read a file is refused.
	KubeConfig *KubeConfigRef `json:"kubeConfig,omitempty"`
}

// KubeConfigRef names the Secret of a Sync's own cluster.
type KubeConfigRef struct {
	SecretRef SecretKeyRef `json:"secretRef"`
}

// SyncResourceStatus is a Sync's status, as the Kubernetes API conventions
// and kstatus read it: conditions Ready, Reconciling and Stalled with the
// engine's reasons, for the generation observedGeneration names.
type SyncResourceStatus struct {
	ObservedGeneration    int64              `json:"observedGeneration,omitempty"`
	Conditions            []metav1.Condition `json:"conditions,omitempty"`
	LastAppliedRevision   string             `json:"lastAppliedRevision,omitempty"`
	LastAttemptedRevision string             `json:"lastAttemptedRevision,omitempty"`
	// LastHandledReconcileAt is the value of the last
	// gitk8s.io/reconcile-requested-at annotation a reconcile served.
	LastHandledReconcileAt string `json:"lastHandledReconcileAt,omitempty"`
	// Objects counts the objects the last reconcile applied, in all its
	// clusters; Counts splits them by what was done.
	Objects   int            `json:"objects,omitempty"`
	Counts    map[string]int `json:"counts,omitempty"`
	Clusters  []string       `json:"clusters,omitempty"`
	Unhealthy []string       `json:"unhealthy,omitempty"`
	// Inventory is the ApplySet parent Secret, namespace/name.
	Inventory string `json:"inventory,omitempty"`
}

// ResourceRef is the Sync resource a sync of the daemon comes from, as the
// daemon last read it.
type ResourceRef struct {
	Namespace  string
	Name       string
	UID        types.UID
	Generation int64
	// ServiceAccountName is the account the sync acts as: the Sync's, or
	// the operator's default.
	ServiceAccountName string
	DeletionPolicy     string
	// Deleting is set once the Sync has a deletion timestamp.
	Deleting bool
	// HasFinalizer says the Sync carries SyncFinalizer.
	HasFinalizer bool
	// RequestedAt is its gitk8s.io/reconcile-requested-at annotation.
	RequestedAt     string
	ResourceVersion string
	Finalizers      []string
	// KubeConfig is the Secret of the Sync's own cluster, if it has one.
	KubeConfig *SecretKeyRef
}

// ownClusterName names the cluster of a Sync's kubeConfig: the Sync's
// own name, namespace.name.
func (s SyncConfig) ownClusterName() string { return s.Name }

// ownCluster is the cluster of a Sync's kubeConfig, as the configuration
// would give it.
func (s SyncConfig) ownCluster() (ClusterConfig, bool) {
	if s.Resource == nil || s.Resource.KubeConfig == nil {
		return ClusterConfig{}, false
	}
	ref := *s.Resource.KubeConfig
	return ClusterConfig{Name: s.ownClusterName(), Kubeconfig: KubeconfigRef{SecretRef: &ref}}, true
}

// deleting reports whether the sync is a Sync resource being deleted.
func (s SyncConfig) deleting() bool { return s.Resource != nil && s.Resource.Deleting }

// generation is the Sync resource's generation, 0 for a sync of the
// configuration file.
func (s SyncConfig) generation() int64 {
	if s.Resource == nil {
		return 0
	}
	return s.Resource.Generation
}

// ResourceSyncName is the daemon's name for the Sync namespace/name:
// namespace.name. Namespaces hold no dots, so it names one Sync, and no
// sync of the configuration file (a DNS label) has it.
func ResourceSyncName(namespace, name string) string { return namespace + "." + name }

// Impersonates is the user a sync's requests are made as, empty for the
// daemon's own identity.
func (s SyncConfig) Impersonates() string {
	if s.Resource == nil || s.Resource.ServiceAccountName == "" || s.Resource.KubeConfig != nil {
		return ""
	}
	return "system:serviceaccount:" + s.Resource.Namespace + ":" + s.Resource.ServiceAccountName
}

// SyncResourcesConfig lets teams add syncs as Sync resources, and says
// what a Sync may do.
type SyncResourcesConfig struct {
	// Enabled watches Sync resources in the home cluster.
	Enabled bool `json:"enabled,omitempty"`
	// Namespaces, when set, are the only namespaces whose Syncs are
	// served; the others are left alone.
	Namespaces []string `json:"namespaces,omitempty"`
	// RequireServiceAccount refuses a Sync without serviceAccountName
	// (unless DefaultServiceAccount gives one): without it the Sync acts
	// with the daemon's own rights.
	RequireServiceAccount bool `json:"requireServiceAccount,omitempty"`
	// DefaultServiceAccount is the account of a Sync that names none, in
	// the Sync's namespace.
	DefaultServiceAccount string `json:"defaultServiceAccount,omitempty"`
	// Clusters are the clusters of the configuration that Syncs may name
	// (default: the home cluster only). A Sync that names none goes to
	// the home cluster.
	Clusters []string `json:"clusters,omitempty"`
	// AllowCrossNamespaceRefs lets a Sync read Secrets (credentials, keys)
	// and keep its inventory outside its own namespace.
	AllowCrossNamespaceRefs bool `json:"allowCrossNamespaceRefs,omitempty"`
	// AllowRemoteBases lets a Sync set source.allowRemoteBases, which
	// lets its renders reach the network.
	AllowRemoteBases bool `json:"allowRemoteBases,omitempty"`
}

// syncResourceClusters are the clusters Syncs may name.
func (c *Config) syncResourceClusters() []string {
	if c.SyncResources == nil || len(c.SyncResources.Clusters) == 0 {
		return []string{c.HomeCluster()}
	}
	return c.SyncResources.Clusters
}

// serves reports whether the Syncs of this namespace are the daemon's.
func (r *SyncResourcesConfig) serves(namespace string) bool {
	if r == nil || !r.Enabled {
		return false
	}
	if len(r.Namespaces) == 0 {
		return true
	}
	for _, ns := range r.Namespaces {
		if ns == namespace {
			return true
		}
	}
	return false
}

// SyncFromResource turns a Sync into the daemon's sync, with defaults
// filled in: the home cluster, references in the Sync's namespace, the
// inventory gitk8s-NAME there. An error names every field that is wrong
// and how to fix it; the same checks a configuration file's syncs pass are
// among them.
func (c *Config) SyncFromResource(u *unstructured.Unstructured) (SyncConfig, error) {
	var r SyncResource
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, &r, true); err != nil {
		return SyncConfig{}, fmt.Errorf("Sync %s/%s: %v", u.GetNamespace(), u.GetName(), err)
	}
	ns, name := r.Namespace, r.Name
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	opts := c.SyncResources
	if opts == nil {
		opts = &SyncResourcesConfig{}
	}
	s := SyncConfig{Name: ResourceSyncName(ns, name), SyncSpec: r.Spec.SyncSpec, Resource: &ResourceRef{
		Namespace: ns, Name: name, UID: r.UID, Generation: r.Generation,
		ServiceAccountName: r.Spec.ServiceAccountName, DeletionPolicy: r.Spec.DeletionPolicy,
		Deleting: r.DeletionTimestamp != nil, RequestedAt: r.Annotations[AnnotationReconcileRequestedAt],
		ResourceVersion: r.ResourceVersion, Finalizers: r.Finalizers,
	}}
	for _, f := range r.Finalizers {
		if f == SyncFinalizer {
			s.Resource.HasFinalizer = true
		}
	}
	if s.Resource.DeletionPolicy == "" {
		s.Resource.DeletionPolicy = DeletionPrune
	}
	if s.Resource.ServiceAccountName == "" {
		s.Resource.ServiceAccountName = opts.DefaultServiceAccount
	}
	if kc := r.Spec.KubeConfig; kc != nil {
		ref := kc.SecretRef
		s.Resource.KubeConfig = &ref
		if len(s.Clusters) > 0 || s.ClusterSelector != nil {
			bad("spec.kubeConfig: give kubeConfig or clusters/clusterSelector, not both")
		}
		s.Clusters = nil
	} else if len(s.Clusters) == 0 && s.ClusterSelector == nil {
		s.Clusters = []string{c.HomeCluster()}
	}
	if s.Inventory.Name == "" {
		s.Inventory.Name = "gitk8s-" + name
	}
	if s.Inventory.Namespace == "" {
		s.Inventory.Namespace = ns
	}
	if len(validation.IsDNS1123Label(name)) > 0 {
		bad("metadata.name %q must be a lowercase DNS label", name)
	}
	switch s.Resource.DeletionPolicy {
	case DeletionPrune, DeletionOrphan:
	default:
		bad("spec.deletionPolicy %q must be Prune or Orphan", s.Resource.DeletionPolicy)
	}
	if sa := s.Resource.ServiceAccountName; sa != "" && len(validation.IsDNS1123Subdomain(sa)) > 0 {
		bad("spec.serviceAccountName %q is not a ServiceAccount name", sa)
	}
	if s.Resource.ServiceAccountName == "" && opts.RequireServiceAccount && s.Resource.KubeConfig == nil {
		bad("spec.serviceAccountName is required here: the operator lets a Sync act only as a ServiceAccount of its namespace; name one whose RBAC allows what the repository holds")
	}
	if s.ManagesDaemon {
		bad("spec.managesDaemon: only a sync of the daemon's configuration file may write the daemon's namespace")
	}
	if s.Source.AllowRemoteBases && !opts.AllowRemoteBases {
		bad("spec.source.allowRemoteBases: the operator does not let Syncs reach the network when they render; vendor the bases into the repository, or ask for syncResources.allowRemoteBases")
	}
	// A team's Sync reads only what the team owns: Secrets and the
	// inventory in its own namespace, and never the daemon's files.
	refNamespace := func(field string, ref *string) {
		switch {
		case *ref == "":
			*ref = ns
		case *ref != ns && !opts.AllowCrossNamespaceRefs:
			bad("%s: namespace %s is not the Sync's (%s); a Sync reads Secrets and keeps its inventory in its own namespace", field, *ref, ns)
		}
	}
	auth := func(field string, a *SourceAuth) {
		if a == nil {
			return
		}
		if a.SecretDir != "" {
			bad("%s.secretDir: a Sync cannot read the daemon's files; put the credentials in a Secret of namespace %s and use secretRef", field, ns)
		}
		if a.SecretRef != nil {
			refNamespace(field+".secretRef", &a.SecretRef.Namespace)
		}
	}
	if a := s.Source.Auth; a != nil {
		cp := *a
		if a.SecretRef != nil {
			ref := *a.SecretRef
			cp.SecretRef = &ref
		}
		s.Source.Auth = &cp
		auth("spec.source.auth", s.Source.Auth)
	}
	if v := s.Source.Verify; v != nil {
		cp := *v
		if v.SecretRef != nil {
			ref := *v.SecretRef
			cp.SecretRef = &ref
		}
		s.Source.Verify = &cp
		a := &SourceAuth{SecretRef: cp.SecretRef, SecretDir: cp.SecretDir}
		auth("spec.source.verify", a)
	}
	if dec := s.Source.Decryption; dec != nil {
		cp := *dec
		if dec.SecretRef != nil {
			ref := *dec.SecretRef
			cp.SecretRef = &ref
		}
		s.Source.Decryption = &cp
		auth("spec.source.decryption", &SourceAuth{SecretRef: cp.SecretRef, SecretDir: cp.SecretDir})
	}
	repos := make([]ChartRepositoryConfig, len(s.Source.ChartRepositories))
	for i, r := range s.Source.ChartRepositories {
		if r.Auth != nil {
			a := *r.Auth
			if a.SecretRef != nil {
				ref := *a.SecretRef
				a.SecretRef = &ref
			}
			r.Auth = &a
		}
		repos[i] = r
		auth(fmt.Sprintf("spec.source.chartRepositories[%d].auth", i), repos[i].Auth)
	}
	s.Source.ChartRepositories = repos
	notifiers := make([]NotifyConfig, len(s.Notify))
	for i, n := range s.Notify {
		if n.SecretRef != nil {
			ref := *n.SecretRef
			n.SecretRef = &ref
			refNamespace(fmt.Sprintf("spec.notify[%d].secretRef", i), &n.SecretRef.Namespace)
		}
		notifiers[i] = n
	}
	if len(notifiers) > 0 {
		s.Notify = notifiers
	}
	refNamespace("spec.inventory", &s.Inventory.Namespace)
	if kc := s.Resource.KubeConfig; kc != nil {
		refNamespace("spec.kubeConfig.secretRef", &kc.Namespace)
		for _, e := range kc.problems() {
			bad("spec.kubeConfig.secretRef: %s", e)
		}
	}
	// A Sync may not raise the render limits above the defaults: a
	// render's memory and time are the daemon's.
	if l := s.Source.RenderLimits.limits(); l != (render.Limits{}) {
		def := render.DefaultLimits()
		if l.Memory > def.Memory || l.CPU > def.CPU || l.Timeout > def.Timeout || l.Output > def.Output {
			bad("spec.source.renderLimits: a Sync may lower the render limits, not raise them above memory %dMi, cpu %s, timeout %s, output %dMi", def.Memory>>20, def.CPU, def.Timeout, def.Output>>20)
		}
	}
	allowed := map[string]bool{}
	for _, name := range c.syncResourceClusters() {
		allowed[name] = true
	}
	if s.Resource.KubeConfig != nil {
		s.Clusters = []string{s.ownClusterName()}
		allowed[s.ownClusterName()] = true
	}
	for _, e := range c.syncProblems(s, "spec", allowed) {
		bad("%s", strings.Replace(e.Error(), "sync "+s.Name+": ", "", 1))
	}
	if len(errs) > 0 {
		return s, fmt.Errorf("Sync %s/%s: %w", ns, name, errors.Join(errs...))
	}
	return s, nil
}

// resourceStatus is a Sync's status as the daemon knows it now.
func resourceStatus(s SyncConfig, st SyncStatus, handled string) SyncResourceStatus {
	out := SyncResourceStatus{ObservedGeneration: st.ObservedGeneration, LastAppliedRevision: st.LastAppliedRevision,
		LastAttemptedRevision: st.LastAttemptedRevision, LastHandledReconcileAt: handled, Counts: st.Counts,
		Clusters: st.Clusters, Unhealthy: st.Unhealthy}
	inv := s.Settings().InventoryOf(s.Name)
	out.Inventory = inv.Namespace + "/" + inv.Name
	for action, n := range st.Counts {
		if action != "pruned" && action != "skipped" && action != "failed" {
			out.Objects += n
		}
	}
	for _, c := range st.Conditions {
		reason := c.Reason
		if reason == "" {
			reason = "Unknown"
		}
		t := c.LastTransitionTime
		if t.IsZero() {
			t = time.Now()
		}
		out.Conditions = append(out.Conditions, metav1.Condition{Type: c.Type, Status: metav1.ConditionStatus(c.Status),
			Reason: reason, Message: c.Message, LastTransitionTime: metav1.NewTime(t.Truncate(time.Second)), ObservedGeneration: st.ObservedGeneration})
	}
	return out
}

// SyncResourcesOf converts the configuration's syncs into Sync resources
// in a namespace, each keeping its inventory (so the Sync takes over what
// the sync applied) and naming the namespaces of its Secrets. A sync that
// reads the daemon's files (secretDir) cannot become a Sync: each is named.
func (c *Config) SyncResourcesOf(namespace string) ([]SyncResource, error) {
	var out []SyncResource
	var errs []error
	for _, s := range c.Syncs {
		spec := s.SyncSpec
		inv := s.Settings().InventoryOf(s.Name)
		spec.Inventory = InventoryConfig{Name: inv.Name, Namespace: inv.Namespace}
		fix := func(field string, ref **SecretRef, dir string) {
			if dir != "" {
				errs = append(errs, fmt.Errorf("sync %s: %s.secretDir: a Sync cannot read the daemon's files; put the keys in a Secret and use secretRef", s.Name, field))
			}
			if *ref != nil {
				r := **ref
				if r.Namespace == "" {
					r.Namespace = HomeNamespace
				}
				*ref = &r
			}
		}
		if a := spec.Source.Auth; a != nil {
			cp := *a
			fix("source.auth", &cp.SecretRef, cp.SecretDir)
			spec.Source.Auth = &cp
		}
		if v := spec.Source.Verify; v != nil {
			cp := *v
			fix("source.verify", &cp.SecretRef, cp.SecretDir)
			spec.Source.Verify = &cp
		}
		if dec := spec.Source.Decryption; dec != nil {
			cp := *dec
			fix("source.decryption", &cp.SecretRef, cp.SecretDir)
			spec.Source.Decryption = &cp
		}
		repos := make([]ChartRepositoryConfig, len(spec.Source.ChartRepositories))
		for i, r := range spec.Source.ChartRepositories {
			if r.Auth != nil {
				a := *r.Auth
				fix(fmt.Sprintf("source.chartRepositories[%d].auth", i), &a.SecretRef, a.SecretDir)
				r.Auth = &a
			}
			repos[i] = r
		}
		if len(repos) > 0 {
			spec.Source.ChartRepositories = repos
		}
		notifiers := make([]NotifyConfig, len(spec.Notify))
		for i, n := range spec.Notify {
			if n.SecretRef != nil {
				ref := *n.SecretRef
				if ref.Namespace == "" {
					ref.Namespace = HomeNamespace
				}
				n.SecretRef = &ref
			}
			notifiers[i] = n
		}
		if len(notifiers) > 0 {
			spec.Notify = notifiers
		}
		out = append(out, SyncResource{
			TypeMeta:   metav1.TypeMeta{APIVersion: SyncGroup + "/" + SyncVersion, Kind: "Sync"},
			ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: namespace},
			Spec:       SyncResourceSpec{SyncSpec: spec},
		})
	}
	return out, errors.Join(errs...)
}
