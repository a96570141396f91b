package apply

import (
	"errors"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/gitk8s/gitk8s/internal/cluster"
	"github.com/gitk8s/gitk8s/internal/diff"
)

// TestFailMasksTheErrorOfEveryKind: an admission webhook or policy in the
// cluster may quote a Secret of the bundle (its params, say) when it
// refuses another object, so the error of any object is masked, not only
// a Secret's.
func TestFailMasksTheErrorOfEveryKind(t *testing.T) {
	masker := diff.NewMasker()
	masker.Learn(&unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{"name": "params"}, "stringData": map[string]any{"token": "param-token-value"}}})
	m := NewManager(&cluster.Target{Name: "one"}, Options{Masker: masker})
	cm := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "settings", "namespace": "shop"}}}
	it := &item{entry: &ChangeSetEntry{Ref: "ConfigMap/shop/settings"}, obj: cm}
	refusal := errors.New(`admission webhook "check.example" denied the request: token param-token-value may not be used here`)
	m.fail(it, refusal)
	if it.entry.Action != Failed || strings.Contains(it.entry.Err.Error(), "param-token-value") || !strings.Contains(it.entry.Err.Error(), "<secret #1>") {
		t.Errorf("%s: %v", it.entry.Action, it.entry.Err)
	}
	if !errors.Is(it.entry.Err, refusal) {
		t.Error("the masked error does not unwrap to the API server's")
	}
}
