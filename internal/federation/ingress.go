package federation

import (
	"encoding/json"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/gitk8s/gitk8s/internal/apiversions"
)

// modernizeIngress converts an Ingress template written for KubeFed's day
// (extensions/v1beta1 backends: serviceName, servicePort) to
// networking.k8s.io/v1, the only version served now, with the same
// conversion `gitk8s migrate` makes.
func modernizeIngress(u *unstructured.Unstructured) error {
	data, err := json.Marshal(u.Object)
	if err != nil {
		return err
	}
	if !strings.Contains(string(data), `"serviceName"`) {
		return nil
	}
	legacy := u.DeepCopy()
	legacy.SetAPIVersion("extensions/v1beta1")
	y, err := yaml.Marshal(legacy.Object)
	if err != nil {
		return err
	}
	out, _, err := apiversions.Migrate(y)
	if err != nil {
		return fmt.Errorf("convert the Ingress template to networking.k8s.io/v1: %w", err)
	}
	j, err := yaml.YAMLToJSON(out)
	if err != nil {
		return err
	}
	converted := &unstructured.Unstructured{}
	if err := converted.UnmarshalJSON(j); err != nil {
		return err
	}
	u.Object = converted.Object
	return nil
}
