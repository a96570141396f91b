package apply_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/render"
	"github.com/gitk8s/gitk8s/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env, 1) }

// bundleFile is the file the objects of every test come from.
const bundleFile = "bundle.yaml"

// decode turns YAML documents into the objects of a bundle read from bundleFile.
func decode(t *testing.T, docs ...string) []*render.Object {
	t.Helper()
	objs, err := render.Decode(bundleFile, []byte(strings.Join(docs, "---\n")))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return objs
}

// options are the default options with an inventory that lives in the
// test's own namespace.
func options(ns string) apply.Options {
	opts := apply.DefaultOptions()
	opts.Inventory = apply.InventoryOptions{Name: "inventory", Namespace: ns}
	return opts
}

// run applies the objects with a new Manager; per-object failures are left
// to the caller, an error of the whole apply fails the test.
func run(t *testing.T, opts apply.Options, objs []*render.Object) *apply.ChangeSet {
	t.Helper()
	cs, err := apply.NewManager(env.Target(t, ""), opts).Apply(context.Background(), objs)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return cs
}

// mustApply applies the objects and fails the test when any of them fails.
func mustApply(t *testing.T, opts apply.Options, objs []*render.Object) *apply.ChangeSet {
	t.Helper()
	cs := run(t, opts, objs)
	if cs.Failed() {
		t.Fatalf("apply failed: %v (prune refused: %v, blocked: %v)", cs.Errors(), cs.PruneRefused, cs.Blocked)
	}
	return cs
}

// actions maps each entry's Ref to its Action.
func actions(cs *apply.ChangeSet) map[string]apply.Action {
	out := map[string]apply.Action{}
	for _, e := range cs.Entries {
		out[e.Ref] = e.Action
	}
	return out
}

// entry is the entry of the change set for ref; the test fails without one.
func entry(t *testing.T, cs *apply.ChangeSet, ref string) *apply.ChangeSetEntry {
	t.Helper()
	for _, e := range cs.Entries {
		if e.Ref == ref {
			return e
		}
	}
	t.Fatalf("no entry for %s in %v", ref, actions(cs))
	return nil
}

// kube is a typed client whose requests the audit log tells apart from the
// Manager's, which identify as "gitk8s".
func kube(t *testing.T) kubernetes.Interface {
	t.Helper()
	client, err := kubernetes.NewForConfig(otherConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// otherDynamic is kube's dynamic counterpart.
func otherDynamic(t *testing.T) dynamic.Interface {
	t.Helper()
	client, err := dynamic.NewForConfig(otherConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	return client
}

func otherConfig(t *testing.T) *rest.Config {
	cfg := rest.CopyConfig(env.Target(t, "").Config)
	cfg.UserAgent = "apply-test"
	return cfg
}

var (
	configMapsGVR = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	namespacesGVR = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	crdsGVR       = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
)

// live reads an object from the cluster; nil when it does not exist.
func live(t *testing.T, gvr schema.GroupVersionResource, namespace, name string) *unstructured.Unstructured {
	t.Helper()
	var ri dynamic.ResourceInterface = otherDynamic(t).Resource(gvr)
	if namespace != "" {
		ri = otherDynamic(t).Resource(gvr).Namespace(namespace)
	}
	u, err := ri.Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("read %s %s/%s: %v", gvr.Resource, namespace, name, err)
	}
	return u
}

// liveData is a ConfigMap's data as the cluster holds it; nil when the
// ConfigMap does not exist.
func liveData(t *testing.T, namespace, name string) map[string]string {
	t.Helper()
	cm, err := kube(t).CoreV1().ConfigMaps(namespace).Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("read ConfigMap/%s/%s: %v", namespace, name, err)
	}
	if cm.Data == nil {
		return map[string]string{}
	}
	return cm.Data
}

// clusterScoped deletes a cluster-scoped object (a Namespace, a CRD) the
// test may create, once the test ends.
func clusterScoped(t *testing.T, gvr schema.GroupVersionResource, name string) {
	t.Cleanup(func() {
		err := otherDynamic(t).Resource(gvr).Delete(context.Background(), name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete %s %s: %v", gvr.Resource, name, err)
		}
	})
}

// writes are the requests that changed something (not dry-runs) the
// Manager sent since mark, in the order the API server completed them, as
// "resource namespace/name".
func writes(t *testing.T, mark testenv.AuditMark) []string {
	t.Helper()
	var out []string
	for _, ev := range mark.Requests(t, "gitk8s") {
		switch ev.Verb {
		case "create", "update", "patch", "delete":
		default:
			continue
		}
		if strings.Contains(ev.RequestURI, "dryRun=") {
			continue
		}
		out = append(out, ev.ObjectRef.Resource+" "+ev.ObjectRef.Namespace+"/"+ev.ObjectRef.Name)
	}
	return out
}

// dryRuns are the dry-run requests the Manager sent since mark into namespace.
func dryRuns(t *testing.T, mark testenv.AuditMark, namespace string) []string {
	t.Helper()
	var out []string
	for _, ev := range mark.Requests(t, "gitk8s") {
		if ev.ObjectRef.Namespace == namespace && strings.Contains(ev.RequestURI, "dryRun=") {
			out = append(out, ev.Verb+" "+ev.ObjectRef.Resource+"/"+ev.ObjectRef.Name)
		}
	}
	return out
}

func configMap(ns, name, value string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s, namespace: %s}\ndata: {value: %q}\n", name, ns, value)
}

// withAnnotation adds an annotation to the metadata of a document written as
// "metadata: {…}".
func withAnnotation(doc, key, value string) string {
	return strings.Replace(doc, "metadata: {", fmt.Sprintf("metadata: {annotations: {%s: %q}, ", key, value), 1)
}
