package policy

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/gitk8s/gitk8s/internal/render"
)

func init() {
	register("quota-fit", Error, "the objects must fit their namespaces' ResourceQuotas", checkQuotaFit)
	register("resources-required-by-quota", Error, "containers must set what a quota constrains", checkResourcesRequired)
}

// computeResources are the quota resources a container's requests and
// limits count toward.
var computeResources = map[corev1.ResourceName]struct {
	field string // requests or limits
	res   corev1.ResourceName
}{
	"cpu":             {"requests", "cpu"},
	"memory":          {"requests", "memory"},
	"requests.cpu":    {"requests", "cpu"},
	"requests.memory": {"requests", "memory"},
	"limits.cpu":      {"limits", "cpu"},
	"limits.memory":   {"limits", "memory"},
}

// namespaceState is what the quota rules know of one namespace.
type namespaceState struct {
	quotas      []*corev1.ResourceQuota
	limitRanges []*corev1.LimitRange
	// live is true when the quotas came from the cluster, with status.used.
	live bool
}

func (c *Context) namespaceState(ns string) namespaceState {
	var st namespaceState
	for _, o := range c.objectsIn(ns) {
		switch o.Object.GetKind() {
		case "ResourceQuota":
			var q corev1.ResourceQuota
			if runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object.Object, &q) == nil {
				st.quotas = append(st.quotas, &q)
			}
		case "LimitRange":
			var lr corev1.LimitRange
			if runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object.Object, &lr) == nil {
				st.limitRanges = append(st.limitRanges, &lr)
			}
		}
	}
	if c.Live == nil {
		return st
	}
	if live, err := c.Live.Quotas(ns); err == nil && len(live) > 0 {
		// The cluster's quotas carry status.used; the bundle's replace them
		// by name (their hard limits may be changing).
		bundle := map[string]*corev1.ResourceQuota{}
		for _, q := range st.quotas {
			bundle[q.Name] = q
		}
		var merged []*corev1.ResourceQuota
		for _, u := range live {
			var q corev1.ResourceQuota
			if runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &q) != nil {
				continue
			}
			if b, ok := bundle[q.Name]; ok {
				q.Spec = b.Spec
				delete(bundle, q.Name)
			}
			merged = append(merged, &q)
		}
		for _, q := range bundle {
			merged = append(merged, q)
		}
		st.quotas, st.live = merged, true
	}
	if lrs, err := c.Live.LimitRanges(ns); err == nil && len(st.limitRanges) == 0 {
		for _, u := range lrs {
			var lr corev1.LimitRange
			if runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &lr) == nil {
				st.limitRanges = append(st.limitRanges, &lr)
			}
		}
	}
	return st
}

// podTemplate reads a workload's pod spec as a typed PodSpec.
func podTemplate(w workload) (*corev1.PodSpec, error) {
	var spec corev1.PodSpec
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(w.spec, &spec); err != nil {
		return nil, err
	}
	return &spec, nil
}

// withDefaults fills a container's requests and limits as admission does:
// LimitRange defaults for what is unset, then requests from limits.
func withDefaults(ctr corev1.Container, lrs []*corev1.LimitRange) corev1.ResourceRequirements {
	req := ctr.Resources.Requests.DeepCopy()
	lim := ctr.Resources.Limits.DeepCopy()
	if req == nil {
		req = corev1.ResourceList{}
	}
	if lim == nil {
		lim = corev1.ResourceList{}
	}
	for _, lr := range lrs {
		for _, item := range lr.Spec.Limits {
			if item.Type != corev1.LimitTypeContainer {
				continue
			}
			for name, q := range item.Default {
				if _, ok := lim[name]; !ok {
					lim[name] = q
				}
			}
			for name, q := range item.DefaultRequest {
				if _, ok := req[name]; !ok {
					req[name] = q
				}
			}
		}
	}
	for name, q := range lim {
		if _, ok := req[name]; !ok {
			req[name] = q
		}
	}
	return corev1.ResourceRequirements{Requests: req, Limits: lim}
}

// podUsage is one pod's requests and limits, as the quota system counts
// them: the larger of the containers' sum and the largest init container,
// plus the pod overhead.
func podUsage(spec *corev1.PodSpec, lrs []*corev1.LimitRange) (requests, limits corev1.ResourceList) {
	requests, limits = corev1.ResourceList{}, corev1.ResourceList{}
	add := func(into corev1.ResourceList, from corev1.ResourceList) {
		for n, q := range from {
			cur := into[n]
			cur.Add(q)
			into[n] = cur
		}
	}
	maxOf := func(into corev1.ResourceList, from corev1.ResourceList) {
		for n, q := range from {
			if cur, ok := into[n]; !ok || q.Cmp(cur) > 0 {
				into[n] = q
			}
		}
	}
	for _, c := range spec.Containers {
		r := withDefaults(c, lrs)
		add(requests, r.Requests)
		add(limits, r.Limits)
	}
	initReq, initLim := corev1.ResourceList{}, corev1.ResourceList{}
	for _, c := range spec.InitContainers {
		r := withDefaults(c, lrs)
		maxOf(initReq, r.Requests)
		maxOf(initLim, r.Limits)
	}
	maxOf(requests, initReq)
	maxOf(limits, initLim)
	add(requests, spec.Overhead)
	add(limits, spec.Overhead)
	return requests, limits
}

// podCount is how many pods a workload can have at once: replicas, raised
// to an HPA's maxReplicas, plus the rolling update's surge.
func (c *Context) podCount(w workload) int64 {
	o := w.obj.Object
	replicas := func() int64 {
		if r, found, _ := unstructured.NestedInt64(o.Object, "spec", "replicas"); found {
			return r
		}
		return 1
	}
	switch o.GetKind() {
	case "Pod":
		return 1
	case "Job":
		if p, found, _ := unstructured.NestedInt64(o.Object, "spec", "parallelism"); found {
			return p
		}
		return 1
	case "CronJob":
		if p, found, _ := unstructured.NestedInt64(o.Object, "spec", "jobTemplate", "spec", "parallelism"); found {
			return p
		}
		return 1
	case "DaemonSet":
		return 1 // one per node; without the node count, one
	}
	n := replicas()
	for _, h := range c.objectsIn(c.namespaceOf(w.obj)) {
		if h.Object.GetKind() != "HorizontalPodAutoscaler" {
			continue
		}
		kind, _, _ := unstructured.NestedString(h.Object.Object, "spec", "scaleTargetRef", "kind")
		name, _, _ := unstructured.NestedString(h.Object.Object, "spec", "scaleTargetRef", "name")
		if kind == o.GetKind() && name == o.GetName() {
			if max, found, _ := unstructured.NestedInt64(h.Object.Object, "spec", "maxReplicas"); found && max > n {
				n = max
			}
		}
	}
	if o.GetKind() == "Deployment" {
		strategy, _, _ := unstructured.NestedString(o.Object, "spec", "strategy", "type")
		if strategy != "Recreate" {
			surge := intstr.FromString("25%")
			if v, found, _ := unstructured.NestedFieldNoCopy(o.Object, "spec", "strategy", "rollingUpdate", "maxSurge"); found {
				switch t := v.(type) {
				case int64:
					surge = intstr.FromInt(int(t))
				case string:
					surge = intstr.FromString(t)
				}
			}
			if s, err := intstr.GetScaledValueFromIntOrPercent(&surge, int(n), true); err == nil {
				n += int64(s)
			}
		}
	}
	return n
}

// usageOf is what the objects of a namespace count toward its quotas.
func (c *Context) usageOf(ns string, lrs []*corev1.LimitRange) corev1.ResourceList {
	used := corev1.ResourceList{}
	add := func(name corev1.ResourceName, q resource.Quantity) {
		cur := used[name]
		cur.Add(q)
		used[name] = cur
	}
	one := resource.MustParse("1")
	var inNS []*render.Object
	for _, o := range c.objectsIn(ns) {
		if o.Object.GetKind() != "Namespace" {
			inNS = append(inNS, o)
		}
	}
	for _, w := range workloads(inNS) {
		spec, err := podTemplate(w)
		if err != nil {
			continue
		}
		pods := c.podCount(w)
		req, lim := podUsage(spec, lrs)
		for n, q := range req {
			q.Mul(pods)
			add("requests."+n, q)
			if n == corev1.ResourceCPU || n == corev1.ResourceMemory {
				add(n, q)
			}
		}
		for n, q := range lim {
			q.Mul(pods)
			add("limits."+n, q)
		}
		podsQ := resource.MustParse("0")
		podsQ.Add(*resource.NewQuantity(pods, resource.DecimalSI))
		add(corev1.ResourcePods, podsQ)
		if w.obj.Object.GetKind() == "StatefulSet" {
			templates, _, _ := unstructured.NestedSlice(w.obj.Object.Object, "spec", "volumeClaimTemplates")
			for _, t := range templates {
				m, _ := t.(map[string]any)
				size, _, _ := unstructured.NestedString(m, "spec", "resources", "requests", "storage")
				if q, err := resource.ParseQuantity(size); err == nil {
					q.Mul(pods)
					add("requests.storage", q)
				}
				add("persistentvolumeclaims", *resource.NewQuantity(pods, resource.DecimalSI))
			}
		}
	}
	for _, o := range inNS {
		gvk := o.Object.GroupVersionKind()
		switch gvk.Kind {
		case "Service":
			add("services", one)
			typ, _, _ := unstructured.NestedString(o.Object.Object, "spec", "type")
			if typ == "NodePort" || typ == "LoadBalancer" {
				ports, _, _ := unstructured.NestedSlice(o.Object.Object, "spec", "ports")
				add("services.nodeports", *resource.NewQuantity(int64(len(ports)), resource.DecimalSI))
			}
			if typ == "LoadBalancer" {
				add("services.loadbalancers", one)
			}
		case "Secret":
			add("secrets", one)
		case "ConfigMap":
			add("configmaps", one)
		case "PersistentVolumeClaim":
			add("persistentvolumeclaims", one)
			size, _, _ := unstructured.NestedString(o.Object.Object, "spec", "resources", "requests", "storage")
			if q, err := resource.ParseQuantity(size); err == nil {
				add("requests.storage", q)
			}
		}
		resourceName := strings.ToLower(gvk.Kind) + "s"
		if gvk.Group != "" {
			resourceName += "." + gvk.Group
		}
		add(corev1.ResourceName("count/"+resourceName), one)
	}
	return used
}

func checkQuotaFit(c *Context) []Finding {
	var out []Finding
	for _, ns := range c.namespaces() {
		st := c.namespaceState(ns)
		if len(st.quotas) == 0 {
			continue
		}
		planned := c.usageOf(ns, st.limitRanges)
		// What the objects being replaced use now is read from the cluster
		// only when it matters: when live use plus the plan is over a limit.
		var replaced corev1.ResourceList
		replacedRead := false
		for _, q := range st.quotas {
			var over []string
			for name, hard := range q.Spec.Hard {
				want, ok := planned[name]
				if !ok {
					continue
				}
				total := want.DeepCopy()
				if st.live {
					if used, ok := q.Status.Used[name]; ok {
						total.Add(used)
					}
					if total.Cmp(hard) > 0 && !replacedRead {
						replaced, replacedRead = c.liveUsageOfReplaced(ns, st.limitRanges), true
					}
					if r, ok := replaced[name]; ok {
						total.Sub(r)
					}
				}
				if total.Cmp(hard) > 0 {
					by := total.DeepCopy()
					by.Sub(hard)
					over = append(over, fmt.Sprintf("%s %s > %s (by %s)", name, total.String(), hard.String(), by.String()))
				}
			}
			if len(over) == 0 {
				continue
			}
			sort.Strings(over)
			obj := c.quotaObject(ns, q.Name)
			out = append(out, Finding{Object: obj.Ref(), Source: obj.Source,
				Message: fmt.Sprintf("namespace %s would exceed ResourceQuota %s: %s (pods counted with replicas, rolling-update surge and HPA maximums)", ns, q.Name, strings.Join(over, "; ")),
				Fix:     "lower replicas or resources, or raise the quota"})
		}
	}
	return out
}

// quotaObject is the object a quota finding is reported on: the quota when
// it is in the bundle, else the namespace's first object.
func (c *Context) quotaObject(ns, name string) *render.Object {
	if o := c.find("ResourceQuota", ns, name); o != nil {
		return o
	}
	for _, o := range c.Objects {
		if c.namespaceOf(o) == ns && o.Object.GetNamespace() != "" {
			return o
		}
	}
	return c.Objects[0]
}

// liveUsageOfReplaced is what the bundle's objects that already exist use
// now, so that replacing them is not counted twice.
func (c *Context) liveUsageOfReplaced(ns string, lrs []*corev1.LimitRange) corev1.ResourceList {
	var existing []*render.Object
	for _, o := range c.Objects {
		if c.namespaceOf(o) != ns || o.Object.GetNamespace() == "" {
			continue
		}
		live, err := c.Live.Get(o.Object.GetAPIVersion(), o.Object.GetKind(), ns, o.Object.GetName())
		if err == nil && live != nil {
			existing = append(existing, &render.Object{Object: live, Source: o.Source})
		}
	}
	sub := &Context{Objects: existing, DefaultNamespace: c.DefaultNamespace}
	return sub.usageOf(ns, lrs)
}

func (c *Context) namespaces() []string {
	seen := map[string]bool{}
	var out []string
	for _, o := range c.Objects {
		if o.Object.GetKind() == "Namespace" {
			continue
		}
		ns := c.namespaceOf(o)
		if !seen[ns] {
			seen[ns] = true
			out = append(out, ns)
		}
	}
	sort.Strings(out)
	return out
}

func checkResourcesRequired(c *Context) []Finding {
	var out []Finding
	for _, ns := range c.namespaces() {
		st := c.namespaceState(ns)
		constrained := map[string]bool{} // "requests.cpu" etc.
		for _, q := range st.quotas {
			for name := range q.Spec.Hard {
				if cr, ok := computeResources[name]; ok {
					constrained[cr.field+"."+string(cr.res)] = true
				}
			}
		}
		if len(constrained) == 0 {
			continue
		}
		c.eachContainer(ns, st.limitRanges, func(w workload, ctr corev1.Container, r corev1.ResourceRequirements) {
			var missing []string
			for key := range constrained {
				field, res, _ := strings.Cut(key, ".")
				list := r.Requests
				if field == "limits" {
					list = r.Limits
				}
				if _, ok := list[corev1.ResourceName(res)]; !ok {
					missing = append(missing, key)
				}
			}
			if len(missing) > 0 {
				sort.Strings(missing)
				out = append(out, finding(w.obj, fmt.Sprintf("container %s sets no %s, which a ResourceQuota in %s constrains, and no LimitRange gives a default: the API server accepts the %s but never creates its pods",
					ctr.Name, strings.Join(missing, ", "), ns, w.obj.Object.GetKind()),
					fmt.Sprintf("set %s on container %s, or add a LimitRange with defaults", strings.Join(missing, " and "), ctr.Name)))
			}
		})
	}
	return out
}

func init() {
	register("resources-limitrange-conflict", Error, "containers must fit their namespace's LimitRange once its defaults are applied", checkLimitRangeConflicts)
}

// checkLimitRangeConflicts finds containers the API server will refuse to
// create pods for: a request above the limit a LimitRange default gives
// it, or outside the LimitRange's min and max. The workload itself is
// accepted; only its pods fail.
func checkLimitRangeConflicts(c *Context) []Finding {
	var out []Finding
	for _, ns := range c.namespaces() {
		st := c.namespaceState(ns)
		if len(st.limitRanges) == 0 {
			continue
		}
		c.eachContainer(ns, st.limitRanges, func(w workload, ctr corev1.Container, r corev1.ResourceRequirements) {
			var problems []string
			for name, req := range r.Requests {
				if lim, ok := r.Limits[name]; ok && req.Cmp(lim) > 0 {
					problems = append(problems, fmt.Sprintf("%s request %s is above its limit %s", name, req.String(), lim.String()))
				}
			}
			for _, lr := range st.limitRanges {
				for _, item := range lr.Spec.Limits {
					if item.Type != corev1.LimitTypeContainer {
						continue
					}
					for name, max := range item.Max {
						if lim, ok := r.Limits[name]; ok && lim.Cmp(max) > 0 {
							problems = append(problems, fmt.Sprintf("%s limit %s is above LimitRange %s's max %s", name, lim.String(), lr.Name, max.String()))
						}
					}
					for name, min := range item.Min {
						if req, ok := r.Requests[name]; ok && req.Cmp(min) < 0 {
							problems = append(problems, fmt.Sprintf("%s request %s is below LimitRange %s's min %s", name, req.String(), lr.Name, min.String()))
						}
					}
				}
			}
			if len(problems) > 0 {
				sort.Strings(problems)
				out = append(out, finding(w.obj, fmt.Sprintf("container %s, with the LimitRange defaults of %s applied: %s; the API server accepts the %s but refuses its pods", ctr.Name, ns, strings.Join(problems, "; "), w.obj.Object.GetKind()),
					fmt.Sprintf("set requests and limits on container %s that fit the LimitRange", ctr.Name)))
			}
		})
	}
	return out
}

// eachContainer calls fn for every container (init containers first) of
// every workload in a namespace, with the LimitRange defaults applied to
// its requests and limits.
func (c *Context) eachContainer(ns string, lrs []*corev1.LimitRange, fn func(workload, corev1.Container, corev1.ResourceRequirements)) {
	for _, w := range workloads(c.objectsIn(ns)) {
		spec, err := podTemplate(w)
		if err != nil {
			continue
		}
		for _, ctr := range append(append([]corev1.Container(nil), spec.InitContainers...), spec.Containers...) {
			fn(w, ctr, withDefaults(ctr, lrs))
		}
	}
}
