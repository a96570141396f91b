package reconcile

import (
	"context"
	"fmt"
	"sort"

	"github.com/gitk8s/gitk8s/internal/apiversions"
	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/cluster"
	"github.com/gitk8s/gitk8s/internal/policy"
	"github.com/gitk8s/gitk8s/internal/render"
)

// Validation is what Validate found.
type Validation struct {
	// Origin and Revision are the snapshot's.
	Origin, Revision string
	// Bundle is what was rendered, hooks included.
	Bundle *render.Bundle
	// Findings are sorted by file and line.
	Findings []policy.Finding
}

// Validate renders the request's snapshot as Run does and makes every
// check Run makes before it writes, without writing or dry-running: API
// versions Kubernetes removed, and the policy gate. With no cluster it
// reads only the snapshot; with clusters it also checks that each serves
// every kind, and runs the gate over each one's live state, prefixing the
// gate's messages with the cluster's name when there are several.
//
// An error means the checks could not be made: the source, the render,
// the gate's configuration, or a cluster that did not answer. Once the
// render succeeded, the Validation is returned with the error, so that
// the driver can say what the render left out.
func Validate(ctx context.Context, req Request) (*Validation, error) {
	snap, bundle, err := renderSnapshot(ctx, req)
	if err != nil {
		return nil, err
	}
	defer snap.Close()
	v := &Validation{Origin: snap.Origin, Revision: snap.Revision, Bundle: bundle}
	gate, err := GateConfig(ctx, req.Settings.Policy, snap, bundle)
	if err != nil {
		return v, err
	}
	findings := removedFindings(bundle.Objects)
	if len(req.Clusters) == 0 && gate != nil {
		findings = append(findings, policy.Evaluate(bundle.Objects, *gate, nil)...)
	}
	for _, c := range req.Clusters {
		if c.Target == nil {
			if c.Unavailable != nil {
				return v, c.Unavailable
			}
			return v, fmt.Errorf("cluster %s could not be reached", c.Name)
		}
		served, err := servedFindings(c.Target, bundle.Objects)
		if err != nil {
			return v, err
		}
		findings = append(findings, served...)
		if gate == nil {
			continue
		}
		namespace := c.Target.Namespace
		if req.Settings.Namespace != "" {
			namespace = req.Settings.Namespace
		}
		pc := &policy.Context{Objects: bundle.Objects, Live: policy.NewLive(ctx, c.Target), DefaultNamespace: namespace}
		for _, f := range policy.EvaluateIn(pc, *gate) {
			if len(req.Clusters) > 1 {
				f.Message = "[" + c.Name + "] " + f.Message
			}
			findings = append(findings, f)
		}
	}
	sort.SliceStable(findings, func(i, j int) bool {
		if findings[i].File != findings[j].File {
			return findings[i].File < findings[j].File
		}
		return findings[i].Line < findings[j].Line
	})
	v.Findings = findings
	return v, nil
}

// removedFindings are the objects whose apiVersion Kubernetes removed,
// each with its replacement, whatever a cluster still serves.
func removedFindings(objects []*render.Object) []policy.Finding {
	var out []policy.Finding
	for _, o := range objects {
		if r, ok := apiversions.Lookup(o.Object.GroupVersionKind()); ok {
			out = append(out, finding(o, "api-removed", r.Message()))
		}
	}
	return out
}

// servedFindings are the objects whose kind the cluster does not serve at
// their apiVersion, by the plan's own check (apply.Unserved). A removed
// version is left to removedFindings, which names its fix.
func servedFindings(t *cluster.Target, objects []*render.Object) ([]policy.Finding, error) {
	unserved, err := apply.Unserved(t, objects)
	if err != nil {
		return nil, err
	}
	var out []policy.Finding
	for _, o := range objects {
		why, ok := unserved[o]
		if _, removed := apiversions.Lookup(o.Object.GroupVersionKind()); !ok || removed {
			continue
		}
		out = append(out, finding(o, "api-not-served", why.Error()))
	}
	return out, nil
}

// finding is an error of this rule about an object.
func finding(o *render.Object, rule, message string) policy.Finding {
	return policy.Finding{Rule: rule, Severity: policy.Error, Source: o.Source, File: o.Source.File, Line: o.Source.Line, Object: o.Ref(), Message: message}
}
