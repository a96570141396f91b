package policy

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/gitk8s/gitk8s/internal/render"
)

func init() {
	register("rbac-wildcard", Warning, "roles should not grant * verbs, resources or API groups", roleRule(func(r rbacRule) string {
		var what []string
		for _, f := range []struct {
			name string
			list []string
		}{{"verbs", r.verbs}, {"resources", r.resources}, {"apiGroups", r.apiGroups}} {
			if slices.Contains(f.list, "*") {
				what = append(what, f.name)
			}
		}
		if len(what) == 0 {
			return ""
		}
		return "grants * in " + strings.Join(what, " and ")
	}, "list the verbs, resources and API groups it needs"))
	register("rbac-escalate-bind-impersonate", Warning, "roles should not grant escalate, bind or impersonate", roleRule(func(r rbacRule) string {
		for _, v := range []string{"escalate", "bind", "impersonate"} {
			if slices.Contains(r.verbs, v) {
				return "grants " + v + ", which lets its holders gain permissions they were not given"
			}
		}
		return ""
	}, "remove escalate, bind and impersonate unless this role exists to manage RBAC"))
	register("rbac-secrets-read", Warning, "roles should not read Secrets", roleRule(func(r rbacRule) string {
		if r.grants("", "secrets", "get", "list", "watch") {
			return "can read Secrets (get, list or watch), and with them every credential in scope"
		}
		return ""
	}, "grant access to named Secrets with resourceNames, or none"))
	register("rbac-pods-exec", Warning, "roles should not allow exec or attach into pods", func(c *Context) []Finding {
		check := func(r rbacRule) string {
			for _, sub := range []string{"pods/exec", "pods/attach"} {
				if r.grants("", sub, "create", "get") {
					return "allows " + sub + ": running commands inside pods, around every other control"
				}
			}
			return ""
		}
		return append(roleRule(check, "remove pods/exec and pods/attach")(c), bindingRule(c, check, "binds a role that allows exec or attach into pods")...)
	})
	register("rbac-nodes-proxy", Warning, "roles should not allow nodes/proxy", roleRule(func(r rbacRule) string {
		if r.grants("", "nodes/proxy", "get", "create") {
			return "allows nodes/proxy: the kubelet API of every node, around audit and admission"
		}
		return ""
	}, "remove nodes/proxy"))
	register("rbac-cluster-admin-binding", Error, "no binding should grant cluster-admin or its equal", func(c *Context) []Finding {
		var out []Finding
		// The cluster's own cluster-admin is what a binding to that name
		// gets, whatever a file in the repository calls cluster-admin.
		for _, o := range c.Objects {
			if k := o.Object.GetKind(); (k != "RoleBinding" && k != "ClusterRoleBinding") || exemptBinding(o.Object.GetName()) {
				continue
			}
			kind, _, _ := unstructured.NestedString(o.Object.Object, "roleRef", "kind")
			name, _, _ := unstructured.NestedString(o.Object.Object, "roleRef", "name")
			if kind == "ClusterRole" && name == "cluster-admin" {
				out = append(out, finding(o, "binds ClusterRole cluster-admin: every verb on every resource", "bind a role with only the permissions the subjects need"))
			}
		}
		for _, f := range bindingRule(c, func(r rbacRule) string {
			if r.isAdmin() {
				return "admin"
			}
			return ""
		}, "grants the equal of cluster-admin (every verb on every resource)") {
			if !containsRef(out, f) {
				out = append(out, f)
			}
		}
		return out
	})
	register("rbac-anonymous-binding", Error, "no binding should name system:anonymous, system:unauthenticated or system:masters", checkAnonymous)
	register("rbac-clusterrolebinding-to-role", Error, "a ClusterRoleBinding can only refer to a ClusterRole", checkCRBToRole)
	register("rbac-binding-ref-missing", Warning, "a binding's role should exist", checkBindingRef)
}

// rbacRule is one rule of a Role or ClusterRole.
type rbacRule struct {
	apiGroups, resources, verbs []string
}

func (r rbacRule) grants(group, resource string, verbs ...string) bool {
	if !slices.Contains(r.apiGroups, group) && !slices.Contains(r.apiGroups, "*") {
		return false
	}
	base, _, _ := strings.Cut(resource, "/")
	if !slices.Contains(r.resources, resource) && !slices.Contains(r.resources, "*") && !slices.Contains(r.resources, base+"/*") {
		return false
	}
	if slices.Contains(r.verbs, "*") {
		return true
	}
	for _, v := range verbs {
		if slices.Contains(r.verbs, v) {
			return true
		}
	}
	return false
}

// allVerbs are the verbs that, all together, amount to "*" in practice.
var allVerbs = []string{"get", "list", "watch", "create", "update", "patch", "delete"}

func (r rbacRule) isAdmin() bool {
	if !slices.Contains(r.apiGroups, "*") || !slices.Contains(r.resources, "*") {
		return false
	}
	if slices.Contains(r.verbs, "*") {
		return true
	}
	for _, v := range allVerbs {
		if !slices.Contains(r.verbs, v) {
			return false
		}
	}
	return true
}

func rulesOf(u *unstructured.Unstructured) []rbacRule {
	raw, _, _ := unstructured.NestedSlice(u.Object, "rules")
	var out []rbacRule
	for _, item := range raw {
		m, _ := item.(map[string]any)
		list := func(k string) []string {
			v, _, _ := unstructured.NestedStringSlice(m, k)
			return v
		}
		out = append(out, rbacRule{apiGroups: list("apiGroups"), resources: list("resources"), verbs: list("verbs")})
	}
	return out
}

// defaultRoles are Kubernetes' own ClusterRoles, which a repository may
// reproduce; they are what they are.
var defaultRoles = map[string]bool{"cluster-admin": true, "admin": true, "edit": true, "view": true}

// exemptRole reports whether a role is Kubernetes' own.
func exemptRole(name string) bool {
	return defaultRoles[name] || strings.HasPrefix(name, "system:")
}

// exemptBinding reports whether a binding is Kubernetes' own: its default
// bindings are named after their role, or start with system:.
func exemptBinding(name string) bool {
	return name == "cluster-admin" || strings.HasPrefix(name, "system:")
}

// roleRule checks every rule of every Role and ClusterRole.
func roleRule(check func(rbacRule) string, fix string) func(*Context) []Finding {
	return func(c *Context) []Finding {
		var out []Finding
		for _, o := range c.Objects {
			if k := o.Object.GetKind(); (k != "Role" && k != "ClusterRole") || exemptRole(o.Object.GetName()) {
				continue
			}
			for i, r := range rulesOf(o.Object) {
				if msg := check(r); msg != "" {
					out = append(out, finding(o, fmt.Sprintf("rules[%d] %s", i, msg), fix))
					break
				}
			}
		}
		return out
	}
}

// builtinRoleRules are the rules of Kubernetes' default ClusterRoles that
// bindings in a repository commonly name.
var builtinRoleRules = map[string][]rbacRule{
	"cluster-admin": {{apiGroups: []string{"*"}, resources: []string{"*"}, verbs: []string{"*"}}},
	"admin":         {{apiGroups: []string{""}, resources: []string{"pods/exec", "pods/attach", "secrets"}, verbs: []string{"create", "get", "list", "watch"}}},
	"edit":          {{apiGroups: []string{""}, resources: []string{"pods/exec", "pods/attach", "secrets"}, verbs: []string{"create", "get", "list", "watch"}}},
	"view":          nil,
}

// defaultNamespacedRoles are the Roles every cluster's API server makes
// (its bootstrap policy), by namespace/name. Aggregated API servers such as
// metrics-server and prometheus-adapter bind
// extension-apiserver-authentication-reader in kube-system.
var defaultNamespacedRoles = map[string]bool{
	"kube-public/system:controller:bootstrap-signer":             true,
	"kube-system/extension-apiserver-authentication-reader":      true,
	"kube-system/system::leader-locking-kube-controller-manager": true,
	"kube-system/system::leader-locking-kube-scheduler":          true,
	"kube-system/system:controller:bootstrap-signer":             true,
	"kube-system/system:controller:cloud-provider":               true,
	"kube-system/system:controller:token-cleaner":                true,
}

// roleOf finds the rules a binding refers to: in the bundle, in the
// cluster, or among Kubernetes' defaults. found is false when the role is
// nowhere.
func (c *Context) roleOf(binding *render.Object) (rules []rbacRule, found bool) {
	kind, _, _ := unstructured.NestedString(binding.Object.Object, "roleRef", "kind")
	name, _, _ := unstructured.NestedString(binding.Object.Object, "roleRef", "name")
	ns := ""
	if kind == "Role" {
		ns = c.namespaceOf(binding)
	}
	if o := c.find(kind, ns, name); o != nil {
		return rulesOf(o.Object), true
	}
	if c.Live != nil {
		if live, err := c.Live.Get("rbac.authorization.k8s.io/v1", kind, ns, name); err == nil && live != nil {
			return rulesOf(live), true
		}
	}
	if kind == "ClusterRole" {
		if r, ok := builtinRoleRules[name]; ok {
			return r, true
		}
		if strings.HasPrefix(name, "system:") && c.Live == nil {
			return nil, true // Kubernetes' own; offline there is nothing to read
		}
	}
	if kind == "Role" && c.Live == nil && defaultNamespacedRoles[ns+"/"+name] {
		return nil, true // Kubernetes' own, like system: ClusterRoles above
	}
	return nil, false
}

// bindingRule reports bindings whose role has a rule check flags.
func bindingRule(c *Context, check func(rbacRule) string, msg string) []Finding {
	var out []Finding
	for _, o := range c.Objects {
		if k := o.Object.GetKind(); (k != "RoleBinding" && k != "ClusterRoleBinding") || exemptBinding(o.Object.GetName()) {
			continue
		}
		rules, _ := c.roleOf(o)
		for _, r := range rules {
			if check(r) != "" {
				role, _, _ := unstructured.NestedString(o.Object.Object, "roleRef", "name")
				out = append(out, finding(o, fmt.Sprintf("%s: role %s", msg, role), "bind a role with only the permissions the subjects need"))
				break
			}
		}
	}
	return out
}

func checkAnonymous(c *Context) []Finding {
	var out []Finding
	for _, o := range c.Objects {
		if k := o.Object.GetKind(); k != "RoleBinding" && k != "ClusterRoleBinding" {
			continue
		}
		subjects, _, _ := unstructured.NestedSlice(o.Object.Object, "subjects")
		for _, s := range subjects {
			m, _ := s.(map[string]any)
			kind, name := str(m, "kind"), str(m, "name")
			if (kind == "User" && name == "system:anonymous") || (kind == "Group" && (name == "system:unauthenticated" || name == "system:masters")) {
				out = append(out, finding(o, fmt.Sprintf("binds %s %s: %s", kind, name, map[string]string{
					"system:anonymous": "anyone who reaches the API server", "system:unauthenticated": "anyone who reaches the API server", "system:masters": "a group that bypasses RBAC, which no binding should need"}[name]),
					"bind named users, groups or service accounts"))
			}
		}
	}
	return out
}

func checkCRBToRole(c *Context) []Finding {
	var out []Finding
	for _, o := range c.Objects {
		if o.Object.GetKind() != "ClusterRoleBinding" {
			continue
		}
		if kind, _, _ := unstructured.NestedString(o.Object.Object, "roleRef", "kind"); kind == "Role" {
			out = append(out, finding(o, "roleRef.kind is Role: a ClusterRoleBinding can only refer to a ClusterRole, and the API server rejects it",
				"refer to a ClusterRole, or make this a RoleBinding in the Role's namespace"))
		}
	}
	return out
}

func checkBindingRef(c *Context) []Finding {
	var out []Finding
	for _, o := range c.Objects {
		if k := o.Object.GetKind(); k != "RoleBinding" && k != "ClusterRoleBinding" {
			continue
		}
		if _, found := c.roleOf(o); !found {
			kind, _, _ := unstructured.NestedString(o.Object.Object, "roleRef", "kind")
			name, _, _ := unstructured.NestedString(o.Object.Object, "roleRef", "name")
			where := "the repository"
			if c.Live != nil {
				where += " or the cluster"
			}
			out = append(out, finding(o, fmt.Sprintf("refers to %s %s, which is not in %s: the binding grants nothing until it exists", kind, name, where),
				fmt.Sprintf("add %s %s, or fix roleRef", kind, name)))
		}
	}
	return out
}

func containsRef(findings []Finding, f Finding) bool {
	for _, x := range findings {
		if x.Object == f.Object && x.Source == f.Source {
			return true
		}
	}
	return false
}
