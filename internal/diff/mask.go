package diff

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// KubeFed's groups, as internal/federation names them; the diff package
// does not depend on federation, which depends on render.
const (
	kubefedTypesGroup = "types.kubefed.io"
	kubefedCoreGroup  = "core.kubefed.io"
)

// minRedacted is the shortest value Redact searches for in text: shorter
// ones would match everywhere. Objects mask every value, however short.
const minRedacted = 4

// Masker replaces Secret values with stable masks. It is safe for
// concurrent use.
//
// The objects whose values it masks are core Secrets (data and
// stringData), KubeFed FederatedSecrets and any Federated<Kind> whose
// FederatedTypeConfig targets a core Secret (spec.template's data and
// stringData, and the values of overrides of those fields), and Lists of
// any of them.
type Masker struct {
	mu sync.Mutex
	// masks maps each value, as the object means it (data decoded), to
	// its mask; objects are masked from it.
	masks map[string]string
	// aliases are other texts of a value that Redact also removes: data as
	// written when it is not the canonical base64 (line breaks), a value
	// without the surrounding white space of `echo value | base64`.
	aliases map[string]string
	// secretKinds are Federated<Kind> kinds whose target is a Secret.
	secretKinds map[string]bool
	// pending are federated objects of kinds not known to hold Secrets
	// yet: a FederatedTypeConfig later in the bundle may say they do.
	pending map[string][]*unstructured.Unstructured
	// forms finds every form of every value in text; nil when values were
	// learned since it was built.
	forms *formIndex
}

// NewMasker returns a Masker with no values yet.
func NewMasker() *Masker {
	return &Masker{masks: map[string]string{}, aliases: map[string]string{},
		secretKinds: map[string]bool{"FederatedSecret": true}, pending: map[string][]*unstructured.Unstructured{}}
}

// IsSecret reports whether the object is a core Secret.
func IsSecret(u *unstructured.Unstructured) bool {
	return u != nil && u.GetKind() == "Secret" && u.GroupVersionKind().Group == ""
}

// mask returns the mask of a plain value, assigning the next number to a
// value not seen before.
func (m *Masker) mask(plain string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.masks[plain]; ok {
		return s
	}
	s := fmt.Sprintf("<secret #%d>", len(m.masks)+1)
	m.masks[plain] = s
	if trimmed := strings.TrimSpace(plain); trimmed != plain {
		m.aliases[trimmed] = s
	}
	m.forms = nil
	return s
}

// alias makes Redact remove text as it removes the value of mask.
func (m *Masker) alias(text, mask string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.aliases[text]; !ok {
		m.aliases[text] = mask
		m.forms = nil
	}
}

// Learn records the values of an object that holds Secret values without
// changing it, so that Redact knows them; other objects are ignored. A
// FederatedTypeConfig that targets Secrets makes its Federated<Kind> one
// of them, whether its objects come before or after it.
func (m *Masker) Learn(u *unstructured.Unstructured) {
	if u == nil {
		return
	}
	if kind, ok := secretTypeConfig(u); ok {
		m.mu.Lock()
		m.secretKinds[kind] = true
		waiting := m.pending[kind]
		delete(m.pending, kind)
		m.mu.Unlock()
		for _, w := range waiting {
			_ = m.MaskObject(w.DeepCopy())
		}
		return
	}
	if isFederated(u) && !m.federatedSecret(u) {
		m.mu.Lock()
		m.pending[u.GetKind()] = append(m.pending[u.GetKind()], u)
		m.mu.Unlock()
		return
	}
	if !m.holdsValues(u) {
		return
	}
	_ = m.MaskObject(u.DeepCopy())
}

// holdsValues reports whether MaskObject changes the object.
func (m *Masker) holdsValues(u *unstructured.Unstructured) bool {
	return IsSecret(u) || m.federatedSecret(u) || u.IsList()
}

// MaskObject replaces, in place, every Secret value of the object with its
// mask: a Secret's data and stringData, a federated Secret's template and
// overrides, every such item of a List. Other objects are left alone. It
// returns the object for convenience.
func (m *Masker) MaskObject(u *unstructured.Unstructured) *unstructured.Unstructured {
	if u == nil {
		return u
	}
	switch {
	case u.IsList():
		items, _ := u.Object["items"].([]any)
		for _, item := range items {
			if obj, ok := item.(map[string]any); ok {
				m.MaskObject(&unstructured.Unstructured{Object: obj})
			}
		}
		return u
	case IsSecret(u):
		m.maskSecretFields(u.Object)
	case m.federatedSecret(u):
		if template, ok, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", "template"); ok {
			if t, ok := template.(map[string]any); ok {
				m.maskSecretFields(t)
				maskLastApplied(t)
			}
		}
		m.maskOverrides(u.Object)
	default:
		return u
	}
	maskLastApplied(u.Object)
	return u
}

// MaskAll replaces, in place, every Secret value of the objects with its
// mask, as MaskObject does, after learning them all: so a Federated<Kind>
// is masked even when the FederatedTypeConfig that makes its template a
// Secret comes after it, and Redact knows every value afterwards.
func (m *Masker) MaskAll(objects []*unstructured.Unstructured) {
	for _, u := range objects {
		m.Learn(u)
	}
	for _, u := range objects {
		m.MaskObject(u)
	}
}

// maskSecretFields masks the data and stringData of a Secret, or of a
// federated Secret's template, in place; a null (an override removing a
// key) holds nothing and stays. Keys go in order, so that masks are
// numbered the same on every run.
func (m *Masker) maskSecretFields(obj map[string]any) {
	switch data := obj["data"].(type) {
	case nil:
	case map[string]any:
		for _, k := range sortedKeys(data) {
			if data[k] != nil {
				data[k] = m.maskEncoded(data[k])
			}
		}
	default:
		obj["data"] = m.maskPlain(data)
	}
	switch data := obj["stringData"].(type) {
	case nil:
	case map[string]any:
		for _, k := range sortedKeys(data) {
			if data[k] != nil {
				data[k] = m.maskPlain(data[k])
			}
		}
	default:
		obj["stringData"] = m.maskPlain(data)
	}
}

// maskOverrides masks, in place, the values of a federated Secret's
// overrides that set data or stringData (/data, /data/KEY, /stringData,
// /stringData/KEY).
func (m *Masker) maskOverrides(obj map[string]any) {
	overrides, _, _ := unstructured.NestedFieldNoCopy(obj, "spec", "overrides")
	entries, _ := overrides.([]any)
	for _, entry := range entries {
		e, _ := entry.(map[string]any)
		ops, _ := e["clusterOverrides"].([]any)
		for _, op := range ops {
			o, _ := op.(map[string]any)
			path, _ := o["path"].(string)
			value, ok := o["value"]
			if !ok {
				continue
			}
			switch {
			case path == "/data" || path == "/stringData":
				field := strings.TrimPrefix(path, "/")
				holder := map[string]any{field: value}
				m.maskSecretFields(holder)
				o["value"] = holder[field]
			case strings.HasPrefix(path, "/data/"):
				o["value"] = m.maskEncoded(value)
			case strings.HasPrefix(path, "/stringData/"):
				o["value"] = m.maskPlain(value)
			}
		}
	}
}

// maskEncoded masks a value of data: base64 of the value. The decoded
// value gets the mask; a text that is not base64 is masked as it is.
func (m *Masker) maskEncoded(v any) string {
	raw, ok := v.(string)
	if !ok {
		return m.maskPlain(v)
	}
	decoded, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return m.mask(raw)
	}
	mask := m.mask(string(decoded))
	if raw != base64.StdEncoding.EncodeToString(decoded) {
		// Written with line breaks, as base64(1) wraps it: that text is
		// what an error quoting the manifest would show.
		m.alias(raw, mask)
	}
	return mask
}

// maskPlain masks a value of stringData. A value that is not a string is
// invalid in a Secret, and the API server quotes it when it refuses the
// Secret, so it is known to Redact too: a number as written, a map or list
// by every value in it.
func (m *Masker) maskPlain(v any) string {
	switch v := v.(type) {
	case map[string]any, []any:
		text, _ := json.Marshal(v)
		mask := m.mask(string(text))
		m.learnLeaves(v, mask)
		return mask
	}
	return m.mask(scalarText(v))
}

// learnLeaves makes Redact remove every scalar inside v.
func (m *Masker) learnLeaves(v any, mask string) {
	switch v := v.(type) {
	case map[string]any:
		for _, k := range sortedKeys(v) {
			m.learnLeaves(v[k], mask)
		}
	case []any:
		for _, e := range v {
			m.learnLeaves(e, mask)
		}
	default:
		if text := scalarText(v); text != "" {
			m.alias(text, mask)
		}
	}
}

// maskLastApplied replaces the last-applied annotation of client-side
// apply, which holds the whole object, values included.
func maskLastApplied(obj map[string]any) {
	ann, _, _ := unstructured.NestedStringMap(obj, "metadata", "annotations")
	if _, ok := ann[lastAppliedAnnotation]; ok {
		ann[lastAppliedAnnotation] = "<removed: holds Secret values>"
		_ = unstructured.SetNestedStringMap(obj, ann, "metadata", "annotations")
	}
}

// isFederated reports whether the object is a KubeFed Federated<Kind>.
func isFederated(u *unstructured.Unstructured) bool {
	return u.GroupVersionKind().Group == kubefedTypesGroup && strings.HasPrefix(u.GetKind(), "Federated")
}

// federatedSecret reports whether the object is a Federated<Kind> whose
// template is a Secret.
func (m *Masker) federatedSecret(u *unstructured.Unstructured) bool {
	if u == nil || !isFederated(u) {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.secretKinds[u.GetKind()]
}

// secretTypeConfig returns the federated kind of a FederatedTypeConfig
// whose target type is the core Secret.
func secretTypeConfig(u *unstructured.Unstructured) (string, bool) {
	if u.GroupVersionKind().Group != kubefedCoreGroup || u.GetKind() != "FederatedTypeConfig" {
		return "", false
	}
	kind, _, _ := unstructured.NestedString(u.Object, "spec", "federatedType", "kind")
	group, _, _ := unstructured.NestedString(u.Object, "spec", "targetType", "group")
	target, _, _ := unstructured.NestedString(u.Object, "spec", "targetType", "kind")
	return kind, kind != "" && group == "" && target == "Secret"
}

// Redact replaces every Secret value the Masker has seen with its mask, in
// every form text may carry it: as it is; in base64, standard or URL-safe,
// padded or not; URL-encoded as a query or a path; quoted as Go (%q) and
// JSON quote it, which is how the API server and loggers show a value with
// line breaks or quotes. Use it on any text shown to people that might
// quote a value: API errors, log lines. Values shorter than 4 characters
// are masked in objects but not searched for in text, where they would
// match everywhere.
func (m *Masker) Redact(text string) string {
	if len(text) < minRedacted {
		return text
	}
	return m.index().replace(text)
}

// index is the index of every form of every value, built once per set of
// values.
func (m *Masker) index() *formIndex {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.forms != nil {
		return m.forms
	}
	masks := map[string]string{}
	// Values before aliases, each in order, so that a text that is both
	// gets the same mask on every run.
	for _, set := range []map[string]string{m.masks, m.aliases} {
		values := make([]string, 0, len(set))
		for v := range set {
			values = append(values, v)
		}
		sort.Strings(values)
		for _, v := range values {
			if len(v) < minRedacted {
				continue
			}
			for _, f := range textForms(v) {
				if _, taken := masks[f]; !taken {
					masks[f] = set[v]
				}
			}
		}
	}
	ix := &formIndex{byPrefix: map[string][]textForm{}}
	for text, mask := range masks {
		p := text[:minRedacted]
		ix.byPrefix[p] = append(ix.byPrefix[p], textForm{text: text, mask: mask})
	}
	for _, forms := range ix.byPrefix {
		// Longer forms first, so a value that contains another is
		// replaced whole.
		sort.Slice(forms, func(i, j int) bool {
			if len(forms[i].text) != len(forms[j].text) {
				return len(forms[i].text) > len(forms[j].text)
			}
			return forms[i].text < forms[j].text
		})
	}
	m.forms = ix
	return ix
}

// formIndex finds forms of values in text by their first minRedacted
// bytes: one map lookup per byte of text, however many values there are.
type formIndex struct {
	byPrefix map[string][]textForm
}

// textForm is one form of a value and the value's mask.
type textForm struct{ text, mask string }

// replace replaces, from the left, the longest form that starts at each
// position; a mask put in is never searched again.
func (ix *formIndex) replace(s string) string {
	if len(ix.byPrefix) == 0 {
		return s
	}
	var b strings.Builder
	last := 0
	for i := 0; i+minRedacted <= len(s); {
		found := false
		for _, f := range ix.byPrefix[s[i:i+minRedacted]] {
			if strings.HasPrefix(s[i:], f.text) {
				b.WriteString(s[last:i])
				b.WriteString(f.mask)
				i += len(f.text)
				last, found = i, true
				break
			}
		}
		if !found {
			i++
		}
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// textForms are the texts a value may appear as in an error or a log line.
func textForms(v string) []string {
	b := []byte(v)
	forms := []string{v,
		base64.StdEncoding.EncodeToString(b), base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b),
		url.QueryEscape(v), url.PathEscape(v),
		unquote(strconv.Quote(v)), unquote(strconv.QuoteToASCII(v)),
	}
	if j, err := json.Marshal(v); err == nil {
		forms = append(forms, unquote(string(j)))
	}
	var plain bytes.Buffer
	enc := json.NewEncoder(&plain)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) == nil {
		forms = append(forms, unquote(strings.TrimSuffix(plain.String(), "\n")))
	}
	return forms
}

// unquote drops the quotes around a quoted text.
func unquote(q string) string {
	if len(q) >= 2 {
		return q[1 : len(q)-1]
	}
	return q
}

// RedactError masks, in an error's text, every Secret value the Masker
// knows. The error it returns unwraps to err, so errors.Is and As still see
// what happened; nil stays nil.
func (m *Masker) RedactError(err error) error {
	if err == nil {
		return nil
	}
	text := m.Redact(err.Error())
	if text == err.Error() {
		return err
	}
	return redactedError{err: err, text: text}
}

// redactedError is an error whose text had Secret values masked.
type redactedError struct {
	err  error
	text string
}

func (e redactedError) Error() string { return e.text }
func (e redactedError) Unwrap() error { return e.err }

// scalarText is a value as text. A value written as a number in YAML
// (stringData: {pin: 12345678}) is invalid in a Secret, and the API server
// quotes it when it refuses the Secret, so it must be known to Redact too.
func scalarText(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case int64, int32, int, float64, float32, json.Number:
		return fmt.Sprint(v)
	}
	return ""
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
