// Package policy checks rendered objects before anything is applied: quota
// fit, RBAC, probes and secrets, each rule with an id and a default
// severity. An error finding blocks a sync; a warning is reported.
//
// Rules read objects and, when a cluster is reachable, what the cluster
// already holds (Live); they never write. No finding ever quotes a Secret's
// value.
//
//	findings := policy.Evaluate(bundle.Objects, policy.Config{}, nil)
//	if policy.Blocking(findings) { … }
package policy

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/gitk8s/gitk8s/internal/diff"
	"github.com/gitk8s/gitk8s/internal/render"
)

// Severity of a finding.
type Severity string

// Severities. Error blocks; Warning is reported.
const (
	Error   Severity = "error"
	Warning Severity = "warning"
)

// Mode is what a rule does in a sync: enforce (its default severity), warn
// (always a warning), or off.
type Mode string

// Modes.
const (
	Enforce Mode = "enforce"
	Warn    Mode = "warn"
	Off     Mode = "off"
)

// Finding is one rule's verdict on one object.
type Finding struct {
	Rule     string   `json:"rule"`
	Severity Severity `json:"severity"`
	// Object names it: Kind/namespace/name.
	Object string        `json:"object"`
	Source render.Source `json:"-"`
	File   string        `json:"file"`
	Line   int           `json:"line,omitempty"`
	// Message says what is wrong; Fix how to make it right.
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
}

// Rule is one built-in check.
type Rule struct {
	ID       string
	Severity Severity
	// Summary is one line for documentation and SARIF.
	Summary string
	check   func(*Context) []Finding
}

// Rules returns the built-in rules in id order.
func Rules() []Rule {
	out := append([]Rule(nil), builtin...)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Annotations that control policies per object.
const (
	// AnnotationSkip lists rule ids the object is exempt from.
	AnnotationSkip = "policy.gitk8s.io/skip"
	// AnnotationSkipReason must say why; a skip without a reason is ignored
	// and reported.
	AnnotationSkipReason = "policy.gitk8s.io/skip-reason"
)

// Config tunes a run.
type Config struct {
	// Modes overrides rules by id.
	Modes map[string]Mode
	// ExcludeNamespaces are not checked.
	ExcludeNamespaces []string
	// Admission are ValidatingAdmissionPolicies to evaluate offline (rule
	// ids admission-policy and admission-policy-invalid).
	Admission *AdmissionPolicies
}

// Live is what the cluster already holds, for rules that need it. Nil
// means offline: rules use only the bundle.
type Live interface {
	// Quotas returns the ResourceQuotas of a namespace, with status.used.
	Quotas(namespace string) ([]*unstructured.Unstructured, error)
	// LimitRanges returns the LimitRanges of a namespace.
	LimitRanges(namespace string) ([]*unstructured.Unstructured, error)
	// Get returns one object, or nil when it does not exist.
	Get(apiVersion, kind, namespace, name string) (*unstructured.Unstructured, error)
}

// Context is what a rule sees.
type Context struct {
	Objects []*render.Object
	Live    Live
	// DefaultNamespace is where objects without a namespace go.
	DefaultNamespace string

	indexOnce sync.Once
	nsOf      map[*render.Object]string
	byNS      map[string][]*render.Object
	// masker, when set, learns every live object an admission policy
	// sees (oldObject, params), whose values its messages may quote.
	masker *diff.Masker
}

// learn makes the Context's Masker know the values of a live object.
func (c *Context) learn(u *unstructured.Unstructured) {
	if c.masker != nil && u != nil {
		c.masker.Learn(u)
	}
}

func (c *Context) index() {
	c.indexOnce.Do(func() {
		c.nsOf = make(map[*render.Object]string, len(c.Objects))
		c.byNS = map[string][]*render.Object{}
		for _, o := range c.Objects {
			ns := o.Object.GetNamespace()
			if ns == "" {
				ns = c.DefaultNamespace
				if ns == "" {
					ns = "default"
				}
			}
			c.nsOf[o] = ns
			c.byNS[ns] = append(c.byNS[ns], o)
		}
	})
}

// namespaceOf is an object's namespace, defaulted.
func (c *Context) namespaceOf(o *render.Object) string {
	c.index()
	if ns, ok := c.nsOf[o]; ok {
		return ns
	}
	if ns := o.Object.GetNamespace(); ns != "" {
		return ns
	}
	if c.DefaultNamespace != "" {
		return c.DefaultNamespace
	}
	return "default"
}

// objectsIn returns the objects whose (defaulted) namespace is ns,
// cluster-scoped ones included under the default namespace's name.
func (c *Context) objectsIn(ns string) []*render.Object {
	c.index()
	return c.byNS[ns]
}

// find returns the bundle's object of a kind and name.
func (c *Context) find(kind, namespace, name string) *render.Object {
	for _, o := range c.Objects {
		if o.Object.GetKind() == kind && o.Object.GetName() == name && (namespace == "" || c.namespaceOf(o) == namespace) {
			return o
		}
	}
	return nil
}

// Evaluate runs every rule that is not off and returns the findings in file
// order, with skips and modes applied.
func Evaluate(objects []*render.Object, cfg Config, live Live) []Finding {
	return EvaluateIn(&Context{Objects: objects, Live: live}, cfg)
}

// EvaluateIn runs the rules on a prepared Context.
func EvaluateIn(ctx *Context, cfg Config) []Finding {
	excluded := map[string]bool{}
	for _, ns := range cfg.ExcludeNamespaces {
		excluded[ns] = true
	}
	kept := map[string]bool{}
	for _, o := range ctx.Objects {
		if o.Object.GetNamespace() != "" && excluded[o.Object.GetNamespace()] {
			continue
		}
		kept[objectKey(o.Source, o.Ref())] = true
	}
	all := &Context{Objects: ctx.Objects, Live: ctx.Live, DefaultNamespace: ctx.DefaultNamespace}
	var out []Finding
	for _, r := range builtin {
		mode := cfg.Modes[r.ID]
		if mode == Off {
			continue
		}
		for _, f := range r.check(all) {
			if !kept[objectKey(f.Source, f.Object)] {
				continue
			}
			f.Rule = r.ID
			f.Severity = r.Severity
			if mode == Warn {
				f.Severity = Warning
			}
			f.File, f.Line = f.Source.File, f.Source.Line
			out = append(out, f)
		}
	}
	if cfg.Admission != nil && cfg.Modes[RuleAdmissionPolicy] != Off {
		// An admission policy's messageExpression may quote any field of
		// the object, of the live object it replaces or of its params,
		// Secret values included: messages are masked like diffs are,
		// once every object the policies saw is known.
		masker := diff.NewMasker()
		for _, o := range ctx.Objects {
			masker.Learn(o.Object)
		}
		all.masker = masker
		for _, f := range cfg.Admission.Evaluate(context.Background(), all) {
			f.Message = masker.Redact(f.Message)
			if f.Rule == RuleAdmissionPolicy && !kept[objectKey(f.Source, f.Object)] {
				continue
			}
			switch cfg.Modes[f.Rule] {
			case Off:
				continue
			case Warn:
				f.Severity = Warning
			}
			out = append(out, f)
		}
	}
	out = applySkips(ctx.Objects, out)
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].File != out[j].File {
			return out[i].File < out[j].File
		}
		if out[i].Line != out[j].Line {
			return out[i].Line < out[j].Line
		}
		return out[i].Rule < out[j].Rule
	})
	return out
}

func objectKey(src render.Source, ref string) string {
	return src.String() + "|" + ref
}

// applySkips drops findings an object skips with a reason, and reports
// skips without one.
func applySkips(objects []*render.Object, findings []Finding) []Finding {
	skips := map[string]map[string]bool{}
	var out []Finding
	for _, o := range objects {
		ann := o.Object.GetAnnotations()
		list, ok := ann[AnnotationSkip]
		if !ok {
			continue
		}
		if strings.TrimSpace(ann[AnnotationSkipReason]) == "" {
			out = append(out, Finding{Rule: "policy-skip-reason", Severity: Error, Object: o.Ref(), Source: o.Source, File: o.Source.File, Line: o.Source.Line,
				Message: fmt.Sprintf("%s is set but %s is missing, so nothing is skipped", AnnotationSkip, AnnotationSkipReason),
				Fix:     fmt.Sprintf("say why in %s, or remove %s", AnnotationSkipReason, AnnotationSkip)})
			continue
		}
		set := map[string]bool{}
		for _, id := range strings.Split(list, ",") {
			set[strings.TrimSpace(id)] = true
		}
		skips[o.Source.String()+"|"+o.Ref()] = set
	}
	for _, f := range findings {
		if skips[f.Source.String()+"|"+f.Object][f.Rule] {
			continue
		}
		out = append(out, f)
	}
	return out
}

// Blocking reports whether any finding is an error.
func Blocking(findings []Finding) bool {
	for _, f := range findings {
		if f.Severity == Error {
			return true
		}
	}
	return false
}

// finding makes a finding about an object.
func finding(o *render.Object, msg, fix string) Finding {
	return Finding{Object: o.Ref(), Source: o.Source, Message: msg, Fix: fix}
}

var builtin []Rule

func register(id string, sev Severity, summary string, check func(*Context) []Finding) {
	builtin = append(builtin, Rule{ID: id, Severity: sev, Summary: summary, check: check})
}
