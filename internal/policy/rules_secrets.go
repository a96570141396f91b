package policy

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// None of these rules may quote a value: findings name keys and variables only.

func init() {
	register("secret-plaintext-in-git", Warning, "Secrets in Git should be encrypted (SOPS) or sealed", checkPlaintextSecrets)
	register("secret-in-env-literal", Warning, "secret-looking environment variables should come from a Secret", checkEnvLiterals)
	register("secret-data-invalid", Error, "Secret data must be base64 of what was meant", checkSecretData)
	register("secret-reference-missing", Error, "Secrets that pods refer to must exist", checkSecretRefs)
	register("configmap-sensitive-content", Warning, "ConfigMaps should not hold passwords or private keys", checkConfigMaps)
}

// sensitiveName matches names of variables and keys that hold secrets.
var sensitiveName = regexp.MustCompile(`(?i)(^|[_.-])(password|passwd|pwd|secret|token|apikey|api[_.-]?key|private[_.-]?key|access[_.-]?key|secret[_.-]?key|credentials?|key[_.-]?content|batch[_.-]?key|key)($|[_.-])|password|secret`)

var privateKey = regexp.MustCompile(`-{3,}\s*BEGIN ([A-Z0-9]+ )*PRIVATE KEY\s*-{3,}`)

func checkPlaintextSecrets(c *Context) []Finding {
	var out []Finding
	for _, o := range c.Objects {
		if o.Object.GetKind() != "Secret" || o.Object.GroupVersionKind().Group != "" {
			continue
		}
		data, _, _ := unstructured.NestedMap(o.Object.Object, "data")
		stringData, _, _ := unstructured.NestedMap(o.Object.Object, "stringData")
		if len(data) == 0 && len(stringData) == 0 {
			continue
		}
		// Encrypted in Git: decrypted by the render (o.Encrypted), or read as
		// ciphertext where no key was given.
		if mac, _, _ := unstructured.NestedString(o.Object.Object, "sops", "mac"); o.Encrypted || strings.HasPrefix(mac, "ENC[") {
			continue
		}
		out = append(out, finding(o, fmt.Sprintf("holds %d values in plain text (base64 is not encryption): anyone who can read the repository can read them", len(data)+len(stringData)),
			"encrypt it with SOPS, or commit a SealedSecret instead"))
	}
	return out
}

func checkEnvLiterals(c *Context) []Finding {
	var out []Finding
	for _, w := range workloads(c.Objects) {
		for _, ctr := range append(containers(w.spec, "containers"), containers(w.spec, "initContainers")...) {
			env, _ := ctr["env"].([]any)
			for _, e := range env {
				m, _ := e.(map[string]any)
				name := str(m, "name")
				value, literal := m["value"].(string)
				if !literal {
					continue
				}
				switch {
				case privateKey.MatchString(value):
					out = append(out, finding(w.obj, fmt.Sprintf("container %s: variable %s holds a private key in plain text", str(ctr, "name"), name), "move it into a Secret and use valueFrom.secretKeyRef"))
				case value != "" && sensitiveName.MatchString(name):
					out = append(out, finding(w.obj, fmt.Sprintf("container %s: variable %s looks like a secret and is set literally", str(ctr, "name"), name), "move the value into a Secret and use valueFrom.secretKeyRef"))
				}
			}
		}
	}
	return out
}

func checkConfigMaps(c *Context) []Finding {
	var out []Finding
	for _, o := range c.Objects {
		if o.Object.GetKind() != "ConfigMap" {
			continue
		}
		data, _, _ := unstructured.NestedStringMap(o.Object.Object, "data")
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			switch {
			case privateKey.MatchString(data[k]):
				out = append(out, finding(o, fmt.Sprintf("key %s holds a private key; ConfigMaps are not for secrets", k), "move it into a Secret"))
			case sensitiveName.MatchString(k):
				out = append(out, finding(o, fmt.Sprintf("key %s looks like a secret; ConfigMaps are readable by anyone who can read the namespace's configuration", k), "move it into a Secret"))
			}
		}
	}
	return out
}

// wordLike is a value a person typed: letters and digits only.
var wordLike = regexp.MustCompile(`^[A-Za-z0-9]{1,64}$`)

func checkSecretData(c *Context) []Finding {
	var out []Finding
	for _, o := range c.Objects {
		if o.Object.GetKind() != "Secret" || o.Object.GroupVersionKind().Group != "" {
			continue
		}
		data, _, _ := unstructured.NestedMap(o.Object.Object, "data")
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			s, ok := data[k].(string)
			if !ok {
				continue
			}
			decoded, err := base64.StdEncoding.DecodeString(s)
			switch {
			case err != nil:
				out = append(out, finding(o, fmt.Sprintf("data[%s] is not valid base64", k), "base64-encode the value, or move it to stringData, which takes plain text"))
			case !utf8.Valid(decoded) && wordLike.MatchString(s) && !strings.HasSuffix(s, "="):
				out = append(out, finding(o, fmt.Sprintf("data[%s] looks like plain text: it decodes to binary rather than to what it says", k), "move it to stringData, or base64-encode it"))
			}
		}
		if typ, _, _ := unstructured.NestedString(o.Object.Object, "type"); typ == "kubernetes.io/dockerconfigjson" {
			raw, ok := data[".dockerconfigjson"].(string)
			decoded, err := base64.StdEncoding.DecodeString(raw)
			var cfg struct {
				Auths map[string]any `json:"auths"`
			}
			if !ok || err != nil || json.Unmarshal(decoded, &cfg) != nil || cfg.Auths == nil {
				out = append(out, finding(o, "type kubernetes.io/dockerconfigjson needs data[.dockerconfigjson]: base64 of JSON with an auths object", "create it with kubectl create secret docker-registry --dry-run=client -o yaml"))
			}
		}
	}
	return out
}

// secretRef is one reference from a pod spec to a Secret.
type secretRef struct {
	name, via string
	optional  bool
}

func secretRefsOf(spec map[string]any) []secretRef {
	var refs []secretRef
	for _, ctr := range append(containers(spec, "containers"), containers(spec, "initContainers")...) {
		env, _ := ctr["env"].([]any)
		for _, e := range env {
			m, _ := e.(map[string]any)
			if ref := mapAt(m, "valueFrom", "secretKeyRef"); ref != nil {
				opt, _ := ref["optional"].(bool)
				refs = append(refs, secretRef{str(ref, "name"), "env " + str(m, "name"), opt})
			}
		}
		envFrom, _ := ctr["envFrom"].([]any)
		for _, e := range envFrom {
			m, _ := e.(map[string]any)
			if ref := mapAt(m, "secretRef"); ref != nil {
				opt, _ := ref["optional"].(bool)
				refs = append(refs, secretRef{str(ref, "name"), "envFrom", opt})
			}
		}
	}
	volumes, _ := spec["volumes"].([]any)
	for _, v := range volumes {
		m, _ := v.(map[string]any)
		if s := mapAt(m, "secret"); s != nil {
			opt, _ := s["optional"].(bool)
			refs = append(refs, secretRef{str(s, "secretName"), "volume " + str(m, "name"), opt})
		}
	}
	pulls, _ := spec["imagePullSecrets"].([]any)
	for _, p := range pulls {
		m, _ := p.(map[string]any)
		refs = append(refs, secretRef{str(m, "name"), "imagePullSecrets", false})
	}
	return refs
}

func checkSecretRefs(c *Context) []Finding {
	if c.Live == nil {
		return nil // offline, a Secret made outside the repository cannot be seen
	}
	var out []Finding
	for _, w := range workloads(c.Objects) {
		ns := c.namespaceOf(w.obj)
		for _, ref := range secretRefsOf(w.spec) {
			if ref.optional || ref.name == "" || c.secretExists(ns, ref.name) {
				continue
			}
			out = append(out, finding(w.obj, fmt.Sprintf("%s refers to Secret %s/%s, which is in neither the repository nor the cluster: its pods will not start", ref.via, ns, ref.name),
				"add the Secret (or its SealedSecret), fix the name, or mark the reference optional"))
		}
	}
	return out
}

func (c *Context) secretExists(ns, name string) bool {
	for _, kind := range []string{"Secret", "SealedSecret"} {
		if c.find(kind, ns, name) != nil {
			return true
		}
	}
	if c.Live != nil {
		if s, err := c.Live.Get("v1", "Secret", ns, name); err != nil || s != nil {
			return true // an error is not proof of absence
		}
	}
	return false
}
