package apply_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/gitk8s/gitk8s/internal/apply"
)

// TestInventory: the ApplySet parent is a Secret labelled and annotated as
// KEP-3659 says, every member carries the part-of label, and a prune
// narrows the parent to what is left.
func TestInventory(t *testing.T) {
	ns, other := env.Namespace(t), env.Namespace(t)
	role := ns + "-reader"
	clusterScoped(t, schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"}, role)
	objs := decode(t,
		configMap(ns, "settings", "v"),
		fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: %s}\nspec: {ports: [{port: 80}]}\n", other),
		fmt.Sprintf("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: %s}\nrules: [{apiGroups: [\"\"], resources: [configmaps], verbs: [get]}]\n", role),
	)
	opts := options(ns)
	cs := mustApply(t, opts, objs)

	// KEP-3659: the id of a Secret parent is
	// applyset-<base64url(sha256(<name>.<namespace>.Secret.))>-v1.
	sum := sha256.Sum256([]byte("inventory." + ns + ".Secret."))
	id := "applyset-" + base64.RawURLEncoding.EncodeToString(sum[:]) + "-v1"
	if cs.InventoryID != id || apply.ApplySetID("inventory", ns) != id {
		t.Errorf("inventory id %q (ApplySetID %q), want %q", cs.InventoryID, apply.ApplySetID("inventory", ns), id)
	}
	ctx := context.Background()
	client := kube(t)
	parent, err := client.CoreV1().Secrets(ns).Get(ctx, "inventory", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("no parent Secret: %v", err)
	}
	if got := parent.Labels[apply.LabelApplySetID]; got != id {
		t.Errorf("parent label %s=%q, want %q", apply.LabelApplySetID, got, id)
	}
	wantAnnotations := map[string]string{
		apply.AnnotationTooling:              apply.Tooling,
		apply.AnnotationContainsGroupKinds:   "ClusterRole.rbac.authorization.k8s.io,ConfigMap,Service",
		apply.AnnotationAdditionalNamespaces: other,
	}
	gotAnnotations := map[string]string{}
	for k := range wantAnnotations {
		gotAnnotations[k] = parent.Annotations[k]
	}
	if d := cmp.Diff(wantAnnotations, gotAnnotations); d != "" {
		t.Errorf("parent annotations (-want +got):\n%s", d)
	}
	if _, ok := parent.Labels[apply.LabelPartOf]; ok {
		t.Errorf("the parent is labelled a member of itself")
	}

	// Members are found the way kubectl finds them: by label.
	selector := metav1.ListOptions{LabelSelector: apply.LabelPartOf + "=" + id}
	var members []string
	cms, err := client.CoreV1().ConfigMaps("").List(ctx, selector)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range cms.Items {
		members = append(members, "ConfigMap/"+o.Namespace+"/"+o.Name)
	}
	svcs, err := client.CoreV1().Services("").List(ctx, selector)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range svcs.Items {
		members = append(members, "Service/"+o.Namespace+"/"+o.Name)
	}
	roles, err := client.RbacV1().ClusterRoles().List(ctx, selector)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range roles.Items {
		members = append(members, "ClusterRole/"+o.Name)
	}
	sort.Strings(members)
	want := []string{"ClusterRole/" + role, "ConfigMap/" + ns + "/settings", "Service/" + other + "/web"}
	if d := cmp.Diff(want, members); d != "" {
		t.Errorf("members by label (-want +got):\n%s", d)
	}

	// Pruning the members in the other namespace and of the other kinds
	// leaves only ConfigMaps in the parent's own namespace.
	opts.Prune = true
	opts.MaxPruneShare = 1
	cs = mustApply(t, opts, decode(t, configMap(ns, "settings", "v")))
	if d := cmp.Diff(map[string]apply.Action{
		"ConfigMap/" + ns + "/settings": apply.Unchanged,
		"Service/" + other + "/web":     apply.Pruned,
		"ClusterRole/" + role:           apply.Pruned,
	}, actions(cs)); d != "" {
		t.Errorf("prune (-want +got):\n%s", d)
	}
	parent, err = client.CoreV1().Secrets(ns).Get(ctx, "inventory", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := parent.Annotations[apply.AnnotationContainsGroupKinds]; got != "ConfigMap" {
		t.Errorf("contains-group-kinds after the prune: %q, want ConfigMap", got)
	}
	if got := parent.Annotations[apply.AnnotationAdditionalNamespaces]; got != "" {
		t.Errorf("additional-namespaces after the prune: %q, want none", got)
	}
}
