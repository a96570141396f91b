package diff

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

const lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

// Normalize returns a copy of the object without what changes on every
// write or is not the user's to set: status, managedFields,
// resourceVersion, uid, generation, creationTimestamp, selfLink and the
// last-applied annotation. Secret values are masked with m.
func Normalize(u *unstructured.Unstructured, m *Masker) *unstructured.Unstructured {
	if u == nil {
		return nil
	}
	c := u.DeepCopy()
	delete(c.Object, "status")
	for _, f := range []string{"managedFields", "resourceVersion", "uid", "generation", "creationTimestamp", "selfLink"} {
		unstructured.RemoveNestedField(c.Object, "metadata", f)
	}
	unstructured.RemoveNestedField(c.Object, "metadata", "annotations", lastAppliedAnnotation)
	if ann, ok, _ := unstructured.NestedMap(c.Object, "metadata", "annotations"); ok && len(ann) == 0 {
		unstructured.RemoveNestedField(c.Object, "metadata", "annotations")
	}
	return m.MaskObject(c)
}

// YAML renders a normalized object as YAML with sorted keys.
func YAML(u *unstructured.Unstructured) string {
	if u == nil {
		return ""
	}
	data, err := yaml.Marshal(u.Object)
	if err != nil {
		return "# cannot render: " + err.Error() + "\n"
	}
	return string(data)
}
