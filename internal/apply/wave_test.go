package apply

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestWaveOfReadsArgoCDAlias(t *testing.T) {
	for _, tc := range []struct {
		annotations map[string]string
		want        int
		wantErr     string
	}{
		{nil, 0, ""},
		{map[string]string{AnnotationWave: "2"}, 2, ""},
		{map[string]string{AnnotationArgoWave: "-1"}, -1, ""},
		{map[string]string{AnnotationWave: "3", AnnotationArgoWave: "-1"}, 3, ""},
		{map[string]string{AnnotationArgoWave: "first"}, 0, `annotation argocd.argoproj.io/sync-wave: "first" is not a whole number`},
	} {
		u := &unstructured.Unstructured{Object: map[string]any{}}
		u.SetAnnotations(tc.annotations)
		got, err := waveOf(u)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("%v: error %v, want %q", tc.annotations, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%v: wave %d (%v), want %d", tc.annotations, got, err, tc.want)
		}
	}
}
