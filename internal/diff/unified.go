package diff

import (
	"github.com/pmezard/go-difflib/difflib"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Unified is the unified diff (3 lines of context) from before to after,
// both normalized and masked with m. A nil before is a creation, a nil
// after a deletion. Equal objects give "".
func Unified(name string, before, after *unstructured.Unstructured, m *Masker) string {
	a := YAML(Normalize(before, m))
	b := YAML(Normalize(after, m))
	if a == b {
		return ""
	}
	fromFile, toFile := "live/"+name, "planned/"+name
	if before == nil {
		fromFile = "/dev/null"
	}
	if after == nil {
		toFile = "/dev/null"
	}
	text, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A:        difflib.SplitLines(a),
		B:        difflib.SplitLines(b),
		FromFile: fromFile,
		ToFile:   toFile,
		Context:  3,
	})
	if err != nil {
		return "# cannot diff: " + err.Error() + "\n"
	}
	return text
}
