package apply

import (
	"reflect"
)

// equalIgnoringVolatile compares two objects as the API server returned
// them, ignoring metadata.resourceVersion and the timestamps of
// managedFields: a dry-run never advances the first, and the second says
// when, not what.
func equalIgnoringVolatile(a, b map[string]any) bool {
	return reflect.DeepEqual(withoutVolatile(a), withoutVolatile(b))
}

func withoutVolatile(obj map[string]any) map[string]any {
	out := make(map[string]any, len(obj))
	for k, v := range obj {
		out[k] = v
	}
	md, ok := obj["metadata"].(map[string]any)
	if !ok {
		return out
	}
	mdCopy := make(map[string]any, len(md))
	for k, v := range md {
		mdCopy[k] = v
	}
	delete(mdCopy, "resourceVersion")
	if mfs, ok := md["managedFields"].([]any); ok {
		clean := make([]any, len(mfs))
		for i, mf := range mfs {
			entry, ok := mf.(map[string]any)
			if !ok {
				clean[i] = mf
				continue
			}
			e := make(map[string]any, len(entry))
			for k, v := range entry {
				if k != "time" {
					e[k] = v
				}
			}
			clean[i] = e
		}
		mdCopy["managedFields"] = clean
	}
	out["metadata"] = mdCopy
	return out
}
