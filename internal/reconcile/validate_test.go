package reconcile

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/gitk8s/gitk8s/internal/cluster"
	"github.com/gitk8s/gitk8s/internal/render"
	"github.com/gitk8s/gitk8s/internal/source"
	"github.com/gitk8s/gitk8s/internal/testenv"
)

// TestValidate checks what Validate finds offline and against clusters:
// removed API versions always, kinds a cluster does not serve, the policy
// gate, and the errors that stop it.
func TestValidate(t *testing.T) {
	ns := env.Namespace(t)
	files := map[string]string{
		"a.yaml":       configMap(ns, "a", "1"),
		"ingress.yaml": fmt.Sprintf("apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata: {name: old, namespace: %s}\nspec: {}\n", ns),
		"rb.yaml":      fmt.Sprintf("apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: admin, namespace: %[1]s}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\nsubjects: [{kind: ServiceAccount, name: default, namespace: %[1]s}]\n", ns),
		"widget.yaml":  fmt.Sprintf("apiVersion: example.test/v1\nkind: Widget\nmetadata: {name: w, namespace: %s}\n", ns),
	}
	target := env.Target(t, "")
	tests := []struct {
		name     string
		clusters []Cluster
		noPolicy bool
		// want are the findings, in order, as "file: rule: " and the
		// start of the message.
		want    []string
		wantErr string
	}{
		{name: "offline", want: []string{"ingress.yaml: api-removed: ", "rb.yaml: rbac-cluster-admin-binding: ", "rb.yaml: rbac-pods-exec: "}},
		{name: "offline without the gate", noPolicy: true, want: []string{"ingress.yaml: api-removed: "}},
		{name: "one cluster", clusters: Clusters([]*cluster.Target{target}),
			want: []string{"ingress.yaml: api-removed: ", "rb.yaml: rbac-cluster-admin-binding: ", "rb.yaml: rbac-pods-exec: ", "widget.yaml: api-not-served: "}},
		{name: "two clusters", clusters: []Cluster{{Name: "one", Target: target}, {Name: "two", Target: target}},
			want: []string{"ingress.yaml: api-removed: ", "rb.yaml: rbac-cluster-admin-binding: [one] ", "rb.yaml: rbac-pods-exec: [one] ",
				"rb.yaml: rbac-cluster-admin-binding: [two] ", "rb.yaml: rbac-pods-exec: [two] ",
				"widget.yaml: api-not-served: ", "widget.yaml: api-not-served: "}},
		{name: "unreachable cluster", clusters: Clusters([]*cluster.Target{unreachable(t, "gone")}), wantErr: "cluster gone"},
		{name: "cluster not built", clusters: []Cluster{{Name: "x", Unavailable: errors.New("context x: not in the kubeconfig")}}, wantErr: "context x: not in the kubeconfig"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			settings := DefaultSettings()
			settings.Policy.Off = tt.noPolicy
			v, err := Validate(context.Background(), Request{Source: dir(t, files), Settings: settings, Clusters: tt.clusters})
			if v == nil || v.Bundle == nil || len(v.Bundle.Objects) != len(files) {
				t.Fatalf("Validation %+v (error %v), want one holding the %d rendered objects", v, err, len(files))
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %v, want one naming %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range v.Findings {
				got = append(got, fmt.Sprintf("%s: %s: %s", f.File, f.Rule, f.Message))
			}
			if len(got) != len(tt.want) {
				t.Fatalf("findings (-want +got):\n%s", cmp.Diff(tt.want, got))
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tt.want[i]) {
					t.Errorf("finding %d is %q, want it to start with %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// capsChart is a Helm chart whose ConfigMap records the capabilities and
// the namespace it was rendered with.
var capsChart = map[string]string{
	"caps/Chart.yaml": "apiVersion: v2\nname: caps\nversion: 0.1.0\n",
	"caps/templates/caps.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: caps
  namespace: {{ .Release.Namespace }}
data:
  kubeVersion: {{ .Capabilities.KubeVersion.Version | quote }}
  apiService: {{ .Capabilities.APIVersions.Has "apiregistration.k8s.io/v1/APIService" | quote }}
`,
}

// TestRenderAndValidateUseTheClusterCapabilities renders a Helm chart as
// Run renders it: for the first cluster that answers (its version, the
// API versions it serves, its namespace), with the render's defaults when
// there is none.
func TestRenderAndValidateUseTheClusterCapabilities(t *testing.T) {
	target := env.Target(t, "")
	caps, err := cluster.CapabilitiesOf(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	if caps.KubeVersion == render.DefaultKubeVersion {
		t.Skipf("the cluster's version is the render's default, %s: the test could not tell them apart", caps.KubeVersion)
	}
	root := testenv.WriteFiles(t, capsChart)
	src := SourceFunc(func(ctx context.Context) (*source.Snapshot, error) {
		return source.Open(ctx, root, source.Options{Path: "caps"})
	})
	online := map[string]string{"kubeVersion": caps.KubeVersion, "apiService": "true", "namespace": target.Namespace}
	tests := []struct {
		name     string
		clusters []Cluster
		want     map[string]string
		// validate: Validate reaches every cluster, so it runs only
		// where all of them answer.
		validate bool
	}{
		{name: "offline", want: map[string]string{"kubeVersion": render.DefaultKubeVersion, "namespace": "default"}, validate: true},
		{name: "one cluster", clusters: Clusters([]*cluster.Target{target}), want: online, validate: true},
		{name: "the first that answers", clusters: []Cluster{{Name: "gone", Target: unreachable(t, "gone")}, {Name: "local", Target: target}}, want: online},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			settings := DefaultSettings()
			settings.Policy.Off = true
			req := Request{Source: src, Settings: settings, Clusters: tt.clusters}
			check := func(how string, bundle *render.Bundle) {
				t.Helper()
				if len(bundle.Objects) != 1 {
					t.Fatalf("%s: %d objects, want the chart's ConfigMap", how, len(bundle.Objects))
				}
				o := bundle.Objects[0].Object
				data, _, _ := unstructured.NestedStringMap(o.Object, "data")
				got := map[string]string{"kubeVersion": data["kubeVersion"], "namespace": o.GetNamespace()}
				if _, ok := tt.want["apiService"]; ok {
					got["apiService"] = data["apiService"]
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("%s rendered the chart for (-want +got):\n%s", how, diff)
				}
			}
			bundle, err := Render(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			check("Render", bundle)
			if !tt.validate {
				return
			}
			v, err := Validate(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			check("Validate", v.Bundle)
		})
	}
}
