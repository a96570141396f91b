package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/gitk8s/gitk8s/internal/render"
	"github.com/gitk8s/gitk8s/internal/testenv"
)

// warnings collects the API server's warnings.
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) HandleWarningHeaderWithContext(_ context.Context, _ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.list
	w.list = nil
	return l
}

// TestAdmissionPoliciesAgreeWithTheAPIServer installs ValidatingAdmissionPolicies
// (params, variables, messageExpression, matchConditions, namespaceSelector)
// in the local control plane and checks that the objects the API server
// denies, or warns about, are exactly those gitk8s reports offline.
func TestAdmissionPoliciesAgreeWithTheAPIServer(t *testing.T) {
	suffix := env.Namespace(t)
	prod, dev := "prod-"+suffix, "dev-"+suffix
	policyYAML := readFile(t, filepath.Join("..", "..", "internal", "policy", "testdata", "vap", "policy.yaml"))
	policyYAML = strings.ReplaceAll(policyYAML, "replica-limit", "replica-limit-"+suffix)
	policyYAML = strings.ReplaceAll(policyYAML, "team-label", "team-label-"+suffix)
	policyYAML = strings.ReplaceAll(policyYAML, "gitk8s-policy-params", "params-"+suffix)
	objects := strings.NewReplacer("name: prod", "name: "+prod, "namespace: prod", "namespace: "+prod, "name: dev", "name: "+dev, "namespace: dev", "namespace: "+dev,
		"name: replica-limit, namespace: gitk8s-policy-params", "name: replica-limit-"+suffix+", namespace: params-"+suffix).Replace(admissionWorkload)

	// The cluster gets the policies, namespaces and params; not yet the rest.
	kubectl(t, "create", "namespace", "params-"+suffix)
	setup := testenv.WriteFiles(t, map[string]string{"p.yaml": policyYAML})
	kubectl(t, "apply", "-f", filepath.Join(setup, "p.yaml"))
	t.Cleanup(func() {
		kubectl(t, "delete", "-f", filepath.Join(setup, "p.yaml"), "--ignore-not-found")
		kubectl(t, "delete", "namespace", prod, dev, "params-"+suffix, "--ignore-not-found", "--wait=false")
	})
	rendered, err := render.Decode("objects.yaml", []byte(objects))
	if err != nil {
		t.Fatal(err)
	}
	dyn := env.Target(t, "")
	cfg := rest.CopyConfig(dyn.Config)
	collected := &warnings{}
	cfg.WarningHandlerWithContext = collected
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	force := true
	applyObj := func(u *unstructured.Unstructured, dryRun bool) error {
		mapping, err := dyn.Mapper.RESTMapping(u.GroupVersionKind().GroupKind(), u.GroupVersionKind().Version)
		if err != nil {
			return err
		}
		data, _ := u.MarshalJSON()
		opts := metav1.PatchOptions{FieldManager: "test", Force: &force}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		ri := client.Resource(mapping.Resource)
		if u.GetNamespace() != "" {
			_, err = ri.Namespace(u.GetNamespace()).Patch(ctx, u.GetName(), types.ApplyPatchType, data, opts)
		} else {
			_, err = ri.Patch(ctx, u.GetName(), types.ApplyPatchType, data, opts)
		}
		return err
	}
	var rest []*render.Object
	for _, o := range rendered {
		switch o.Object.GetKind() {
		case "Namespace", "ConfigMap":
			if err := applyObj(o.Object, false); err != nil {
				t.Fatal(err)
			}
		default:
			rest = append(rest, o)
		}
	}

	// What the API server says, object by object (after its policy informer
	// has caught up: it must deny the big Deployment before we trust it).
	serverSays := func() (denied, warned []string) {
		for _, o := range rest {
			err := applyObj(o.Object, true)
			if err != nil {
				if !strings.Contains(err.Error(), "ValidatingAdmissionPolicy") {
					t.Fatalf("%s: unexpected error %v", o.Ref(), err)
				}
				denied = append(denied, o.Ref())
			}
			for _, w := range collected.take() {
				if strings.Contains(w, "ValidatingAdmissionPolicy") {
					warned = append(warned, o.Ref())
				}
			}
		}
		sort.Strings(denied)
		sort.Strings(warned)
		return denied, warned
	}
	var denied, warned []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		denied, warned = serverSays()
		if len(denied) > 0 && len(warned) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the API server never enforced the policies: denied %v, warned %v", denied, warned)
		}
		time.Sleep(500 * time.Millisecond)
	}

	// What gitk8s says, offline, from the same policies in policies/.
	dir := testenv.WriteFiles(t, map[string]string{"policies/p.yaml": policyYAML, "app/objects.yaml": objects})
	var out, errOut bytes.Buffer
	run(ctx, []string{"validate", dir, "--path", "app", "-o", "json", "--policy", "gitk8s-none=off"}, &out, &errOut)
	if !strings.Contains(errOut.String(), "no such rule") {
		t.Fatalf("an unknown rule name is not refused: %s", errOut.String())
	}
	out.Reset()
	errOut.Reset()
	run(ctx, []string{"validate", dir, "--path", "app", "-o", "json"}, &out, &errOut)
	var report struct {
		Findings []struct {
			Rule, Severity, Object, Message string
		} `json:"findings"`
	}
	if err := json.Unmarshal(out.Bytes(), &report); err != nil {
		t.Fatalf("%v\n%s\n%s", err, out.String(), errOut.String())
	}
	var gDenied, gWarned []string
	for _, f := range report.Findings {
		if f.Rule != "admission-policy" || strings.Contains(f.Message, "gitk8s-images-pinned") {
			continue
		}
		if f.Severity == "error" {
			gDenied = append(gDenied, f.Object)
		} else {
			gWarned = append(gWarned, f.Object)
		}
	}
	sort.Strings(gDenied)
	sort.Strings(gWarned)
	if strings.Join(denied, ",") != strings.Join(gDenied, ",") || strings.Join(warned, ",") != strings.Join(gWarned, ",") {
		t.Errorf("the API server denied %v and warned %v; gitk8s reports %v and %v", denied, warned, gDenied, gWarned)
	}
	if len(denied) != 1 || len(warned) != 1 {
		t.Errorf("the workload should have one denial and one warning: %v %v", denied, warned)
	}
}

// admissionWorkload are the objects for internal/policy/testdata/vap.
const admissionWorkload = `apiVersion: v1
kind: Namespace
metadata: {name: prod, labels: {env: prod}}
---
apiVersion: v1
kind: Namespace
metadata: {name: dev, labels: {env: dev}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: replica-limit, namespace: gitk8s-policy-params}
data: {maxReplicas: "3"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: small, namespace: prod}
spec: {replicas: 2, selector: {matchLabels: {a: b}}, template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: "x:1"}]}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: big, namespace: prod}
spec: {replicas: 5, selector: {matchLabels: {a: b}}, template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: "x:1"}]}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: big-exempt, namespace: prod, labels: {gitk8s.io/exempt: "true"}}
spec: {replicas: 5, selector: {matchLabels: {a: b}}, template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: "x:1"}]}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: big-in-dev, namespace: dev}
spec: {replicas: 9, selector: {matchLabels: {a: b}}, template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: "x:1"}]}}}
---
apiVersion: v1
kind: Service
metadata: {name: unlabelled, namespace: dev}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: labelled, namespace: dev, labels: {team: shop}}
spec: {ports: [{port: 80}]}
`
