package render

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/gitk8s/gitk8s/internal/testenv"
)

// sopsEncrypt encrypts with the sops CLI the Makefile builds.
func sopsEncrypt(t *testing.T, name, plain string, recipients ...string) string {
	return testenv.SOPSEncrypt(t, name, plain, recipients...)
}

func newAgeKey(t *testing.T) *age.X25519Identity {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

const sopsSecret = `apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: shop
type: Opaque
stringData:
  password: sops-plain-Zq81
data:
  token: c29wcy10b2tlbi1ZeTI3
`

// TestSOPS: files the sops CLI encrypted for an age key are decrypted in
// the renderer with that key, checked against their MAC, and give their
// Secrets with the plain values; a missing key, a wrong key, a value
// changed by hand, a value added in the clear, an encrypted ConfigMap and
// a file encrypted for KMS only each fail the render with an error naming
// the file, and no error holds a plain value or a key. Without keys a
// render for comparison keeps the ciphertext.
func TestSOPS(t *testing.T) {
	key, other := newAgeKey(t), newAgeKey(t)
	encrypted := sopsEncrypt(t, "secret.yaml", sopsSecret, key.Recipient().String())
	encryptedJSON := sopsEncrypt(t, "secret.json", `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"api"},"stringData":{"key":"sops-json-Kx55"}}`, key.Recipient().String())
	configMap := sopsEncrypt(t, "cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata:\n  mode: sops-cm-Pp03\n", key.Recipient().String())
	plainValues := []string{"sops-plain-Zq81", "sops-token-Yy27", "c29wcy10b2tlbi1ZeTI3", "sops-json-Kx55", "sops-cm-Pp03", "plain-typed-Hh42"}

	root := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("good/secret.yaml", encrypted)
	write("good/secret.json", encryptedJSON)
	write("good/app.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {mode: plain}\n")

	bundle, err := Render(t.Context(), Options{Root: root, Path: "good", SOPS: SOPSOptions{AgeKeys: other.String() + "\n" + key.String()}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*Object{}
	for _, o := range bundle.Objects {
		got[o.Ref()] = o
	}
	db := got["Secret/shop/db"]
	if db == nil || !db.Encrypted {
		t.Fatalf("the decrypted Secret is missing or not marked: %v", got)
	}
	if v, _, _ := unstructuredString(db.Object.Object, "stringData", "password"); v != "sops-plain-Zq81" {
		t.Errorf("stringData.password = %q, want the plain value", v)
	}
	if v, _, _ := unstructuredString(db.Object.Object, "data", "token"); v != "c29wcy10b2tlbi1ZeTI3" {
		t.Errorf("data.token = %q, want the plain (base64) value", v)
	}
	if _, ok := db.Object.Object["sops"]; ok {
		t.Error("the decrypted Secret still carries the sops block")
	}
	if api := got["Secret/api"]; api == nil || !api.Encrypted {
		t.Errorf("the JSON file's Secret: %v", api)
	}
	if got["ConfigMap/app"] == nil || got["ConfigMap/app"].Encrypted {
		t.Error("the plain ConfigMap beside them is missing or marked encrypted")
	}

	// Ciphertext for comparison without keys.
	cipher, err := Render(t.Context(), Options{Root: root, Path: "good", SOPS: SOPSOptions{Ciphertext: true}})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range cipher.Objects {
		if o.Ref() == "Secret/shop/db" {
			if _, ok := o.Object.Object["sops"]; !ok {
				t.Error("a ciphertext render decrypted the file")
			}
		}
	}

	tampered := strings.Replace(encrypted, "ENC[AES256_GCM,data:", "ENC[AES256_GCM,data:QQ", 1)
	addedInClear := strings.Replace(encrypted, "stringData:\n", "stringData:\n    extra: plain-typed-Hh42\n", 1)
	kmsOnly := regexp.MustCompile(`(?s)    age:\n.*?          recipient: [^\n]*\n`).ReplaceAllString(encrypted,
		"    kms:\n        - arn: arn:aws:kms:eu-west-1:000000000000:key/gitk8s-test\n          created_at: \"2026-01-01T00:00:00Z\"\n          enc: AQICAHgAAAA=\n          aws_profile: \"\"\n")
	macMismatch := regexp.MustCompile(`lastmodified: "[^"]*"`).ReplaceAllString(encrypted, `lastmodified: "2020-01-01T00:00:00Z"`)
	cases := []struct {
		name, file, content string
		keys                string
		want                []string
	}{
		{"no key", "secret.yaml", encrypted, "", []string{"no age key", key.Recipient().String(), "SOPS_AGE_KEY_FILE"}},
		{"wrong key", "secret.yaml", encrypted, other.String(), []string{"none of the age keys", key.Recipient().String()}},
		{"malformed key", "secret.yaml", encrypted, "AGE-SECRET-KEY-1NOTAKEY", []string{"cannot be read"}},
		{"value changed by hand", "secret.yaml", tampered, key.String(), []string{"changed"}},
		{"value added in the clear", "secret.yaml", addedInClear, key.String(), []string{"half of it is in the clear"}},
		{"MAC does not match", "secret.yaml", macMismatch, key.String(), []string{"MAC does not match"}},
		{"encrypted ConfigMap", "cm.yaml", configMap, key.String(), []string{"ConfigMap/settings", "Secrets only"}},
		{"KMS only", "secret.yaml", kmsOnly, key.String(), []string{"no age recipient", "kms"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := "bad-" + strings.ReplaceAll(tc.name, " ", "-")
			write(dir+"/"+tc.file, tc.content)
			write(dir+"/app.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\n")
			_, err := Render(t.Context(), Options{Root: root, Path: dir, SOPS: SOPSOptions{AgeKeys: tc.keys}})
			if err == nil {
				t.Fatal("the render succeeded")
			}
			msg := err.Error()
			t.Log(msg)
			for _, w := range append([]string{dir + "/" + tc.file}, tc.want...) {
				if !strings.Contains(msg, w) {
					t.Errorf("the error does not say %q", w)
				}
			}
			for _, v := range append(plainValues, key.String(), other.String()) {
				if strings.Contains(msg, v) {
					t.Errorf("the error holds %q", v)
				}
			}
		})
	}
}

// unstructuredString reads a string at fields of an object.
func unstructuredString(obj map[string]any, fields ...string) (string, bool, error) {
	var cur any = obj
	for _, f := range fields {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", false, nil
		}
		cur = m[f]
	}
	s, ok := cur.(string)
	return s, ok, nil
}

// TestSOPSInKustomizeAndHelm: files kustomize and Helm read — a Secret
// resource, a Secret generator's env file, a values file — are decrypted
// in memory; a ConfigMap made from a decrypted value is refused, since
// only Secrets are masked, and no error holds the value.
func TestSOPSInKustomizeAndHelm(t *testing.T) {
	key := newAgeKey(t)
	r := key.Recipient().String()
	env := sopsEncrypt(t, "db.env", "DB_PASSWORD=sops-env-Jw61\n", r)
	values := sopsEncrypt(t, "secrets.yaml", "password: sops-values-Rt92\n", r)
	secret := sopsEncrypt(t, "secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: api}\nstringData: {token: sops-res-Ab17}\n", r)
	chart := "apiVersion: v2\nname: web\nversion: 0.1.0\n"
	secretTemplate := "apiVersion: v1\nkind: Secret\nmetadata: {name: web}\nstringData:\n  password: {{ .Values.password | quote }}\n"
	cmTemplate := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata:\n  password: {{ .Values.password | quote }}\n"
	files := map[string]string{
		"kust/kustomization.yaml":        "resources: [secret.yaml]\nsecretGenerator:\n- name: db\n  envs: [db.env]\n",
		"kust/secret.yaml":               secret,
		"kust/db.env":                    env,
		"kustcm/kustomization.yaml":      "configMapGenerator:\n- name: db\n  envs: [db.env]\n",
		"kustcm/db.env":                  env,
		"chart/Chart.yaml":               chart,
		"chart/secrets.yaml":             values,
		"chart/templates/secret.yaml":    secretTemplate,
		"chartcm/Chart.yaml":             chart,
		"chartcm/secrets.yaml":           values,
		"chartcm/templates/cm.yaml":      cmTemplate,
		"chartown/Chart.yaml":            chart,
		"chartown/values.yaml":           values,
		"chartown/templates/secret.yaml": secretTemplate,
	}
	root := testenv.WriteFiles(t, files)
	keys := SOPSOptions{AgeKeys: key.String()}

	bundle, err := Render(t.Context(), Options{Root: root, Path: "kust", SOPS: keys})
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]string{}
	for _, o := range bundle.Objects {
		if !o.Encrypted {
			t.Errorf("%s holds decrypted values but is not marked", o.Ref())
		}
		data, _ := o.Object.MarshalJSON()
		found[o.Object.GetKind()+"/"+strings.SplitN(o.Object.GetName(), "-", 2)[0]] = string(data)
	}
	if !strings.Contains(found["Secret/api"], "sops-res-Ab17") {
		t.Errorf("the encrypted Secret resource was not decrypted: %s", found["Secret/api"])
	}
	if !strings.Contains(found["Secret/db"], base64.StdEncoding.EncodeToString([]byte("sops-env-Jw61"))) {
		t.Errorf("the Secret generator's env file was not decrypted: %s", found["Secret/db"])
	}

	bundle, err = Render(t.Context(), Options{Root: root, Path: "chart", SOPS: keys, Helm: HelmOptions{ValuesFiles: []string{"secrets.yaml"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(bundle.Objects) != 1 || !strings.Contains(fmt.Sprint(bundle.Objects[0].Object.Object), "sops-values-Rt92") {
		t.Errorf("the chart did not render the decrypted value: %v", bundle.Objects)
	}

	bundle, err = Render(t.Context(), Options{Root: root, Path: "chartown", SOPS: keys})
	if err != nil {
		t.Fatal(err)
	}
	if len(bundle.Objects) != 1 || !strings.Contains(fmt.Sprint(bundle.Objects[0].Object.Object), "sops-values-Rt92") {
		t.Errorf("the chart's own encrypted values.yaml was not decrypted: %v", bundle.Objects)
	}

	for _, tc := range []struct {
		path, file string
		helm       HelmOptions
	}{
		{"kustcm", "kustcm/kustomization.yaml", HelmOptions{}},
		{"chartcm", "chartcm/Chart.yaml", HelmOptions{ValuesFiles: []string{"secrets.yaml"}}},
	} {
		_, err := Render(t.Context(), Options{Root: root, Path: tc.path, SOPS: keys, Helm: tc.helm})
		if err == nil || !strings.Contains(err.Error(), tc.file) || !strings.Contains(err.Error(), "ConfigMap/") || !strings.Contains(err.Error(), "only Secrets") {
			t.Errorf("%s: want an error naming %s and the ConfigMap that holds a decrypted value, got %v", tc.path, tc.file, err)
		}
		if err != nil && (strings.Contains(err.Error(), "sops-env-Jw61") || strings.Contains(err.Error(), "sops-values-Rt92")) {
			t.Errorf("%s: the error holds the decrypted value: %v", tc.path, err)
		}
	}

	// Without the key, each fails naming the encrypted file.
	for path, file := range map[string]string{"kust": "kust/", "chart": "chart/secrets.yaml"} {
		_, err := Render(t.Context(), Options{Root: root, Path: path, Helm: HelmOptions{ValuesFiles: []string{"secrets.yaml"}}})
		if err == nil || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "no age key") {
			t.Errorf("%s without a key: want an error naming %s, got %v", path, file, err)
		}
	}
}
