package cluster

import (
	"fmt"
	"os"
	"sort"

	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// Spec describes one cluster of a clusters file or daemon configuration.
type Spec struct {
	// Name is how syncs and federation placements refer to the cluster.
	Name string `json:"name"`
	// Context is the kubeconfig context (default: Name).
	Context string `json:"context,omitempty"`
	// Kubeconfig is the kubeconfig file (default: the usual rules).
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// Labels select the cluster in placements and selectors.
	Labels map[string]string `json:"labels,omitempty"`
}

// File is a clusters file:
//
//	clusters:
//	- name: eu-1
//	  context: kind-eu-1
//	  labels: {region: eu}
type File struct {
	Clusters []Spec `json:"clusters"`
}

// ReadFile reads and checks a clusters file.
func ReadFile(path string) ([]Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f File
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	seen := map[string]bool{}
	for i, c := range f.Clusters {
		if c.Name == "" {
			return nil, fmt.Errorf("%s: clusters[%d]: name is required", path, i)
		}
		if seen[c.Name] {
			return nil, fmt.Errorf("%s: cluster %s is listed twice", path, c.Name)
		}
		seen[c.Name] = true
		if f.Clusters[i].Context == "" {
			f.Clusters[i].Context = c.Name
		}
	}
	return f.Clusters, nil
}

// Select keeps the clusters whose labels match selector ("" keeps all).
func Select(specs []Spec, selector string) ([]Spec, error) {
	if selector == "" {
		return specs, nil
	}
	sel, err := labels.Parse(selector)
	if err != nil {
		return nil, fmt.Errorf("cluster selector %q: %w", selector, err)
	}
	var out []Spec
	for _, s := range specs {
		if sel.Matches(labels.Set(s.Labels)) {
			out = append(out, s)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	if len(out) == 0 {
		return nil, fmt.Errorf("cluster selector %q matches no cluster", selector)
	}
	return out, nil
}

// FromSpec makes a Target for a Spec, named after it.
func FromSpec(opts Options, s Spec) (*Target, error) {
	if s.Kubeconfig != "" {
		opts.Kubeconfig = s.Kubeconfig
	}
	t, err := FromKubeconfig(opts, s.Context)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", s.Name, err)
	}
	t.Name = s.Name
	t.Labels = s.Labels
	return t, nil
}
