package apply

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Phases of an apply. Objects of a later phase are written only after every
// object of the earlier ones.
const (
	phaseFoundation  = iota // Namespaces and CRDs
	phaseClusterRBAC        // ClusterRoles and ClusterRoleBindings
	phaseRest               // everything else
)

// kindRank orders kinds inside the last phase so that what a workload needs
// (its quota and limits, service account, configuration, storage, service)
// exists before the workload. Kinds not listed come after all listed ones,
// and admission webhooks come last so they cannot block the objects of the
// same apply.
var kindRank = map[schema.GroupKind]int{
	{Group: "", Kind: "Namespace"}:                                                  0,
	{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}:               1,
	{Group: "rbac.authorization.k8s.io", Kind: "ClusterRole"}:                       10,
	{Group: "rbac.authorization.k8s.io", Kind: "ClusterRoleBinding"}:                11,
	{Group: "scheduling.k8s.io", Kind: "PriorityClass"}:                             20,
	{Group: "storage.k8s.io", Kind: "StorageClass"}:                                 21,
	{Group: "", Kind: "PersistentVolume"}:                                           22,
	{Group: "", Kind: "ResourceQuota"}:                                              23,
	{Group: "", Kind: "LimitRange"}:                                                 24,
	{Group: "policy", Kind: "PodDisruptionBudget"}:                                  25,
	{Group: "", Kind: "ServiceAccount"}:                                             26,
	{Group: "rbac.authorization.k8s.io", Kind: "Role"}:                              27,
	{Group: "rbac.authorization.k8s.io", Kind: "RoleBinding"}:                       28,
	{Group: "", Kind: "Secret"}:                                                     29,
	{Group: "", Kind: "ConfigMap"}:                                                  30,
	{Group: "", Kind: "PersistentVolumeClaim"}:                                      31,
	{Group: "", Kind: "Service"}:                                                    32,
	{Group: "", Kind: "Pod"}:                                                        40,
	{Group: "", Kind: "ReplicationController"}:                                      41,
	{Group: "apps", Kind: "ReplicaSet"}:                                             42,
	{Group: "apps", Kind: "Deployment"}:                                             43,
	{Group: "apps", Kind: "StatefulSet"}:                                            44,
	{Group: "apps", Kind: "DaemonSet"}:                                              45,
	{Group: "batch", Kind: "Job"}:                                                   46,
	{Group: "batch", Kind: "CronJob"}:                                               47,
	{Group: "autoscaling", Kind: "HorizontalPodAutoscaler"}:                         48,
	{Group: "networking.k8s.io", Kind: "IngressClass"}:                              49,
	{Group: "networking.k8s.io", Kind: "Ingress"}:                                   50,
	{Group: "networking.k8s.io", Kind: "NetworkPolicy"}:                             51,
	{Group: "admissionregistration.k8s.io", Kind: "ValidatingWebhookConfiguration"}: 1000,
	{Group: "admissionregistration.k8s.io", Kind: "MutatingWebhookConfiguration"}:   1000,
}

// rankOther is the rank of kinds not in kindRank (custom resources and the rest).
const rankOther = 100

func rankOf(gk schema.GroupKind) int {
	if r, ok := kindRank[gk]; ok {
		return r
	}
	return rankOther
}

func phaseOf(gk schema.GroupKind) int {
	switch rankOf(gk) {
	case 0, 1:
		return phaseFoundation
	case 10, 11:
		return phaseClusterRBAC
	}
	return phaseRest
}

var (
	namespaceGK = schema.GroupKind{Kind: "Namespace"}
	crdGK       = schema.GroupKind{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}
)

var (
	podGK            = schema.GroupKind{Kind: "Pod"}
	serviceAccountGK = schema.GroupKind{Kind: "ServiceAccount"}
)

const rbacGroup = "rbac.authorization.k8s.io"

var (
	roleBindingGK        = schema.GroupKind{Group: rbacGroup, Kind: "RoleBinding"}
	clusterRoleBindingGK = schema.GroupKind{Group: rbacGroup, Kind: "ClusterRoleBinding"}
)
