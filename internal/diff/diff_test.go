package diff

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

func obj(t *testing.T, s string) *unstructured.Unstructured {
	t.Helper()
	data, err := yaml.YAMLToJSON([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(data); err != nil {
		t.Fatal(err)
	}
	return u
}

func TestSecretDiffMasksEveryValue(t *testing.T) {
	// "hunter2-old" and "hunter2-new" in base64, plus a stringData value.
	before := obj(t, `apiVersion: v1
kind: Secret
metadata:
  name: db
  resourceVersion: "7"
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: '{"data":{"password":"aHVudGVyMi1vbGQ="}}'
data:
  password: aHVudGVyMi1vbGQ=
  user: YWRtaW4tdXNlcg==
`)
	after := obj(t, `apiVersion: v1
kind: Secret
metadata: {name: db}
data:
  password: aHVudGVyMi1uZXc=
  user: YWRtaW4tdXNlcg==
stringData:
  token: plain-token-value
`)
	m := NewMasker()
	d := Unified("Secret/db", before, after, m)
	for _, leak := range []string{"hunter2-old", "hunter2-new", "aHVudGVyMi1vbGQ=", "aHVudGVyMi1uZXc=", "admin-user", "YWRtaW4tdXNlcg==", "plain-token-value"} {
		if strings.Contains(d, leak) {
			t.Errorf("diff leaks %q:\n%s", leak, d)
		}
	}
	// The unchanged user keeps its mask on both sides, the password gets a new one.
	if !strings.Contains(d, "-  password: '<secret #1>'") || !strings.Contains(d, "+  password: '<secret #3>'") {
		t.Errorf("password masks wrong:\n%s", d)
	}
	if !strings.Contains(d, "   user: '<secret #2>'") {
		t.Errorf("unchanged user is not shown as the same mask:\n%s", d)
	}
	if strings.Contains(d, "resourceVersion") || strings.Contains(d, "last-applied") {
		t.Errorf("volatile fields in the diff:\n%s", d)
	}
	text := m.Redact(`Secret "db" is invalid: data[password]: value aHVudGVyMi1uZXc= (hunter2-new) rejected`)
	if strings.Contains(text, "hunter2") || strings.Contains(text, "aHVudGVyMi1uZXc=") {
		t.Errorf("Redact left a value: %s", text)
	}
}

func TestSameValueSameMaskAcrossDataAndStringData(t *testing.T) {
	m := NewMasker()
	a := m.MaskObject(obj(t, "{apiVersion: v1, kind: Secret, metadata: {name: a}, data: {k: c2FtZS12YWx1ZQ==}}"))
	b := m.MaskObject(obj(t, "{apiVersion: v1, kind: Secret, metadata: {name: b}, stringData: {k: same-value}}"))
	if a.Object["data"].(map[string]any)["k"] != b.Object["stringData"].(map[string]any)["k"] {
		t.Errorf("masks differ: %v vs %v", a.Object["data"], b.Object["stringData"])
	}
}

func TestUnifiedIgnoresVolatileFields(t *testing.T) {
	live := obj(t, `{apiVersion: v1, kind: ConfigMap, metadata: {name: c, uid: u1, resourceVersion: "5", generation: 2, creationTimestamp: "2026-01-01T00:00:00Z", managedFields: [{manager: x}]}, data: {a: b}}`)
	planned := obj(t, `{apiVersion: v1, kind: ConfigMap, metadata: {name: c, uid: u1, resourceVersion: "5"}, data: {a: b}}`)
	if d := Unified("ConfigMap/c", live, planned, NewMasker()); d != "" {
		t.Errorf("diff of equal objects:\n%s", d)
	}
	changed := obj(t, `{apiVersion: v1, kind: ConfigMap, metadata: {name: c}, data: {a: z}}`)
	d := Unified("ConfigMap/c", live, changed, NewMasker())
	if !strings.Contains(d, "-  a: b") || !strings.Contains(d, "+  a: z") {
		t.Errorf("diff:\n%s", d)
	}
	if d := Unified("ConfigMap/c", nil, changed, NewMasker()); !strings.Contains(d, "--- /dev/null") {
		t.Errorf("creation diff:\n%s", d)
	}
}

// A value written as a number is invalid in a Secret, and the API server
// quotes it when it refuses the Secret: Redact must know it all the same.
func TestRedactKnowsNumericValues(t *testing.T) {
	m := NewMasker()
	m.Learn(obj(t, "{apiVersion: v1, kind: Secret, metadata: {name: a}, stringData: {pin: 73914682}}"))
	text := m.Redact(`.stringData.pin: expected string, got &value.valueUnstructured{Value:73914682}`)
	if strings.Contains(text, "73914682") || !strings.Contains(text, "<secret #1>") {
		t.Errorf("Redact left a numeric value: %s", text)
	}
}
