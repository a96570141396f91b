package cluster

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"k8s.io/client-go/discovery"
)

// Capabilities are what a Helm chart may ask of the cluster it is rendered
// for, as helm install sees them: the API server's version and the API
// versions it serves, each as group/version and as group/version/Kind.
type Capabilities struct {
	KubeVersion string
	APIVersions []string
}

// CapabilitiesOf reads the cluster's capabilities through its cached
// discovery. A group whose discovery fails is left out, as Helm leaves it
// out.
func CapabilitiesOf(ctx context.Context, t *Target) (Capabilities, error) {
	if err := ctx.Err(); err != nil {
		return Capabilities{}, err
	}
	v, err := t.Discovery.ServerVersion()
	if err != nil {
		return Capabilities{}, fmt.Errorf("cluster %s: reading its version: %w", t.Name, err)
	}
	_, lists, err := t.Discovery.ServerGroupsAndResources()
	if err != nil && !discovery.IsGroupDiscoveryFailedError(err) {
		return Capabilities{}, fmt.Errorf("cluster %s: reading the API versions it serves: %w", t.Name, err)
	}
	seen := map[string]bool{}
	for _, list := range lists {
		if list == nil {
			continue
		}
		seen[list.GroupVersion] = true
		for _, r := range list.APIResources {
			if !strings.Contains(r.Name, "/") && r.Kind != "" {
				seen[list.GroupVersion+"/"+r.Kind] = true
			}
		}
	}
	caps := Capabilities{KubeVersion: v.GitVersion}
	for gv := range seen {
		caps.APIVersions = append(caps.APIVersions, gv)
	}
	sort.Strings(caps.APIVersions)
	return caps, nil
}
