// Package federation expands KubeFed's Git-side format — Federated<Kind>
// objects with template, placement and overrides, FederatedNamespace,
// FederatedTypeConfig and ReplicaSchedulingPreference — into ordinary
// objects per cluster, with KubeFed's placement and replica-planning rules,
// so that policies, diff and apply see plain objects and no federation
// control plane is needed.
//
// It does not talk to clusters: which clusters exist, their labels and
// whether they are Ready are its input.
package federation

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/cli-utils/pkg/object"

	"github.com/gitk8s/gitk8s/internal/render"
)

// API groups of KubeFed's Git-side objects.
const (
	TypesGroup      = "types.kubefed.io"
	CoreGroup       = "core.kubefed.io"
	SchedulingGroup = "scheduling.kubefed.io"
)

// Cluster is a cluster objects may be placed on.
type Cluster struct {
	Name   string
	Labels map[string]string
	// Ready clusters get replicas from a ReplicaSchedulingPreference; the
	// others get none, and their share goes to the Ready ones.
	Ready bool
}

// Placement says where one federated object went.
type Placement struct {
	// Federated names the Federated<Kind> object.
	Federated string
	Source    render.Source
	// Target is the object it expands to.
	Target object.ObjMetadata
	// Clusters are the selected clusters, sorted.
	Clusters []string
	// Replicas is the per-cluster replica plan, when a
	// ReplicaSchedulingPreference applies.
	Replicas map[string]int64
	// Note explains an empty placement.
	Note string
}

// Result is the expansion of a bundle.
type Result struct {
	// PerCluster holds every cluster's objects: the bundle's ordinary
	// objects, and the federated ones placed there.
	PerCluster map[string][]*render.Object
	// Placements lists each federated object's placement.
	Placements []Placement
}

// HasFederated reports whether the bundle holds any KubeFed object.
func HasFederated(objects []*render.Object) bool {
	for _, o := range objects {
		switch o.Object.GroupVersionKind().Group {
		case TypesGroup, CoreGroup, SchedulingGroup:
			return true
		}
	}
	return false
}

// Expand places every object of the bundle on the clusters.
func Expand(objects []*render.Object, clusters []Cluster) (*Result, error) {
	res := &Result{PerCluster: map[string][]*render.Object{}}
	byName := map[string]Cluster{}
	var names []string
	for _, c := range clusters {
		byName[c.Name] = c
		names = append(names, c.Name)
		res.PerCluster[c.Name] = nil
	}
	sort.Strings(names)

	var federated []*render.Object
	typeConfigs := map[string]schema.GroupVersionKind{}
	rsps := map[string]*render.Object{}
	var errs []error
	for _, o := range objects {
		gvk := o.Object.GroupVersionKind()
		switch {
		case gvk.Group == TypesGroup && strings.HasPrefix(gvk.Kind, "Federated"):
			federated = append(federated, o)
		case gvk.Group == CoreGroup && gvk.Kind == "FederatedTypeConfig":
			fed, _, _ := unstructured.NestedString(o.Object.Object, "spec", "federatedType", "kind")
			g, _, _ := unstructured.NestedString(o.Object.Object, "spec", "targetType", "group")
			v, _, _ := unstructured.NestedString(o.Object.Object, "spec", "targetType", "version")
			k, _, _ := unstructured.NestedString(o.Object.Object, "spec", "targetType", "kind")
			if fed == "" || v == "" || k == "" {
				errs = append(errs, &render.Error{Source: o.Source, Object: o.Ref(), Err: errors.New("spec.federatedType.kind, spec.targetType.version and spec.targetType.kind are required")})
				continue
			}
			typeConfigs[fed] = schema.GroupVersionKind{Group: g, Version: v, Kind: k}
		case gvk.Group == SchedulingGroup && gvk.Kind == "ReplicaSchedulingPreference":
			rsps[o.Object.GetNamespace()+"/"+o.Object.GetName()] = o
		case gvk.Group == CoreGroup || gvk.Group == SchedulingGroup:
			errs = append(errs, &render.Error{Source: o.Source, Object: o.Ref(), Err: fmt.Errorf("%s is KubeFed control-plane configuration gitk8s does not use; remove it", gvk.Kind)})
		default:
			for _, n := range names {
				res.PerCluster[n] = append(res.PerCluster[n], o)
			}
		}
	}

	// Namespaces first: they bound where namespaced objects may go.
	nsPlacement := map[string]map[string]bool{}
	for _, o := range federated {
		if o.Object.GetKind() != "FederatedNamespace" {
			continue
		}
		selected, err := selectClusters(o, names, byName)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ns := o.Object.GetNamespace()
		if ns == "" {
			ns = o.Object.GetName()
		}
		nsPlacement[ns] = map[string]bool{}
		for _, c := range selected {
			nsPlacement[ns][c] = true
		}
	}

	for _, o := range federated {
		p, perCluster, err := expandOne(o, names, byName, typeConfigs, nsPlacement, rsps)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		res.Placements = append(res.Placements, p)
		for c, obj := range perCluster {
			res.PerCluster[c] = append(res.PerCluster[c], obj)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return res, nil
}

// expandOne turns one Federated<Kind> into an object per selected cluster.
func expandOne(o *render.Object, names []string, byName map[string]Cluster, typeConfigs map[string]schema.GroupVersionKind,
	nsPlacement map[string]map[string]bool, rsps map[string]*render.Object) (Placement, map[string]*render.Object, error) {
	fail := func(err error) (Placement, map[string]*render.Object, error) {
		return Placement{}, nil, &render.Error{Source: o.Source, Object: o.Ref(), Err: err}
	}
	fedKind := o.Object.GetKind()
	target, ok := typeConfigs[fedKind]
	if !ok {
		target, ok = defaultTargets[strings.TrimPrefix(fedKind, "Federated")]
		if !ok {
			return fail(fmt.Errorf("no FederatedTypeConfig for %s in the repository and no built-in target type for %s; add a FederatedTypeConfig naming its targetType", fedKind, strings.TrimPrefix(fedKind, "Federated")))
		}
	}
	template, _, err := unstructured.NestedMap(o.Object.Object, "spec", "template")
	if err != nil {
		return fail(fmt.Errorf("spec.template: %w", err))
	}
	base := &unstructured.Unstructured{Object: runtime.DeepCopyJSON(template)}
	if base.Object == nil {
		base.Object = map[string]any{}
	}
	base.SetGroupVersionKind(target)
	base.SetName(o.Object.GetName())
	namespaced := o.Object.GetNamespace() != ""
	if target.Kind == "Namespace" {
		name := o.Object.GetNamespace()
		if name == "" {
			name = o.Object.GetName()
		}
		base.SetName(name)
		namespaced = false
	} else if namespaced {
		base.SetNamespace(o.Object.GetNamespace())
	}
	if target.Kind == "Ingress" {
		if err := modernizeIngress(base); err != nil {
			return fail(err)
		}
	}

	p := Placement{Federated: o.Ref(), Source: o.Source, Target: render.IDOf(base)}
	selected, err := selectClusters(o, names, byName)
	if err != nil {
		return Placement{}, nil, err
	}
	if namespaced && target.Kind != "Namespace" {
		allowed, ok := nsPlacement[o.Object.GetNamespace()]
		if !ok {
			p.Note = fmt.Sprintf("propagates nowhere: namespace %s has no FederatedNamespace selecting clusters for it", o.Object.GetNamespace())
			selected = nil
		} else {
			var kept []string
			for _, c := range selected {
				if allowed[c] {
					kept = append(kept, c)
				}
			}
			if len(kept) < len(selected) && len(kept) == 0 {
				p.Note = fmt.Sprintf("propagates nowhere: the FederatedNamespace of %s selects none of its clusters", o.Object.GetNamespace())
			}
			selected = kept
		}
	}

	overrides, err := parseOverrides(o)
	if err != nil {
		return fail(err)
	}

	var replicas map[string]int64
	if rsp, ok := rsps[o.Object.GetNamespace()+"/"+o.Object.GetName()]; ok && targetKindOf(rsp) == fedKind {
		var ready []Cluster
		for _, c := range selected {
			ready = append(ready, byName[c])
		}
		replicas, err = planReplicas(rsp, ready)
		if err != nil {
			return Placement{}, nil, err
		}
		p.Replicas = replicas
		// The plan decides placement: clusters without replicas get nothing.
		var kept []string
		for _, c := range selected {
			if replicas[c] > 0 {
				kept = append(kept, c)
			}
		}
		selected = kept
	}
	p.Clusters = selected

	perCluster := map[string]*render.Object{}
	for _, c := range selected {
		obj := base.DeepCopy()
		if ops, ok := overrides[c]; ok {
			if obj, err = applyOverrides(obj, ops); err != nil {
				return fail(fmt.Errorf("overrides for cluster %s: %w", c, err))
			}
		}
		if n, ok := replicas[c]; ok {
			if err := unstructured.SetNestedField(obj.Object, n, "spec", "replicas"); err != nil {
				return fail(err)
			}
		}
		perCluster[c] = &render.Object{Object: obj, Source: o.Source}
	}
	return p, perCluster, nil
}

// selectClusters applies KubeFed's placement rules: spec.placement.clusters
// (even empty) wins over clusterSelector; an empty clusterSelector selects
// every cluster; no placement, or an empty one, selects none.
func selectClusters(o *render.Object, names []string, byName map[string]Cluster) ([]string, error) {
	placement, found, err := unstructured.NestedMap(o.Object.Object, "spec", "placement")
	if err != nil {
		return nil, &render.Error{Source: o.Source, Object: o.Ref(), Err: fmt.Errorf("spec.placement: %w", err)}
	}
	if !found {
		return nil, nil
	}
	if list, ok := placement["clusters"]; ok {
		entries, _ := list.([]any)
		var out []string
		seen := map[string]bool{}
		for _, e := range entries {
			m, _ := e.(map[string]any)
			name, _ := m["name"].(string)
			if _, known := byName[name]; known && !seen[name] {
				out = append(out, name)
				seen[name] = true
			}
		}
		sort.Strings(out)
		return out, nil
	}
	sel, ok := placement["clusterSelector"]
	if !ok {
		return nil, nil
	}
	data, err := json.Marshal(sel)
	if err != nil {
		return nil, err
	}
	var ls metav1.LabelSelector
	if err := json.Unmarshal(data, &ls); err != nil {
		return nil, &render.Error{Source: o.Source, Object: o.Ref(), Err: fmt.Errorf("spec.placement.clusterSelector: %w", err)}
	}
	selector, err := metav1.LabelSelectorAsSelector(&ls)
	if err != nil {
		return nil, &render.Error{Source: o.Source, Object: o.Ref(), Err: fmt.Errorf("spec.placement.clusterSelector: %w", err)}
	}
	var out []string
	for _, n := range names {
		if selector.Matches(labels.Set(byName[n].Labels)) {
			out = append(out, n)
		}
	}
	return out, nil
}

// override is one clusterOverrides entry.
type override struct {
	Op    string `json:"op,omitempty"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// forbiddenPaths may not be overridden: they identify the object.
var forbiddenPaths = map[string]bool{"/metadata/name": true, "/metadata/namespace": true, "/metadata/generateName": true, "/kind": true, "/apiVersion": true}

// parseOverrides reads spec.overrides into per-cluster operations and
// refuses what KubeFed refuses.
func parseOverrides(o *render.Object) (map[string][]override, error) {
	raw, found, err := unstructured.NestedSlice(o.Object.Object, "spec", "overrides")
	if err != nil || !found {
		return nil, err
	}
	out := map[string][]override{}
	for i, entry := range raw {
		m, _ := entry.(map[string]any)
		cluster, _ := m["clusterName"].(string)
		if cluster == "" {
			return nil, fmt.Errorf("spec.overrides[%d]: clusterName is required", i)
		}
		if _, dup := out[cluster]; dup {
			return nil, fmt.Errorf("spec.overrides: cluster %s is listed twice; put all its overrides in one entry", cluster)
		}
		data, err := json.Marshal(m["clusterOverrides"])
		if err != nil {
			return nil, err
		}
		var ops []override
		if err := json.Unmarshal(data, &ops); err != nil {
			return nil, fmt.Errorf("spec.overrides[%d].clusterOverrides: %w", i, err)
		}
		paths := map[string]bool{}
		for j := range ops {
			op := &ops[j]
			if op.Op == "" {
				op.Op = "replace"
			}
			if op.Op != "add" && op.Op != "remove" && op.Op != "replace" {
				return nil, fmt.Errorf("cluster %s: override %s: op %q is not add, remove or replace", cluster, op.Path, op.Op)
			}
			// The patch library ignores what comes before a path's first
			// slash: "spec/replicas" would set a top-level "replicas", and
			// "x/metadata/name" the name.
			if !strings.HasPrefix(op.Path, "/") {
				return nil, fmt.Errorf("cluster %s: override path %q is not a JSON pointer; start it with a slash, as in /spec/replicas", cluster, op.Path)
			}
			if forbiddenPaths[op.Path] {
				return nil, fmt.Errorf("cluster %s: %s may not be overridden: it names the object", cluster, op.Path)
			}
			for forbidden := range forbiddenPaths {
				if strings.HasPrefix(forbidden, op.Path+"/") {
					return nil, fmt.Errorf("cluster %s: %s may not be overridden whole: it holds the object's name and namespace; override the fields under it, as %s/labels", cluster, op.Path, op.Path)
				}
			}
			if paths[op.Path] {
				return nil, fmt.Errorf("cluster %s: path %s is overridden twice", cluster, op.Path)
			}
			paths[op.Path] = true
		}
		out[cluster] = ops
	}
	return out, nil
}

// applyOverrides applies operations in order, as a JSON patch.
func applyOverrides(obj *unstructured.Unstructured, ops []override) (*unstructured.Unstructured, error) {
	patch := make([]map[string]any, 0, len(ops))
	for _, op := range ops {
		p := map[string]any{"op": op.Op, "path": op.Path}
		if op.Op != "remove" {
			p["value"] = op.Value
		}
		patch = append(patch, p)
	}
	patchJSON, err := json.Marshal(patch)
	if err != nil {
		return nil, err
	}
	decoded, err := jsonpatch.DecodePatch(patchJSON)
	if err != nil {
		return nil, err
	}
	doc, err := obj.MarshalJSON()
	if err != nil {
		return nil, err
	}
	patched, err := decoded.Apply(doc)
	if err != nil {
		return nil, err
	}
	out := &unstructured.Unstructured{}
	if err := out.UnmarshalJSON(patched); err != nil {
		return nil, err
	}
	return out, nil
}

// defaultTargets are the target types of KubeFed's default
// FederatedTypeConfigs, at the versions Kubernetes serves today.
var defaultTargets = map[string]schema.GroupVersionKind{
	"Namespace":                {Version: "v1", Kind: "Namespace"},
	"ConfigMap":                {Version: "v1", Kind: "ConfigMap"},
	"Secret":                   {Version: "v1", Kind: "Secret"},
	"Service":                  {Version: "v1", Kind: "Service"},
	"ServiceAccount":           {Version: "v1", Kind: "ServiceAccount"},
	"Deployment":               {Group: "apps", Version: "v1", Kind: "Deployment"},
	"ReplicaSet":               {Group: "apps", Version: "v1", Kind: "ReplicaSet"},
	"StatefulSet":              {Group: "apps", Version: "v1", Kind: "StatefulSet"},
	"DaemonSet":                {Group: "apps", Version: "v1", Kind: "DaemonSet"},
	"Job":                      {Group: "batch", Version: "v1", Kind: "Job"},
	"CronJob":                  {Group: "batch", Version: "v1", Kind: "CronJob"},
	"Ingress":                  {Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"},
	"ClusterRole":              {Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRole"},
	"ClusterRoleBinding":       {Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRoleBinding"},
	"Role":                     {Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "Role"},
	"RoleBinding":              {Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "RoleBinding"},
	"HorizontalPodAutoscaler":  {Group: "autoscaling", Version: "v2", Kind: "HorizontalPodAutoscaler"},
	"PersistentVolumeClaim":    {Version: "v1", Kind: "PersistentVolumeClaim"},
	"LimitRange":               {Version: "v1", Kind: "LimitRange"},
	"ResourceQuota":            {Version: "v1", Kind: "ResourceQuota"},
	"StorageClass":             {Group: "storage.k8s.io", Version: "v1", Kind: "StorageClass"},
	"CustomResourceDefinition": {Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"},
}
