package policy

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gitk8s/gitk8s/internal/render"
	"github.com/gitk8s/gitk8s/internal/testenv"
)

// vapWorkload are objects for the policies in testdata/vap.
const vapWorkload = `apiVersion: v1
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
spec: {replicas: 2, selector: {matchLabels: {a: b}}, template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: x}]}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: big, namespace: prod}
spec: {replicas: 5, selector: {matchLabels: {a: b}}, template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: x}]}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: big-exempt, namespace: prod, labels: {gitk8s.io/exempt: "true"}}
spec: {replicas: 5, selector: {matchLabels: {a: b}}, template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: x}]}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: big-in-dev, namespace: dev}
spec: {replicas: 9, selector: {matchLabels: {a: b}}, template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: x}]}}}
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

func renderDir(t *testing.T, files map[string]string) []*render.Object {
	t.Helper()
	b, err := render.Render(t.Context(), render.Options{Root: testenv.WriteFiles(t, files)})
	if err != nil {
		t.Fatal(err)
	}
	return b.Objects
}

func TestAdmissionPoliciesOffline(t *testing.T) {
	policyYAML, err := os.ReadFile(filepath.Join("testdata", "vap", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ap := LoadAdmissionPolicies(renderDir(t, map[string]string{"p.yaml": string(policyYAML)}))
	if len(ap.Errors) > 0 {
		t.Fatalf("compile: %v", ap.Errors)
	}
	findings := ap.Evaluate(context.Background(), &Context{Objects: renderDir(t, map[string]string{"app.yaml": vapWorkload})})
	var got []string
	for _, f := range findings {
		got = append(got, string(f.Severity)+" "+f.Object+": "+f.Message[strings.LastIndex(f.Message, ": ")+2:])
	}
	sort.Strings(got)
	want := []string{
		"error Deployment/prod/big: replicas 5 is over the limit of 3",
		"warning Service/dev/unlabelled: every Service needs a team label",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("findings (-want +got):\n%s", diff)
	}

	// Without its params, a Deny binding denies.
	noParams := strings.Replace(vapWorkload, "name: replica-limit, namespace: gitk8s-policy-params", "name: other, namespace: gitk8s-policy-params", 1)
	findings = ap.Evaluate(context.Background(), &Context{Objects: renderDir(t, map[string]string{"app.yaml": noParams})})
	joined := ""
	for _, f := range findings {
		joined += f.Object + ": " + f.Message + "\n"
	}
	if !strings.Contains(joined, "Deployment/prod/small: ValidatingAdmissionPolicy replica-limit") || !strings.Contains(joined, "no params") {
		t.Errorf("missing params not reported:\n%s", joined)
	}
}

func TestAdmissionPolicyThatDoesNotCompile(t *testing.T) {
	bad := `apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: broken}
spec:
  matchConstraints:
    resourceRules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [configmaps]}]
  validations:
  - expression: "object.data.size( > 2"
`
	ap := LoadAdmissionPolicies(renderDir(t, map[string]string{"bad.yaml": bad}))
	if len(ap.Errors) != 1 || !strings.Contains(ap.Errors[0].Message, "does not compile") || ap.Errors[0].File != "bad.yaml" || !strings.Contains(ap.Errors[0].Message, "object.data.size( > 2") {
		t.Errorf("errors: %+v", ap.Errors)
	}
}

func TestBuiltInPoliciesCompileAndWarn(t *testing.T) {
	ap, err := LoadAdmission(t.Context(), t.TempDir(), ".", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ap.Errors) > 0 {
		t.Fatalf("built-in policies do not compile: %v", ap.Errors)
	}
	objs := renderDir(t, map[string]string{"d.yaml": deploy("      containers: [{name: a, image: nginx}, {name: b, image: 'registry.example:5000/app:1.2'}, {name: c, image: 'busybox:latest'}]\n")})
	findings := Evaluate(objs, Config{Admission: ap}, nil)
	var msgs []string
	for _, f := range findings {
		if f.Rule == "admission-policy" {
			msgs = append(msgs, string(f.Severity)+": "+f.Message)
		}
	}
	if len(msgs) != 1 || !strings.HasPrefix(msgs[0], "warning: ") || !strings.HasSuffix(msgs[0], "containers without a pinned image version (a tag other than latest, or a digest): a, c") {
		t.Errorf("images-pinned: %v", msgs)
	}
}

// TestAdmissionMessagesMaskSecretValues: a policy whose messageExpression
// quotes a Secret's data (base64, as the object holds it) or a
// stringData value produces findings that hold neither value.
func TestAdmissionMessagesMaskSecretValues(t *testing.T) {
	quoting := `apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: quotes-secrets}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [secrets]}]
  validations:
  - expression: "false"
    messageExpression: "'password ' + object.data.password + ' token ' + object.stringData.token"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: quotes-secrets}
spec: {policyName: quotes-secrets, validationActions: [Deny]}
`
	secrets := `apiVersion: v1
kind: Secret
metadata: {name: db, namespace: prod}
data: {password: c3VwZXItc2VjcmV0LXB3}
stringData: {token: plain-token-value}
`
	objects := renderDir(t, map[string]string{"secret.yaml": secrets, "policy.yaml": quoting})
	ap := LoadAdmissionPolicies(objects)
	if len(ap.Errors) > 0 {
		t.Fatalf("compile: %v", ap.Errors)
	}
	findings := EvaluateIn(&Context{Objects: objects}, Config{Admission: ap})
	var messages strings.Builder
	for _, f := range findings {
		if f.Rule == RuleAdmissionPolicy {
			messages.WriteString(f.Message + "\n")
		}
	}
	if !strings.Contains(messages.String(), "quotes-secrets") {
		t.Fatalf("the policy denied nothing:\n%s", messages.String())
	}
	for _, value := range []string{"c3VwZXItc2VjcmV0LXB3", "super-secret-pw", "plain-token-value"} {
		if strings.Contains(messages.String(), value) {
			t.Errorf("a finding quotes %q:\n%s", value, messages.String())
		}
	}
}
