// Package apiversions knows which Kubernetes API versions were removed, by
// which release, and what replaces them, so that a manifest written for an
// old cluster gets a precise fix instead of "no matches for kind". Migrate
// rewrites such manifests where the conversion is mechanical.
//
// It does not talk to clusters: what a target serves comes from discovery,
// in package apply.
package apiversions

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Removal is one kind at one API version that Kubernetes no longer serves.
type Removal struct {
	// From is the removed group/version and kind.
	From schema.GroupVersionKind
	// RemovedIn is the first Kubernetes release that does not serve it.
	RemovedIn string
	// To is the group/version that replaces it; empty when nothing does.
	To string
	// Needs says what the conversion takes beyond changing apiVersion.
	Needs string
}

// Message is the error a user sees for an object at the removed version.
func (r Removal) Message() string {
	if r.To == "" {
		return fmt.Sprintf("%s %s was removed in Kubernetes %s and has no replacement: %s", r.From.GroupVersion(), r.From.Kind, r.RemovedIn, r.Needs)
	}
	msg := fmt.Sprintf("%s %s was removed in Kubernetes %s: use apiVersion %s", r.From.GroupVersion(), r.From.Kind, r.RemovedIn, r.To)
	if r.Needs != "" {
		msg += " (" + r.Needs + ")"
	}
	return msg + "; `gitk8s migrate` rewrites it"
}

// Lookup returns the removal of a kind at an API version, if it was removed.
func Lookup(gvk schema.GroupVersionKind) (Removal, bool) {
	r, ok := removals[gvk]
	return r, ok
}

// All returns every known removal.
func All() []Removal {
	out := make([]Removal, 0, len(removals))
	for _, r := range removals {
		out = append(out, r)
	}
	return out
}

const (
	needsSelector    = "needs spec.selector, which the old version defaulted from the pod template's labels"
	needsIngressV1   = "backend.serviceName/servicePort become backend.service.name/port, spec.backend becomes spec.defaultBackend, and every path needs a pathType"
	needsHPAv2       = "metric targets move under target: {type, averageUtilization | averageValue | value}, and metricName/metricSelector under metric: {name, selector}"
	needsNothingMore = ""
	needsCRDv1       = "validation moves into each version's schema, which must be structural; additionalPrinterColumns, subresources and conversion move per version"
)

var removals = map[schema.GroupVersionKind]Removal{}

func removed(group, version, in, to, needs string, kinds ...string) {
	for _, k := range kinds {
		gvk := schema.GroupVersionKind{Group: group, Version: version, Kind: k}
		removals[gvk] = Removal{From: gvk, RemovedIn: in, To: to, Needs: needs}
	}
}

func init() {
	// Kinds that Kubernetes stopped serving and never replaced: their
	// alpha API versions went, and no other version serves them.
	removed("admissionregistration.k8s.io", "v1alpha1", "1.14", "", "a mutating admission webhook (MutatingWebhookConfiguration, admissionregistration.k8s.io/v1) does what initializers did", "InitializerConfiguration")
	removed("auditregistration.k8s.io", "v1alpha1", "1.19", "", "configure audit webhooks on the API server (--audit-webhook-config-file) instead", "AuditSink")
	removed("settings.k8s.io", "v1alpha1", "1.20", "", "put the env, volumes and mounts into the pod templates themselves (a kustomize patch or component does it for many workloads), or inject them with a mutating admission webhook", "PodPreset")
	// v1.16
	removed("extensions", "v1beta1", "1.16", "apps/v1", needsSelector, "Deployment", "DaemonSet", "ReplicaSet")
	removed("extensions", "v1beta1", "1.16", "networking.k8s.io/v1", needsNothingMore, "NetworkPolicy")
	removed("apps", "v1beta1", "1.16", "apps/v1", needsSelector, "Deployment", "StatefulSet")
	removed("apps", "v1beta1", "1.16", "apps/v1", needsNothingMore, "ControllerRevision")
	removed("apps", "v1beta2", "1.16", "apps/v1", needsSelector, "Deployment", "DaemonSet", "ReplicaSet", "StatefulSet")
	removed("apps", "v1beta2", "1.16", "apps/v1", needsNothingMore, "ControllerRevision")
	// v1.22
	removed("extensions", "v1beta1", "1.22", "networking.k8s.io/v1", needsIngressV1, "Ingress")
	removed("networking.k8s.io", "v1beta1", "1.22", "networking.k8s.io/v1", needsIngressV1, "Ingress")
	removed("networking.k8s.io", "v1beta1", "1.22", "networking.k8s.io/v1", needsNothingMore, "IngressClass")
	removed("rbac.authorization.k8s.io", "v1beta1", "1.22", "rbac.authorization.k8s.io/v1", needsNothingMore, "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
	removed("rbac.authorization.k8s.io", "v1alpha1", "1.22", "rbac.authorization.k8s.io/v1", needsNothingMore, "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
	removed("apiextensions.k8s.io", "v1beta1", "1.22", "apiextensions.k8s.io/v1", needsCRDv1, "CustomResourceDefinition")
	removed("apiregistration.k8s.io", "v1beta1", "1.22", "apiregistration.k8s.io/v1", needsNothingMore, "APIService")
	removed("admissionregistration.k8s.io", "v1beta1", "1.22", "admissionregistration.k8s.io/v1", "webhooks need sideEffects and admissionReviewVersions", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
	removed("storage.k8s.io", "v1beta1", "1.22", "storage.k8s.io/v1", needsNothingMore, "StorageClass", "VolumeAttachment", "CSIDriver", "CSINode")
	removed("scheduling.k8s.io", "v1beta1", "1.22", "scheduling.k8s.io/v1", needsNothingMore, "PriorityClass")
	removed("scheduling.k8s.io", "v1alpha1", "1.22", "scheduling.k8s.io/v1", needsNothingMore, "PriorityClass")
	removed("coordination.k8s.io", "v1beta1", "1.22", "coordination.k8s.io/v1", needsNothingMore, "Lease")
	removed("certificates.k8s.io", "v1beta1", "1.22", "certificates.k8s.io/v1", "needs spec.signerName", "CertificateSigningRequest")
	removed("authentication.k8s.io", "v1beta1", "1.22", "authentication.k8s.io/v1", needsNothingMore, "TokenReview")
	removed("authorization.k8s.io", "v1beta1", "1.22", "authorization.k8s.io/v1", needsNothingMore, "SubjectAccessReview", "LocalSubjectAccessReview", "SelfSubjectAccessReview", "SelfSubjectRulesReview")
	// v1.21
	removed("batch", "v2alpha1", "1.21", "batch/v1", needsNothingMore, "CronJob")
	// v1.25
	removed("batch", "v1beta1", "1.25", "batch/v1", needsNothingMore, "CronJob")
	removed("policy", "v1beta1", "1.25", "policy/v1", "an empty selector now selects every pod in the namespace instead of none", "PodDisruptionBudget")
	removed("policy", "v1beta1", "1.25", "", "use Pod Security Admission (namespace labels pod-security.kubernetes.io/*) instead", "PodSecurityPolicy")
	removed("extensions", "v1beta1", "1.16", "", "use Pod Security Admission (namespace labels pod-security.kubernetes.io/*) instead", "PodSecurityPolicy")
	removed("autoscaling", "v2beta1", "1.25", "autoscaling/v2", needsHPAv2, "HorizontalPodAutoscaler")
	removed("discovery.k8s.io", "v1beta1", "1.25", "discovery.k8s.io/v1", "per-endpoint topology becomes nodeName and zone", "EndpointSlice")
	removed("events.k8s.io", "v1beta1", "1.25", "events.k8s.io/v1", needsNothingMore, "Event")
	removed("node.k8s.io", "v1beta1", "1.25", "node.k8s.io/v1", "handler moves from spec.runtimeHandler to handler", "RuntimeClass")
	// v1.26
	removed("autoscaling", "v2beta2", "1.26", "autoscaling/v2", needsNothingMore, "HorizontalPodAutoscaler")
	removed("flowcontrol.apiserver.k8s.io", "v1beta1", "1.26", "flowcontrol.apiserver.k8s.io/v1", needsNothingMore, "FlowSchema", "PriorityLevelConfiguration")
	// v1.27
	removed("storage.k8s.io", "v1beta1", "1.27", "storage.k8s.io/v1", needsNothingMore, "CSIStorageCapacity")
	// v1.29
	removed("flowcontrol.apiserver.k8s.io", "v1beta2", "1.29", "flowcontrol.apiserver.k8s.io/v1", needsNothingMore, "FlowSchema", "PriorityLevelConfiguration")
	// v1.32
	removed("flowcontrol.apiserver.k8s.io", "v1beta3", "1.32", "flowcontrol.apiserver.k8s.io/v1", needsNothingMore, "FlowSchema", "PriorityLevelConfiguration")
}
