package reconcile

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/diff"
)

// TestChangeSetTextsAreMaskedWithWhatTheRunLearned: an object's error is
// masked when it fails, with the values known then; a live Secret the plan
// reads later teaches the Masker more. Every text of the change set that a
// driver prints is masked again when the apply is over.
func TestChangeSetTextsAreMaskedWithWhatTheRunLearned(t *testing.T) {
	const live = "live-only-value"
	cs := &apply.ChangeSet{
		Entries: []*apply.ChangeSetEntry{{
			Ref:           "Secret/shop/db",
			Err:           fmt.Errorf("bundle.yaml:1: Secret/shop/db: refused: %s", live),
			Conflicts:     []apply.Conflict{{Field: ".data.password", Message: "conflict with \"kubectl\": " + live}},
			HealthMessage: "waiting for " + live,
		}},
		PruneRefused: errors.New("prune refused: " + live),
		Blocked:      errors.New("blocked: " + live),
	}
	m := diff.NewMasker()
	m.Learn(&unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{"name": "db"}, "stringData": map[string]any{"password": live}}})
	maskChangeSet(m, cs)
	e := cs.Entries[0]
	for what, text := range map[string]string{"error": e.Err.Error(), "conflict": e.Conflicts[0].Message, "health": e.HealthMessage,
		"prune refusal": cs.PruneRefused.Error(), "block": cs.Blocked.Error()} {
		if strings.Contains(text, live) || !strings.Contains(text, "<secret #1>") {
			t.Errorf("%s: %s", what, text)
		}
	}
	maskChangeSet(m, nil)
}
