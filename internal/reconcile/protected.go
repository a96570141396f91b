package reconcile

import (
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/render"
)

// Protected is an object no repository may write: a credential gitk8s
// reads, a sync's inventory, the daemon's own state. The drivers name
// them; the engine refuses a bundle that holds one before anything is
// written.
type Protected struct {
	Group, Kind, Namespace, Name string
	// Why says whose it is, for the error.
	Why string
}

// ProtectedNamespace protects every object in a namespace (the daemon's
// own: its configuration, Deployment, credentials); objects named there
// on their own say why first.
func ProtectedNamespace(namespace, why string) Protected {
	return Protected{Namespace: namespace, Why: why}
}

// ProtectedSecret is a protected Secret.
func ProtectedSecret(namespace, name, why string) Protected {
	return Protected{Kind: "Secret", Namespace: namespace, Name: name, Why: why}
}

// refuseProtected returns an error naming every object of the bundle that
// is protected, or is an ApplySet parent (which would let a repository
// change what another sync owns), or nil. defaultNamespace is where an
// object without a namespace goes.
func refuseProtected(objects []*render.Object, protected []Protected, defaultNamespace string) error {
	byKey := map[string]Protected{}
	byNamespace := map[string]Protected{}
	for _, p := range protected {
		if p.Kind == "" && p.Name == "" {
			byNamespace[p.Namespace] = p
			continue
		}
		byKey[schema.GroupKind{Group: p.Group, Kind: p.Kind}.String()+"/"+p.Namespace+"/"+p.Name] = p
	}
	var msgs []string
	for _, o := range objects {
		ns := o.Object.GetNamespace()
		if ns == "" {
			ns = defaultNamespace
		}
		key := o.Object.GroupVersionKind().GroupKind().String() + "/" + ns + "/" + o.Object.GetName()
		if p, ok := byKey[key]; ok {
			msgs = append(msgs, fmt.Sprintf("%s: %s: %s; a repository cannot write it", o.Source, render.Ref(o.Object.GroupVersionKind().GroupKind(), ns, o.Object.GetName()), p.Why))
			continue
		}
		if p, ok := byNamespace[ns]; ok && o.Object.GetNamespace() != "" {
			msgs = append(msgs, fmt.Sprintf("%s: %s: in %s, %s; a repository cannot write there", o.Source, render.Ref(o.Object.GroupVersionKind().GroupKind(), ns, o.Object.GetName()), ns, p.Why))
			continue
		}
		if _, parent := o.Object.GetLabels()[apply.LabelApplySetID]; parent {
			msgs = append(msgs, fmt.Sprintf("%s: %s: labelled %s, an ApplySet parent (an inventory of gitk8s or kubectl); a repository cannot write one, gitk8s writes its own", o.Source, o.Ref(), apply.LabelApplySetID))
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	sort.Strings(msgs)
	return fmt.Errorf("%s", strings.Join(msgs, "; "))
}
