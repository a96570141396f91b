package diff

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// leaks returns the values found in text, each in the form it was found.
func leaks(text string, values ...string) []string {
	var found []string
	for _, v := range values {
		b := []byte(v)
		for _, form := range []string{v, base64.StdEncoding.EncodeToString(b), base64.RawStdEncoding.EncodeToString(b),
			base64.URLEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b), url.QueryEscape(v), url.PathEscape(v)} {
			if strings.Contains(text, form) {
				found = append(found, form)
			}
		}
	}
	return found
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// A FederatedSecret carries its values in spec.template and in overrides;
// its diff (gitk8s diff --against-ref diffs it as it is in Git) and any
// text quoting them must show masks only.
func TestFederatedSecretIsMasked(t *testing.T) {
	fed := obj(t, fmt.Sprintf(`apiVersion: types.kubefed.io/v1beta1
kind: FederatedSecret
metadata:
  name: creds
  namespace: shop
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: '{"spec":{"template":{"data":{"A":"%[1]s"}}}}'
spec:
  template:
    type: Opaque
    data: {A: %[1]s}
    stringData: {B: fed-string-value-2}
  placement: {clusters: [{name: one}, {name: two}]}
  overrides:
  - clusterName: one
    clusterOverrides:
    - {path: /data/A, value: %[2]s}
    - {path: /stringData, value: {B: fed-override-value-4}}
  - clusterName: two
    clusterOverrides:
    - {path: /data, value: {A: %[3]s, C: null}}
`, b64("fed-data-value-1"), b64("fed-override-value-3"), b64("fed-override-value-5")))
	values := []string{"fed-data-value-1", "fed-string-value-2", "fed-override-value-3", "fed-override-value-4", "fed-override-value-5"}
	m := NewMasker()
	m.Learn(fed)
	d := Unified("FederatedSecret/shop/creds", nil, fed, m)
	if found := leaks(d, values...); len(found) > 0 {
		t.Errorf("the diff shows %v:\n%s", found, d)
	}
	if !strings.Contains(d, "+      A: '<secret #") || !strings.Contains(d, "placement") {
		t.Errorf("the diff lost what is not a value:\n%s", d)
	}
	if text := m.Redact("refused: " + strings.Join(values, ", ")); len(leaks(text, values...)) > 0 {
		t.Errorf("Redact left a value: %s", text)
	}
	if strings.Contains(YAML(m.MaskObject(fed.DeepCopy())), b64("fed-data-value-1")) {
		t.Error("the last-applied annotation keeps a value")
	}
}

// A FederatedTypeConfig can make any Federated<Kind> a Secret, also when
// the objects come before it in the bundle.
func TestFederatedTypeConfigTargetingSecrets(t *testing.T) {
	creds := obj(t, "{apiVersion: types.kubefed.io/v1beta1, kind: FederatedCreds, metadata: {name: c, namespace: shop}, spec: {template: {stringData: {token: custom-kind-token-77}}}}")
	config := obj(t, "{apiVersion: core.kubefed.io/v1beta1, kind: FederatedTypeConfig, metadata: {name: creds, namespace: kube-federation-system}, spec: {federatedType: {group: types.kubefed.io, version: v1beta1, kind: FederatedCreds}, targetType: {version: v1, kind: Secret}}}")
	other := obj(t, "{apiVersion: types.kubefed.io/v1beta1, kind: FederatedConfigMap, metadata: {name: c, namespace: shop}, spec: {template: {data: {k: plain-config-value}}}}")
	m := NewMasker()
	for _, o := range []*unstructured.Unstructured{creds, other, config} {
		m.Learn(o)
	}
	if text := m.Redact("token custom-kind-token-77 and plain-config-value"); text != "token <secret #1> and plain-config-value" {
		t.Errorf("Redact: %s", text)
	}
	if d := Unified("FederatedCreds/shop/c", nil, creds, m); strings.Contains(d, "custom-kind-token-77") {
		t.Errorf("diff:\n%s", d)
	}
}

// Render splits Lists, but a List can still reach the masker whole.
func TestSecretsInAListAreMasked(t *testing.T) {
	list := obj(t, fmt.Sprintf(`apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Secret, metadata: {name: a}, data: {k: %s}}
- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}, data: {k: visible-config}}
- {apiVersion: v1, kind: SecretList, items: [{apiVersion: v1, kind: Secret, metadata: {name: c}, stringData: {k: nested-list-value}}]}
`, b64("listed-secret-value")))
	m := NewMasker()
	m.Learn(list)
	text := m.Redact("listed-secret-value nested-list-value visible-config")
	if text != "<secret #1> <secret #2> visible-config" {
		t.Errorf("Redact: %s", text)
	}
	if y := YAML(m.MaskObject(list.DeepCopy())); len(leaks(y, "listed-secret-value", "nested-list-value")) > 0 || !strings.Contains(y, "visible-config") {
		t.Errorf("masked List:\n%s", y)
	}
}

// The API server quotes a refused value as Go does (%q), loggers and JSON
// bodies escape it, URLs and tokens travel URL-encoded or in base64 of
// either alphabet: Redact finds each form.
func TestRedactFindsEveryForm(t *testing.T) {
	multiLine := "first line\nsecond \"line\"\t<&>é"
	m := NewMasker()
	m.Learn(obj(t, fmt.Sprintf(`{apiVersion: v1, kind: Secret, metadata: {name: s}, stringData: {a: %q}, data: {b: %s}}`, multiLine, b64("p@ss/w?rd+=&x ~"))))
	tricky := "p@ss/w?rd+=&x ~"
	jsonEscaped := strings.NewReplacer("\n", `\n`, `"`, `\"`, "\t", `\t`, "<", `\u003c`, ">", `\u003e`, "&", `\u0026`).Replace(multiLine)
	jsonPlain := strings.NewReplacer("\n", `\n`, `"`, `\"`, "\t", `\t`).Replace(multiLine)
	for _, form := range []string{
		fmt.Sprintf("%q", multiLine), fmt.Sprintf("%+q", multiLine), jsonEscaped, jsonPlain,
		url.QueryEscape(tricky), url.PathEscape(tricky),
		base64.URLEncoding.EncodeToString([]byte(tricky)), base64.RawStdEncoding.EncodeToString([]byte(multiLine)),
		base64.RawURLEncoding.EncodeToString([]byte(multiLine)),
	} {
		form = strings.Trim(form, `"`)
		text := "refused: [" + form + "]"
		if got := m.Redact(text); strings.Contains(got, form) || !strings.Contains(got, "[<secret #") {
			t.Errorf("Redact(%s) = %s", text, got)
		}
	}
}

// A value that is not a string is invalid, and server-side apply quotes it
// whole (&value.valueUnstructured{Value:map[string]interface {}{…}}).
func TestRedactKnowsValuesThatAreNotStrings(t *testing.T) {
	m := NewMasker()
	m.Learn(obj(t, "{apiVersion: v1, kind: Secret, metadata: {name: s}, data: {k: {inner: nested-map-value}}, stringData: {l: [listed-value-1, 31415926]}}"))
	text := m.Redact(`.data.k: expected string, got &value.valueUnstructured{Value:map[string]interface {}{"inner":"nested-map-value"}}; .stringData.l: expected string, got []interface {}{"listed-value-1", 31415926}`)
	if found := leaks(text, "nested-map-value", "listed-value-1", "31415926"); len(found) > 0 {
		t.Errorf("Redact left %v: %s", found, text)
	}
}

// Values are known as written too: base64 wrapped as base64(1) writes it,
// and the value without the newline `echo value | base64` adds.
func TestRedactKnowsValuesAsWritten(t *testing.T) {
	long := strings.Repeat("wrapped-secret-", 6)
	wrapped := b64(long)
	wrapped = wrapped[:60] + "\n" + wrapped[60:]
	m := NewMasker()
	m.Learn(obj(t, fmt.Sprintf("{apiVersion: v1, kind: Secret, metadata: {name: s}, data: {a: %q, b: %s}}", wrapped, b64("echoed-token-55\n"))))
	text := m.Redact(fmt.Sprintf("data: {a: %s} token echoed-token-55 refused", wrapped))
	if strings.Contains(text, "wrapped") || strings.Contains(text, wrapped[:60]) || strings.Contains(text, "echoed-token-55") {
		t.Errorf("Redact: %s", text)
	}
	// The trimmed value is an alias, not a value: the Secret's two values
	// keep their own masks.
	masked := m.MaskObject(obj(t, "{apiVersion: v1, kind: Secret, metadata: {name: t}, stringData: {b: echoed-token-55}}"))
	if got := masked.Object["stringData"].(map[string]any)["b"]; got != "<secret #3>" {
		t.Errorf("a value equal to another's trimmed text got %v, want a mask of its own", got)
	}
}

// One value's mask is never rewritten by another value it contains.
func TestRedactLeavesMasksWhole(t *testing.T) {
	m := NewMasker()
	m.Learn(obj(t, "{apiVersion: v1, kind: Secret, metadata: {name: s}, stringData: {a: hunter2-long-value, b: secret}}"))
	if got := m.Redact("was hunter2-long-value, is secret"); got != "was <secret #1>, is <secret #2>" {
		t.Errorf("Redact: %s", got)
	}
}

// MaskAll learns every object before it masks any, so a Federated<Kind>
// that comes before the FederatedTypeConfig making it a Secret is masked
// too, and other objects are left as they are.
func TestMaskAll(t *testing.T) {
	creds := obj(t, "{apiVersion: types.kubefed.io/v1beta1, kind: FederatedCreds, metadata: {name: c, namespace: shop}, spec: {template: {stringData: {token: mask-all-token-1}}}}")
	secret := obj(t, fmt.Sprintf("{apiVersion: v1, kind: Secret, metadata: {name: s, namespace: shop}, data: {password: %s}}", b64("mask-all-password-2")))
	cm := obj(t, "{apiVersion: v1, kind: ConfigMap, metadata: {name: c, namespace: shop}, data: {k: mask-all-visible}}")
	config := obj(t, "{apiVersion: core.kubefed.io/v1beta1, kind: FederatedTypeConfig, metadata: {name: creds, namespace: kube-federation-system}, spec: {federatedType: {group: types.kubefed.io, version: v1beta1, kind: FederatedCreds}, targetType: {version: v1, kind: Secret}}}")
	m := NewMasker()
	m.MaskAll([]*unstructured.Unstructured{creds, secret, cm, config})
	var out strings.Builder
	for _, o := range []*unstructured.Unstructured{creds, secret, cm, config} {
		out.WriteString(YAML(o))
	}
	if found := leaks(out.String(), "mask-all-token-1", "mask-all-password-2"); len(found) > 0 {
		t.Errorf("masked objects hold %v:\n%s", found, out.String())
	}
	if !strings.Contains(out.String(), "mask-all-visible") {
		t.Errorf("the ConfigMap was changed:\n%s", out.String())
	}
	if text := m.Redact("mask-all-token-1 mask-all-password-2"); len(leaks(text, "mask-all-token-1", "mask-all-password-2")) > 0 {
		t.Errorf("Redact after MaskAll: %s", text)
	}
}
