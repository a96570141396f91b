// Package render turns the manifests in a source tree into Kubernetes
// objects: plain YAML and JSON files today, each object carrying the file and
// line it came from so that every later error can point at it.
//
// Render reads; it does not talk to a cluster, default namespaces or check
// that kinds exist — that is for the stages after it. It does reject what no
// later stage could make sense of: YAML syntax errors, documents that are not
// objects, objects without apiVersion, kind or metadata.name, and the same
// object defined twice.
//
//	bundle, err := render.Render(ctx, render.Options{Root: dir, Path: "deploy"})
//	for _, obj := range bundle.Objects {
//		fmt.Println(obj.Source, obj.Ref())
//	}
package render
