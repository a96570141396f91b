package policy

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/policy/generic"
	"k8s.io/apiserver/pkg/admission/plugin/policy/matching"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/matchconditions"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/cel/environment"
	listersv1 "k8s.io/client-go/listers/core/v1"

	"github.com/gitk8s/gitk8s/internal/render"
)

// AdmissionPolicies are ValidatingAdmissionPolicies and their bindings,
// evaluated offline with the API server's own CEL libraries, as the API
// server would evaluate them when the objects are applied.
type AdmissionPolicies struct {
	policies map[string]*compiledPolicy
	bindings []*admissionBinding
	// Errors are policies that do not compile and objects that are not
	// valid policies, each naming its file.
	Errors []Finding
}

type compiledPolicy struct {
	policy    *admissionv1.ValidatingAdmissionPolicy
	source    render.Source
	validator validating.Validator
	// usesNamespaceObject is set when an expression reads namespaceObject,
	// which is then read from the cluster; otherwise it is not worth a request.
	usesNamespaceObject bool
}

type admissionBinding struct {
	binding *admissionv1.ValidatingAdmissionPolicyBinding
	source  render.Source
}

var (
	vapGVK        = admissionv1.SchemeGroupVersion.WithKind("ValidatingAdmissionPolicy")
	vapBindingGVK = admissionv1.SchemeGroupVersion.WithKind("ValidatingAdmissionPolicyBinding")
)

// IsAdmissionPolicy reports whether an object is a ValidatingAdmissionPolicy
// or binding (admissionregistration.k8s.io/v1).
func IsAdmissionPolicy(u *unstructured.Unstructured) bool {
	gvk := u.GroupVersionKind()
	return gvk == vapGVK || gvk == vapBindingGVK
}

// LoadAdmissionPolicies compiles the policies and bindings among objects;
// other objects are ignored.
func LoadAdmissionPolicies(objects []*render.Object) *AdmissionPolicies {
	ap := &AdmissionPolicies{policies: map[string]*compiledPolicy{}}
	for _, o := range objects {
		switch o.Object.GroupVersionKind() {
		case vapGVK:
			var p admissionv1.ValidatingAdmissionPolicy
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object.Object, &p); err != nil {
				ap.Errors = append(ap.Errors, admissionError(o, fmt.Sprintf("not a valid ValidatingAdmissionPolicy: %v", err)))
				continue
			}
			defaultPolicy(&p)
			v, problems := compile(&p)
			if err := v.CompileError(); err != nil {
				problems = append(problems, err.Error())
			}
			if len(problems) > 0 {
				ap.Errors = append(ap.Errors, admissionError(o, "does not compile: "+strings.Join(problems, "; ")))
				continue
			}
			ap.policies[p.Name] = &compiledPolicy{policy: &p, source: o.Source, validator: v, usesNamespaceObject: mentions(&p, "namespaceObject")}
		case vapBindingGVK:
			var b admissionv1.ValidatingAdmissionPolicyBinding
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object.Object, &b); err != nil {
				ap.Errors = append(ap.Errors, admissionError(o, fmt.Sprintf("not a valid ValidatingAdmissionPolicyBinding: %v", err)))
				continue
			}
			if b.Spec.MatchResources != nil {
				defaultMatchResources(b.Spec.MatchResources)
			}
			ap.bindings = append(ap.bindings, &admissionBinding{binding: &b, source: o.Source})
		}
	}
	return ap
}

// mentions reports whether any expression of the policy names a variable.
func mentions(p *admissionv1.ValidatingAdmissionPolicy, name string) bool {
	var exprs []string
	for _, v := range p.Spec.Variables {
		exprs = append(exprs, v.Expression)
	}
	for _, m := range p.Spec.MatchConditions {
		exprs = append(exprs, m.Expression)
	}
	for _, v := range p.Spec.Validations {
		exprs = append(exprs, v.Expression, v.MessageExpression)
	}
	for _, a := range p.Spec.AuditAnnotations {
		exprs = append(exprs, a.ValueExpression)
	}
	for _, e := range exprs {
		if strings.Contains(e, name) {
			return true
		}
	}
	return false
}

// defaultPolicy fills in what the API server defaults when it stores a
// policy, so that it is evaluated as stored.
func defaultPolicy(p *admissionv1.ValidatingAdmissionPolicy) {
	if p.Spec.FailurePolicy == nil {
		fail := admissionv1.Fail
		p.Spec.FailurePolicy = &fail
	}
	if p.Spec.MatchConstraints == nil {
		p.Spec.MatchConstraints = &admissionv1.MatchResources{}
	}
	defaultMatchResources(p.Spec.MatchConstraints)
}

func defaultMatchResources(m *admissionv1.MatchResources) {
	if m.NamespaceSelector == nil {
		m.NamespaceSelector = &metav1.LabelSelector{}
	}
	if m.ObjectSelector == nil {
		m.ObjectSelector = &metav1.LabelSelector{}
	}
	if m.MatchPolicy == nil {
		equivalent := admissionv1.Equivalent
		m.MatchPolicy = &equivalent
	}
	for _, rules := range [][]admissionv1.NamedRuleWithOperations{m.ResourceRules, m.ExcludeResourceRules} {
		for i := range rules {
			if rules[i].Scope == nil {
				all := admissionv1.AllScopes
				rules[i].Scope = &all
			}
		}
	}
}

func admissionError(o *render.Object, msg string) Finding {
	return Finding{Rule: RuleAdmissionPolicyInvalid, Severity: Error, Object: o.Ref(), Source: o.Source, File: o.Source.File, Line: o.Source.Line,
		Message: msg, Fix: "fix the expression; `kubectl apply --dry-run=server` on the policy shows the same error"}
}

// compile builds a validator for a policy the way the API server's
// admission plugin does: variables first, then match conditions,
// validations, audit annotations and message expressions, in one
// composited CEL environment.
func compile(p *admissionv1.ValidatingAdmissionPolicy) (validating.Validator, []string) {
	hasParams := p.Spec.ParamKind != nil
	vars := cel.OptionalVariableDeclarations{HasParams: hasParams, HasAuthorizer: true}
	messageVars := cel.OptionalVariableDeclarations{HasParams: hasParams, HasAuthorizer: false}
	compiler, err := cel.NewCompositedCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()))
	if err != nil {
		return validating.NewValidator(nil, nil, nil, nil, p.Spec.FailurePolicy, err), nil
	}
	var problems []string
	check := func(field string, e cel.ExpressionAccessor, decls cel.OptionalVariableDeclarations) {
		if res := compiler.CompileCELExpression(e, decls, environment.StoredExpressions); res.Error != nil {
			problems = append(problems, fmt.Sprintf("%s %q: %s", field, e.GetExpression(), res.Error.Detail))
		}
	}
	for i, v := range p.Spec.Variables {
		res := compiler.CompileAndStoreVariable(&validating.Variable{Name: v.Name, Expression: v.Expression}, vars, environment.StoredExpressions)
		if res.Error != nil {
			problems = append(problems, fmt.Sprintf("spec.variables[%d] %q: %s", i, v.Expression, res.Error.Detail))
		}
	}

	var matcher matchconditions.Matcher
	if len(p.Spec.MatchConditions) > 0 {
		conditions := make([]cel.ExpressionAccessor, len(p.Spec.MatchConditions))
		for i := range p.Spec.MatchConditions {
			conditions[i] = (*matchconditions.MatchCondition)(&p.Spec.MatchConditions[i])
			check(fmt.Sprintf("spec.matchConditions[%d]", i), conditions[i], vars)
		}
		matcher = matchconditions.NewMatcher(compiler.CompileCondition(conditions, vars, environment.StoredExpressions), p.Spec.FailurePolicy, "policy", "validate", p.Name)
	}
	validations := make([]cel.ExpressionAccessor, len(p.Spec.Validations))
	messages := make([]cel.ExpressionAccessor, len(p.Spec.Validations))
	for i, v := range p.Spec.Validations {
		validations[i] = &validating.ValidationCondition{Expression: v.Expression, Message: v.Message, Reason: v.Reason}
		check(fmt.Sprintf("spec.validations[%d].expression", i), validations[i], vars)
		if v.MessageExpression != "" {
			messages[i] = &validating.MessageExpressionCondition{MessageExpression: v.MessageExpression}
			check(fmt.Sprintf("spec.validations[%d].messageExpression", i), messages[i], messageVars)
		}
	}
	audits := make([]cel.ExpressionAccessor, len(p.Spec.AuditAnnotations))
	for i, a := range p.Spec.AuditAnnotations {
		audits[i] = &validating.AuditAnnotationCondition{Key: a.Key, ValueExpression: a.ValueExpression}
	}
	return validating.NewValidator(
		compiler.CompileCondition(validations, vars, environment.StoredExpressions),
		matcher,
		compiler.CompileCondition(audits, vars, environment.StoredExpressions),
		compiler.CompileCondition(messages, messageVars, environment.StoredExpressions),
		p.Spec.FailurePolicy, nil), problems
}

// Evaluate runs every binding against every object of ctx and returns a
// finding for each object a policy would deny (Deny: error; Warn or Audit:
// warning), as the API server would on create (or update, when the
// cluster already has the object).
func (ap *AdmissionPolicies) Evaluate(ctx context.Context, c *Context) []Finding {
	out := append([]Finding(nil), ap.Errors...)
	if len(ap.bindings) == 0 {
		return out
	}
	nsLister := c.namespaceLister()
	policyMatcher := generic.NewPolicyMatcher(matching.NewMatcher(nsLister, nil))
	objIfaces := admission.NewObjectInterfacesFromScheme(runtime.NewScheme())
	for _, o := range c.Objects {
		if IsAdmissionPolicy(o.Object) {
			continue
		}
		// Evaluated as a create, which needs nothing from the cluster; a
		// policy that only handles updates gets the live object as
		// oldObject, read only then.
		createAttr, createVersioned := c.attributesFor(o, nil)
		probeUpdate, _ := c.attributesFor(o, o.Object) // for matching only
		var updateAttr admission.Attributes
		var updateVersioned *admission.VersionedAttributes
		for _, b := range ap.bindings {
			cp, ok := ap.policies[b.binding.Spec.PolicyName]
			if !ok {
				continue
			}
			attr, versioned := createAttr, createVersioned
			matches, gvr, _, err := policyMatcher.DefinitionMatches(attr, objIfaces, validating.NewValidatingAdmissionPolicyAccessor(cp.policy))
			if err == nil && !matches && c.Live != nil {
				if updates, _, _, _ := policyMatcher.DefinitionMatches(probeUpdate, objIfaces, validating.NewValidatingAdmissionPolicyAccessor(cp.policy)); updates {
					if updateAttr == nil {
						updateAttr, updateVersioned = c.attributesFor(o, c.liveObject(o))
					}
					if updateAttr.GetOperation() == admission.Update {
						attr, versioned = updateAttr, updateVersioned
						matches, gvr, _, err = policyMatcher.DefinitionMatches(attr, objIfaces, validating.NewValidatingAdmissionPolicyAccessor(cp.policy))
					}
				}
			}
			if err != nil || !matches {
				continue
			}
			if matches, err := policyMatcher.BindingMatches(attr, objIfaces, validating.NewValidatingAdmissionPolicyBindingAccessor(b.binding)); err != nil || !matches {
				continue
			}
			var namespace *corev1.Namespace
			if cp.usesNamespaceObject {
				namespace = c.namespaceObject(nsLister, attr.GetNamespace())
			} else if ns := attr.GetNamespace(); ns != "" {
				namespace = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
			}
			params, missing := c.paramsFor(cp.policy, b.binding, attr.GetNamespace())
			if missing != "" {
				if b.binding.Spec.ParamRef != nil && b.binding.Spec.ParamRef.ParameterNotFoundAction != nil && *b.binding.Spec.ParamRef.ParameterNotFoundAction == admissionv1.AllowAction {
					continue
				}
				out = append(out, ap.finding(o, cp, b, missing))
				continue
			}
			if params == nil {
				params = []runtime.Object{nil}
			}
			for _, param := range params {
				res := cp.validator.Validate(ctx, gvr, versioned, param, namespace, celconfig.RuntimeCELCostBudget, nil)
				for _, d := range res.Decisions {
					if d.Action == validating.ActionDeny {
						out = append(out, ap.finding(o, cp, b, d.Message))
					}
				}
			}
		}
	}
	return out
}

func (ap *AdmissionPolicies) finding(o *render.Object, cp *compiledPolicy, b *admissionBinding, msg string) Finding {
	severity := Warning
	for _, a := range b.binding.Spec.ValidationActions {
		if a == admissionv1.Deny {
			severity = Error
		}
	}
	return Finding{Rule: RuleAdmissionPolicy, Severity: severity, Object: o.Ref(), Source: o.Source, File: o.Source.File, Line: o.Source.Line,
		Message: fmt.Sprintf("ValidatingAdmissionPolicy %s (binding %s, %s): %s", cp.policy.Name, b.binding.Name, cp.source, msg),
		Fix:     "change the object to satisfy the policy, or the policy's binding"}
}

// liveObject is the cluster's copy of an object, or nil.
func (c *Context) liveObject(o *render.Object) *unstructured.Unstructured {
	if c.Live == nil {
		return nil
	}
	ns := ""
	if c.namespaced(o) {
		ns = c.namespaceOf(o)
	}
	cur, err := c.Live.Get(o.Object.GetAPIVersion(), o.Object.GetKind(), ns, o.Object.GetName())
	if err != nil {
		return nil
	}
	c.learn(cur)
	return cur
}

// attributesFor describes applying the object as an admission request: a
// create, or an update of old when there is one.
func (c *Context) attributesFor(o *render.Object, old *unstructured.Unstructured) (admission.Attributes, *admission.VersionedAttributes) {
	obj := o.Object.DeepCopy()
	gvk := obj.GroupVersionKind()
	ns := ""
	if c.namespaced(o) {
		ns = c.namespaceOf(o)
		obj.SetNamespace(ns)
	}
	gvr := c.resourceFor(gvk)
	op := admission.Create
	var oldObj runtime.Object
	var opts runtime.Object = &metav1.CreateOptions{}
	if old != nil {
		op, oldObj, opts = admission.Update, old, &metav1.UpdateOptions{}
	}
	attr := admission.NewAttributesRecord(obj, oldObj, gvk, ns, obj.GetName(), gvr, "", op, opts, false, &user.DefaultInfo{Name: "gitk8s"})
	return attr, &admission.VersionedAttributes{Attributes: attr, VersionedKind: gvk, VersionedObject: admission.NewLazyObject(obj), VersionedOldObject: admission.NewLazyObject(oldObj)}
}

// namespaced tells whether an object lives in a namespace: by the cluster's
// discovery when there is one, else by whether it names one.
func (c *Context) namespaced(o *render.Object) bool {
	if m, ok := c.Live.(*LiveTarget); ok {
		gvk := o.Object.GroupVersionKind()
		if mapping, err := m.Target.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err == nil {
			return mapping.Scope.Name() == meta.RESTScopeNameNamespace
		}
	}
	return o.Object.GetNamespace() != "" || !clusterScoped[o.Object.GetKind()]
}

// clusterScoped are the built-in kinds without a namespace.
var clusterScoped = map[string]bool{"Namespace": true, "Node": true, "PersistentVolume": true, "ClusterRole": true, "ClusterRoleBinding": true,
	"StorageClass": true, "CustomResourceDefinition": true, "PriorityClass": true, "IngressClass": true, "ValidatingAdmissionPolicy": true,
	"ValidatingAdmissionPolicyBinding": true, "ValidatingWebhookConfiguration": true, "MutatingWebhookConfiguration": true, "APIService": true, "RuntimeClass": true}

func (c *Context) resourceFor(gvk schema.GroupVersionKind) schema.GroupVersionResource {
	if m, ok := c.Live.(*LiveTarget); ok {
		if mapping, err := m.Target.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err == nil {
			return mapping.Resource
		}
	}
	plural, _ := meta.UnsafeGuessKindToResource(gvk)
	return plural
}

// namespaceLister knows the namespaces the objects use: from the bundle,
// else from the cluster, read only when a namespaceSelector asks, else as
// the API server would make them (with only their kubernetes.io/metadata.name
// label).
func (c *Context) namespaceLister() listersv1.NamespaceLister {
	l := &lazyNamespaces{ctx: c, known: map[string]*corev1.Namespace{}}
	for _, o := range c.Objects {
		if o.Object.GetKind() == "Namespace" {
			var ns corev1.Namespace
			if runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object.Object, &ns) == nil {
				l.add(&ns)
			}
		}
	}
	return l
}

type lazyNamespaces struct {
	ctx   *Context
	mu    sync.Mutex
	known map[string]*corev1.Namespace
}

func (l *lazyNamespaces) add(ns *corev1.Namespace) {
	if ns.Labels == nil {
		ns.Labels = map[string]string{}
	}
	ns.Labels["kubernetes.io/metadata.name"] = ns.Name
	l.known[ns.Name] = ns
}

// Get implements listersv1.NamespaceLister.
func (l *lazyNamespaces) Get(name string) (*corev1.Namespace, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ns, ok := l.known[name]; ok {
		return ns, nil
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if l.ctx.Live != nil {
		if live, err := l.ctx.Live.Get("v1", "Namespace", "", name); err == nil && live != nil {
			_ = runtime.DefaultUnstructuredConverter.FromUnstructured(live.Object, ns)
		}
	}
	l.add(ns)
	return ns, nil
}

// List implements listersv1.NamespaceLister over the namespaces known so far.
func (l *lazyNamespaces) List(selector labels.Selector) ([]*corev1.Namespace, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*corev1.Namespace
	for _, ns := range l.known {
		if selector.Matches(labels.Set(ns.Labels)) {
			out = append(out, ns)
		}
	}
	return out, nil
}

func (c *Context) namespaceObject(l listersv1.NamespaceLister, name string) *corev1.Namespace {
	if name == "" {
		return nil
	}
	ns, err := l.Get(name)
	if err != nil {
		return nil
	}
	return ns
}

// paramsFor finds a binding's params among the bundle's objects, then the
// cluster's. missing says what is missing when the policy needs params and
// none are found.
func (c *Context) paramsFor(p *admissionv1.ValidatingAdmissionPolicy, b *admissionv1.ValidatingAdmissionPolicyBinding, objectNS string) ([]runtime.Object, string) {
	if p.Spec.ParamKind == nil || b.Spec.ParamRef == nil {
		if p.Spec.ParamKind != nil {
			return nil, "the policy needs params and its binding has no paramRef"
		}
		return nil, ""
	}
	kind, apiVersion := p.Spec.ParamKind.Kind, p.Spec.ParamKind.APIVersion
	ref := b.Spec.ParamRef
	ns := ref.Namespace
	if ns == "" && !clusterScoped[kind] {
		ns = objectNS
	}
	var selector labels.Selector = labels.Nothing()
	if ref.Selector != nil {
		s, err := metav1.LabelSelectorAsSelector(ref.Selector)
		if err != nil {
			return nil, fmt.Sprintf("paramRef.selector: %v", err)
		}
		selector = s
	}
	var found []runtime.Object
	for _, o := range c.Objects {
		if o.Object.GetKind() != kind || o.Object.GetAPIVersion() != apiVersion || (ns != "" && c.namespaceOf(o) != ns) {
			continue
		}
		if (ref.Name != "" && o.Object.GetName() == ref.Name) || (ref.Name == "" && selector.Matches(labels.Set(o.Object.GetLabels()))) {
			found = append(found, o.Object)
		}
	}
	if len(found) == 0 && ref.Name != "" && c.Live != nil {
		if live, err := c.Live.Get(apiVersion, kind, ns, ref.Name); err == nil && live != nil {
			c.learn(live)
			found = append(found, live)
		}
	}
	if len(found) == 0 {
		what := ref.Name
		if what == "" {
			what = "matching " + selector.String()
		}
		return nil, fmt.Sprintf("no params: %s %s in %s is in neither the repository nor the cluster", kind, what, strings.TrimSpace(ns+" "))
	}
	sort.SliceStable(found, func(i, j int) bool {
		return found[i].(*unstructured.Unstructured).GetName() < found[j].(*unstructured.Unstructured).GetName()
	})
	return found, ""
}
