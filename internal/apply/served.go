package apply

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/gitk8s/gitk8s/internal/cluster"
	"github.com/gitk8s/gitk8s/internal/render"
)

// Unserved finds the objects whose kind the cluster does not serve at
// their apiVersion and no CRD among the objects defines, and says why, in
// the words a plan refuses them with. It is the one served-kind check:
// the plan runs it per object, validate runs it over a bundle.
func Unserved(t *cluster.Target, objects []*render.Object) (map[*render.Object]error, error) {
	if _, err := t.Discovery.ServerVersion(); err != nil {
		return nil, fmt.Errorf("cluster %s (%s) unreachable: %w", t.Name, t.Server, err)
	}
	m := &Manager{target: t}
	crds := bundleCRDs(objects)
	out := map[*render.Object]error{}
	for _, o := range objects {
		gvk := o.Object.GroupVersionKind()
		_, err := t.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		switch {
		case err == nil:
		case meta.IsNoMatchError(err):
			if _, defined := crds[gvk.GroupKind()]; !defined {
				out[o] = m.unknownKind(gvk)
			}
		default:
			return nil, fmt.Errorf("cluster %s: map %s: %w", t.Name, gvk, err)
		}
	}
	return out, nil
}
