package apiversions

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Change is what Migrate did, or could not do, to one object.
type Change struct {
	// Line is where the object starts in the file.
	Line int
	// Object names it: Kind/name.
	Object string
	// From and To are the API versions; To is empty when nothing was rewritten.
	From, To string
	// Done lists the rewrites beyond apiVersion.
	Done []string
	// Human lists what needs a person's decision.
	Human []string
}

// Migrate rewrites the objects of one YAML file that use removed API
// versions to their replacements, where the conversion is mechanical, and
// reports each object it touched or could not. Comments and key order are
// kept; indentation becomes two spaces. A file with nothing to migrate is
// returned unchanged (the same bytes).
func Migrate(data []byte) ([]byte, []Change, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*yaml.Node
	var changes []Change
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		docs = append(docs, &doc)
		if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
			continue
		}
		if c, ok := migrateObject(doc.Content[0]); ok {
			changes = append(changes, c)
		}
	}
	rewritten := false
	for _, c := range changes {
		if c.To != "" {
			rewritten = true
		}
	}
	if !rewritten {
		return data, changes, nil
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	for _, doc := range docs {
		if err := enc.Encode(doc); err != nil {
			return nil, nil, err
		}
	}
	if err := enc.Close(); err != nil {
		return nil, nil, err
	}
	return out.Bytes(), changes, nil
}

// migrateObject rewrites one object in place when its version was removed.
func migrateObject(obj *yaml.Node) (Change, bool) {
	apiVersion, kind := scalar(obj, "apiVersion"), scalar(obj, "kind")
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return Change{}, false
	}
	r, ok := Lookup(gv.WithKind(kind))
	if !ok {
		return Change{}, false
	}
	name := ""
	if md := get(obj, "metadata"); md != nil {
		name = scalar(md, "name")
	}
	c := Change{Line: obj.Line, Object: kind + "/" + name, From: apiVersion}
	if r.To == "" {
		c.Human = append(c.Human, r.Message())
		return c, true
	}
	switch {
	case r.Needs == needsSelector:
		migrateWorkload(obj, &c)
	case r.Needs == needsIngressV1:
		migrateIngress(obj, &c)
	case r.Needs == needsHPAv2:
		migrateHPA(obj, &c)
	case r.Needs != "":
		// Not mechanical: leave the object for a person.
		c.Human = append(c.Human, fmt.Sprintf("%s: %s", r.To, r.Needs))
		return c, true
	}
	set(obj, "apiVersion", &yaml.Node{Kind: yaml.ScalarNode, Value: r.To})
	c.To = r.To
	return c, true
}

// migrateWorkload gives Deployments, DaemonSets, ReplicaSets and
// StatefulSets the selector the old versions defaulted.
func migrateWorkload(obj *yaml.Node, c *Change) {
	spec := get(obj, "spec")
	if spec == nil {
		c.Human = append(c.Human, "no spec: cannot add spec.selector")
		return
	}
	for _, gone := range []string{"rollbackTo", "templateGeneration"} {
		if remove(spec, gone) {
			c.Done = append(c.Done, "removed spec."+gone+", which apps/v1 does not have")
		}
	}
	if get(spec, "selector") != nil {
		return
	}
	labels := get(get(get(spec, "template"), "metadata"), "labels")
	if labels == nil || labels.Kind != yaml.MappingNode || len(labels.Content) == 0 {
		c.Human = append(c.Human, "spec.selector is required and the pod template has no labels to take it from")
		return
	}
	selector := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
		{Kind: yaml.ScalarNode, Value: "matchLabels"}, deepCopy(labels),
	}}
	insertBefore(spec, "template", "selector", selector)
	c.Done = append(c.Done, "added spec.selector.matchLabels from the pod template's labels")
}

// migrateIngress moves to networking.k8s.io/v1 backends and path types.
func migrateIngress(obj *yaml.Node, c *Change) {
	spec := get(obj, "spec")
	if spec == nil {
		return
	}
	if rename(spec, "backend", "defaultBackend") {
		c.Done = append(c.Done, "spec.backend became spec.defaultBackend")
		convertBackend(get(spec, "defaultBackend"), c)
	}
	rules := get(spec, "rules")
	if rules == nil {
		return
	}
	guessed := false
	for _, rule := range rules.Content {
		paths := get(get(rule, "http"), "paths")
		if paths == nil {
			continue
		}
		for _, p := range paths.Content {
			convertBackend(get(p, "backend"), c)
			if get(p, "pathType") == nil {
				insertBefore(p, "backend", "pathType", &yaml.Node{Kind: yaml.ScalarNode, Value: "ImplementationSpecific"})
				guessed = true
			}
		}
	}
	if guessed {
		c.Done = append(c.Done, "set pathType: ImplementationSpecific where it was missing")
		c.Human = append(c.Human, "pathType ImplementationSpecific keeps the controller's old behaviour; Prefix or Exact is usually what is meant")
	}
}

func convertBackend(b *yaml.Node, c *Change) {
	if b == nil || get(b, "serviceName") == nil {
		return
	}
	svc := get(b, "serviceName")
	port := get(b, "servicePort")
	portNode := &yaml.Node{Kind: yaml.MappingNode}
	if port != nil {
		if _, err := strconv.Atoi(port.Value); err == nil {
			portNode.Content = []*yaml.Node{{Kind: yaml.ScalarNode, Value: "number"}, {Kind: yaml.ScalarNode, Tag: "!!int", Value: port.Value}}
		} else {
			portNode.Content = []*yaml.Node{{Kind: yaml.ScalarNode, Value: "name"}, {Kind: yaml.ScalarNode, Value: port.Value}}
		}
	}
	service := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
		{Kind: yaml.ScalarNode, Value: "name"}, svc,
		{Kind: yaml.ScalarNode, Value: "port"}, portNode,
	}}
	remove(b, "serviceName")
	remove(b, "servicePort")
	set(b, "service", service)
	c.Done = appendOnce(c.Done, "backends became service: {name, port}")
}

// migrateHPA moves autoscaling/v2beta1 metrics to the autoscaling/v2 shape.
func migrateHPA(obj *yaml.Node, c *Change) {
	metrics := get(get(obj, "spec"), "metrics")
	if metrics == nil {
		return
	}
	for _, m := range metrics.Content {
		kind := strings.ToLower(scalar(m, "type"))
		src := get(m, map[string]string{"resource": "resource", "pods": "pods", "object": "object", "external": "external", "containerresource": "containerResource"}[kind])
		if src == nil {
			continue
		}
		target := &yaml.Node{Kind: yaml.MappingNode}
		for _, pair := range [][2]string{{"targetAverageUtilization", "Utilization"}, {"targetAverageValue", "AverageValue"}, {"targetValue", "Value"}, {"averageValue", "AverageValue"}} {
			v := get(src, pair[0])
			if v == nil {
				continue
			}
			field := map[string]string{"Utilization": "averageUtilization", "AverageValue": "averageValue", "Value": "value"}[pair[1]]
			target.Content = []*yaml.Node{
				{Kind: yaml.ScalarNode, Value: "type"}, {Kind: yaml.ScalarNode, Value: pair[1]},
				{Kind: yaml.ScalarNode, Value: field}, v,
			}
			remove(src, pair[0])
		}
		if kind == "object" && rename(src, "target", "describedObject") {
			c.Done = appendOnce(c.Done, "object metrics: target became describedObject")
		}
		if name := get(src, "metricName"); name != nil {
			metric := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: "name"}, name}}
			for _, sel := range []string{"selector", "metricSelector"} {
				if s := get(src, sel); s != nil {
					metric.Content = append(metric.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: "selector"}, s)
					remove(src, sel)
				}
			}
			remove(src, "metricName")
			set(src, "metric", metric)
			c.Done = appendOnce(c.Done, "metricName and its selector became metric: {name, selector}")
		}
		if len(target.Content) > 0 {
			set(src, "target", target)
			c.Done = appendOnce(c.Done, "metric targets became target: {type, …}")
		}
	}
}

// YAML node helpers for mappings.

func get(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func scalar(m *yaml.Node, key string) string {
	if v := get(m, key); v != nil && v.Kind == yaml.ScalarNode {
		return v.Value
	}
	return ""
}

func set(m *yaml.Node, key string, value *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			value.HeadComment, value.LineComment = m.Content[i+1].HeadComment, m.Content[i+1].LineComment
			m.Content[i+1] = value
			return
		}
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, value)
}

func remove(m *yaml.Node, key string) bool {
	if m == nil {
		return false
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content = append(m.Content[:i], m.Content[i+2:]...)
			return true
		}
	}
	return false
}

func rename(m *yaml.Node, from, to string) bool {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == from {
			m.Content[i].Value = to
			return true
		}
	}
	return false
}

// insertBefore adds key: value before the key named before, or at the end.
func insertBefore(m *yaml.Node, before, key string, value *yaml.Node) {
	pair := []*yaml.Node{{Kind: yaml.ScalarNode, Value: key}, value}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == before {
			m.Content = append(m.Content[:i], append(pair, m.Content[i:]...)...)
			return
		}
	}
	m.Content = append(m.Content, pair...)
}

func deepCopy(n *yaml.Node) *yaml.Node {
	c := *n
	c.Content = nil
	for _, child := range n.Content {
		c.Content = append(c.Content, deepCopy(child))
	}
	c.HeadComment, c.LineComment, c.FootComment = "", "", ""
	return &c
}

func appendOnce(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}
