package apply_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/gitk8s/gitk8s/internal/apply"
)

// appliedBy reports whether the field manager applied (server-side) the object.
func appliedBy(fields []metav1.ManagedFieldsEntry, manager string) bool {
	for _, f := range fields {
		if f.Manager == manager && f.Operation == metav1.ManagedFieldsOperationApply {
			return true
		}
	}
	return false
}

// TestApplyCreatesThenUnchanged: a first apply creates every object with
// server-side apply; a second one finds nothing to do and writes nothing.
func TestApplyCreatesThenUnchanged(t *testing.T) {
	ns := env.Namespace(t)
	objs := decode(t,
		configMap(ns, "settings", "v1"),
		secret(ns, "creds", "p4ssword"),
		fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: %s}\nspec:\n  selector: {app: web}\n  ports: [{port: 8080}]\n", ns),
		fmt.Sprintf("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: robot, namespace: %s}\n", ns),
	)
	cs := mustApply(t, options(ns), objs)
	want := map[string]apply.Action{
		"ConfigMap/" + ns + "/settings":   apply.Created,
		"Secret/" + ns + "/creds":         apply.Created,
		"Service/" + ns + "/web":          apply.Created,
		"ServiceAccount/" + ns + "/robot": apply.Created,
	}
	if d := cmp.Diff(want, actions(cs)); d != "" {
		t.Errorf("first apply (-want +got):\n%s", d)
	}

	ctx := context.Background()
	client := kube(t)
	cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, "settings", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := client.CoreV1().Secrets(ns).Get(ctx, "creds", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := client.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sa, err := client.CoreV1().ServiceAccounts(ns).Get(ctx, "robot", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cm.Data["value"] != "v1" || string(s.Data["password"]) != "p4ssword" || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 8080 {
		t.Errorf("objects do not hold what was applied: %v, %q, %v", cm.Data, s.Data["password"], svc.Spec.Ports)
	}
	versions := map[string]string{}
	for ref, m := range map[string]metav1.Object{"ConfigMap": cm, "Secret": s, "Service": svc, "ServiceAccount": sa} {
		if !appliedBy(m.GetManagedFields(), "gitk8s") {
			t.Errorf("%s was not server-side applied by gitk8s: %v", ref, m.GetManagedFields())
		}
		versions[ref] = m.GetResourceVersion()
	}

	mark := env.MarkAudit(t, "")
	cs = mustApply(t, options(ns), objs)
	for _, e := range cs.Entries {
		if e.Action != apply.Unchanged || e.Diff != "" {
			t.Errorf("second apply: %s is %s with diff %q", e.Ref, e.Action, e.Diff)
		}
	}
	if w := writes(t, mark); len(w) > 0 {
		t.Errorf("second apply wrote %v", w)
	}
	cm, _ = client.CoreV1().ConfigMaps(ns).Get(ctx, "settings", metav1.GetOptions{})
	s, _ = client.CoreV1().Secrets(ns).Get(ctx, "creds", metav1.GetOptions{})
	svc, _ = client.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
	sa, _ = client.CoreV1().ServiceAccounts(ns).Get(ctx, "robot", metav1.GetOptions{})
	after := map[string]string{"ConfigMap": cm.ResourceVersion, "Secret": s.ResourceVersion, "Service": svc.ResourceVersion, "ServiceAccount": sa.ResourceVersion}
	if d := cmp.Diff(versions, after); d != "" {
		t.Errorf("resourceVersions changed by an apply with nothing to do (-before +after):\n%s", d)
	}
}

// TestFieldConflicts: a field another manager took over is reported; with
// ForceConflicts Git's value wins, without it the object fails and keeps
// the other manager's value.
func TestFieldConflicts(t *testing.T) {
	tests := []struct {
		name       string
		force      bool
		wantAction apply.Action
		wantValue  string
		// wantOther is the action on a new object of the same bundle: a
		// conflict refused fails the plan, so nothing is written.
		wantOther apply.Action
	}{
		{name: "force takes the field over", force: true, wantAction: apply.Configured, wantValue: "git", wantOther: apply.Created},
		{name: "without force the object fails", force: false, wantAction: apply.Failed, wantValue: "theirs", wantOther: apply.Skipped},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := env.Namespace(t)
			objs := decode(t, fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shared, namespace: %s}\ndata: {a: git, b: git}\n", ns))
			mustApply(t, options(ns), objs)
			takeover := fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"shared","namespace":%q},"data":{"a":"theirs"}}`, ns)
			force := true
			if _, err := kube(t).CoreV1().ConfigMaps(ns).Patch(context.Background(), "shared", types.ApplyPatchType, []byte(takeover),
				metav1.PatchOptions{FieldManager: "someone-else", Force: &force}); err != nil {
				t.Fatal(err)
			}

			opts := options(ns)
			opts.ForceConflicts = tc.force
			cs := run(t, opts, append(decode(t, configMap(ns, "other", "v")), objs...))
			e := entry(t, cs, "ConfigMap/"+ns+"/shared")
			if e.Action != tc.wantAction {
				t.Errorf("action %s, want %s (error %v)", e.Action, tc.wantAction, e.Err)
			}
			if len(e.Conflicts) != 1 || e.Conflicts[0].Field != ".data.a" || !strings.Contains(e.Conflicts[0].Message, "someone-else") {
				t.Errorf("conflicts %+v, want .data.a naming someone-else", e.Conflicts)
			}
			if !tc.force && (e.Err == nil || !strings.Contains(e.Err.Error(), ".data.a")) {
				t.Errorf("error %v does not name the field", e.Err)
			}
			data := liveData(t, ns, "shared")
			if data["a"] != tc.wantValue || data["b"] != "git" {
				t.Errorf("data %v, want a=%s b=git", data, tc.wantValue)
			}
			if a := entry(t, cs, "ConfigMap/"+ns+"/other").Action; a != tc.wantOther {
				t.Errorf("other is %s, want %s", a, tc.wantOther)
			}
			if created := liveData(t, ns, "other") != nil; created != (tc.wantOther == apply.Created) {
				t.Errorf("other exists: %t, want %t", created, tc.wantOther == apply.Created)
			}
		})
	}
}
