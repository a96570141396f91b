package federation

import (
	"fmt"
	"sort"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/gitk8s/gitk8s/internal/render"
)

// preference is one cluster's entry of a ReplicaSchedulingPreference.
type preference struct {
	name     string
	min, max int64 // max < 0: unbounded
	weight   int64
}

func targetKindOf(rsp *render.Object) string {
	k, _, _ := unstructured.NestedString(rsp.Object.Object, "spec", "targetKind")
	return k
}

// planReplicas splits spec.totalReplicas over the Ready clusters among
// candidates, as KubeFed's scheduler does: every cluster first gets its
// minReplicas (in name order while replicas last), then the rest is shared
// in proportion to weight, never above maxReplicas; what integer division
// leaves is handed out one by one, heavier clusters first, then by name.
// A cluster without an entry of its own uses the "*" entry; without either
// it gets none. Clusters that are not Ready get none, so their share moves
// to the others.
func planReplicas(rsp *render.Object, candidates []Cluster) (map[string]int64, error) {
	obj := rsp.Object.Object
	total, found, err := unstructured.NestedInt64(obj, "spec", "totalReplicas")
	if err != nil || !found || total < 0 {
		return nil, &render.Error{Source: rsp.Source, Object: rsp.Ref(), Err: fmt.Errorf("spec.totalReplicas must be a whole number ≥ 0")}
	}
	prefs, _, err := unstructured.NestedMap(obj, "spec", "clusters")
	if err != nil {
		return nil, &render.Error{Source: rsp.Source, Object: rsp.Ref(), Err: fmt.Errorf("spec.clusters: %w", err)}
	}
	entry := func(name string) (preference, bool, error) {
		raw, ok := prefs[name]
		if !ok {
			raw, ok = prefs["*"]
		}
		if !ok {
			return preference{}, false, nil
		}
		m, _ := raw.(map[string]any)
		p := preference{name: name, max: -1}
		var err error
		get := func(field string, into *int64) {
			if v, ok := m[field]; ok && err == nil {
				n, isInt := v.(int64)
				if !isInt || n < 0 {
					err = fmt.Errorf("spec.clusters[%s].%s must be a whole number ≥ 0", name, field)
					return
				}
				*into = n
			}
		}
		get("minReplicas", &p.min)
		get("maxReplicas", &p.max)
		get("weight", &p.weight)
		if err == nil && p.max >= 0 && p.min > p.max {
			err = fmt.Errorf("spec.clusters[%s]: minReplicas %d is above maxReplicas %d", name, p.min, p.max)
		}
		return p, true, err
	}

	plan := map[string]int64{}
	var eligible []preference
	for _, c := range candidates {
		plan[c.Name] = 0
		if !c.Ready {
			continue
		}
		p, ok, err := entry(c.Name)
		if err != nil {
			return nil, &render.Error{Source: rsp.Source, Object: rsp.Ref(), Err: err}
		}
		if ok {
			eligible = append(eligible, p)
		}
	}
	sort.Slice(eligible, func(i, j int) bool { return eligible[i].name < eligible[j].name })

	remaining := total
	for _, p := range eligible {
		n := min(p.min, remaining)
		plan[p.name] = n
		remaining -= n
	}
	room := func(p preference) int64 {
		if p.max < 0 {
			return remaining
		}
		return p.max - plan[p.name]
	}
	for remaining > 0 {
		var growing []preference
		var weights int64
		for _, p := range eligible {
			if p.weight > 0 && room(p) > 0 {
				growing = append(growing, p)
				weights += p.weight
			}
		}
		if len(growing) == 0 {
			break // every cluster is full: the rest stays unplaced, as in KubeFed
		}
		start := remaining
		for _, p := range growing {
			n := min(start*p.weight/weights, room(p))
			plan[p.name] += n
			remaining -= n
		}
		sort.SliceStable(growing, func(i, j int) bool {
			if growing[i].weight != growing[j].weight {
				return growing[i].weight > growing[j].weight
			}
			return growing[i].name < growing[j].name
		})
		for _, p := range growing {
			if remaining == 0 {
				break
			}
			if room(p) > 0 {
				plan[p.name]++
				remaining--
			}
		}
	}
	return plan, nil
}
