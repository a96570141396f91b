package diff

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Masker replaces Secret values with stable masks. It is safe for
// concurrent use.
type Masker struct {
	mu    sync.Mutex
	masks map[string]string // plain value → mask
}

// NewMasker returns a Masker with no values yet.
func NewMasker() *Masker {
	return &Masker{masks: map[string]string{}}
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
	return s
}

// Learn records the values of a Secret without changing it, so that
// Redact knows them; objects that are not Secrets are ignored.
func (m *Masker) Learn(u *unstructured.Unstructured) {
	if !IsSecret(u) {
		return
	}
	_ = m.MaskObject(u.DeepCopy())
}

// MaskObject replaces, in place, every value of a Secret's data and
// stringData with its mask. Objects that are not Secrets are left alone.
// It returns the object for convenience.
func (m *Masker) MaskObject(u *unstructured.Unstructured) *unstructured.Unstructured {
	if !IsSecret(u) {
		return u
	}
	// Keys in order, so that masks are numbered the same on every run.
	if data, ok := u.Object["data"].(map[string]any); ok {
		for _, k := range sortedKeys(data) {
			plain := scalarText(data[k])
			if decoded, err := base64.StdEncoding.DecodeString(plain); err == nil {
				plain = string(decoded)
			}
			data[k] = m.mask(plain)
		}
	}
	if data, ok := u.Object["stringData"].(map[string]any); ok {
		for _, k := range sortedKeys(data) {
			data[k] = m.mask(scalarText(data[k]))
		}
	}
	// The last-applied annotation of client-side apply holds the whole
	// object, values included.
	if ann := u.GetAnnotations(); ann != nil {
		if _, ok := ann[lastAppliedAnnotation]; ok {
			ann[lastAppliedAnnotation] = "<removed: holds Secret values>"
			u.SetAnnotations(ann)
		}
	}
	return u
}

// Redact replaces every Secret value the Masker has seen, plain or in
// base64, with its mask. Use it on any text shown to people that might
// quote a value: API errors, log lines. Values shorter than 4 characters
// are masked in objects but not searched for in text, where they would
// match everywhere.
func (m *Masker) Redact(text string) string {
	if text == "" {
		return text
	}
	m.mu.Lock()
	type pair struct{ value, mask string }
	var pairs []pair
	for plain, mask := range m.masks {
		if len(plain) < 4 {
			continue
		}
		pairs = append(pairs, pair{plain, mask})
		pairs = append(pairs, pair{base64.StdEncoding.EncodeToString([]byte(plain)), mask})
	}
	m.mu.Unlock()
	// Longer values first, so a value that contains another is replaced whole.
	sort.Slice(pairs, func(i, j int) bool { return len(pairs[i].value) > len(pairs[j].value) })
	for _, p := range pairs {
		text = strings.ReplaceAll(text, p.value, p.mask)
	}
	return text
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
