package policy

import (
	"encoding/base64"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// liveObjects is a Live that holds a few objects, by kind/namespace/name.
type liveObjects map[string]*unstructured.Unstructured

func (l liveObjects) Quotas(string) ([]*unstructured.Unstructured, error)      { return nil, nil }
func (l liveObjects) LimitRanges(string) ([]*unstructured.Unstructured, error) { return nil, nil }
func (l liveObjects) Get(_, kind, namespace, name string) (*unstructured.Unstructured, error) {
	return l[kind+"/"+namespace+"/"+name], nil
}

func liveObject(t *testing.T, s string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(s), &u.Object); err != nil {
		t.Fatal(err)
	}
	return u
}

// TestAdmissionMessagesMaskEveryValueTheySee: a policy's message may
// quote the live object an update replaces (oldObject), its params (a
// Secret in the cluster) or a FederatedSecret's template; none of those
// values is in a finding.
func TestAdmissionMessagesMaskEveryValueTheySee(t *testing.T) {
	policies := `apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: quotes-old}
spec:
  matchConstraints:
    resourceRules: [{apiGroups: [""], apiVersions: [v1], operations: [UPDATE], resources: [secrets]}]
  validations:
  - expression: "false"
    messageExpression: "'was ' + oldObject.data.password"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: quotes-old}
spec: {policyName: quotes-old, validationActions: [Deny]}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: quotes-params}
spec:
  paramKind: {apiVersion: v1, kind: Secret}
  matchConstraints:
    resourceRules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [configmaps]}]
  validations:
  - expression: "false"
    messageExpression: "'params ' + params.data.token"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: quotes-params}
spec: {policyName: quotes-params, validationActions: [Deny], paramRef: {name: policy-token, namespace: prod, parameterNotFoundAction: Deny}}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: quotes-federated}
spec:
  matchConstraints:
    resourceRules: [{apiGroups: [types.kubefed.io], apiVersions: [v1beta1], operations: [CREATE, UPDATE], resources: [federatedsecrets]}]
  validations:
  - expression: "false"
    messageExpression: "'template ' + object.spec.template.stringData.token + ' ' + object.spec.template.data.password"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: quotes-federated}
spec: {policyName: quotes-federated, validationActions: [Deny]}
`
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	objects := renderDir(t, map[string]string{"policies.yaml": policies, "objects.yaml": `apiVersion: v1
kind: Secret
metadata: {name: db, namespace: prod}
stringData: {password: new-git-password}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: prod}
data: {k: v}
---
apiVersion: types.kubefed.io/v1beta1
kind: FederatedSecret
metadata: {name: fed, namespace: prod}
spec:
  template:
    stringData: {token: federated-template-token}
    data: {password: ` + b64("federated-template-password") + `}
  placement: {clusters: [{name: one}]}
`})
	live := liveObjects{
		"Secret/prod/db":           liveObject(t, "{apiVersion: v1, kind: Secret, metadata: {name: db, namespace: prod}, data: {password: "+b64("live-only-password")+"}}"),
		"Secret/prod/policy-token": liveObject(t, "{apiVersion: v1, kind: Secret, metadata: {name: policy-token, namespace: prod}, data: {token: "+b64("live-params-token")+"}}"),
	}
	ap := LoadAdmissionPolicies(objects)
	if len(ap.Errors) > 0 {
		t.Fatalf("compile: %v", ap.Errors)
	}
	var messages strings.Builder
	for _, f := range EvaluateIn(&Context{Objects: objects, Live: live}, Config{Admission: ap}) {
		if f.Rule == RuleAdmissionPolicy {
			messages.WriteString(f.Message + "\n")
		}
	}
	for _, policy := range []string{"quotes-old", "quotes-params", "quotes-federated"} {
		if !strings.Contains(messages.String(), "ValidatingAdmissionPolicy "+policy) {
			t.Errorf("%s denied nothing:\n%s", policy, messages.String())
		}
	}
	for _, v := range []string{"live-only-password", "live-params-token", "federated-template-token", "federated-template-password"} {
		for _, form := range []string{v, b64(v)} {
			if strings.Contains(messages.String(), form) {
				t.Errorf("a finding quotes %q:\n%s", form, messages.String())
			}
		}
	}
}
