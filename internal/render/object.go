package render

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/cli-utils/pkg/object"
)

// Source is where an object was written: a file relative to the source
// root and the line its document starts on.
type Source struct {
	File string
	Line int
}

// String formats the source as file:line.
func (s Source) String() string {
	if s.Line == 0 {
		return s.File
	}
	return fmt.Sprintf("%s:%d", s.File, s.Line)
}

// Object is one rendered object and where it came from.
type Object struct {
	Object *unstructured.Unstructured
	Source Source
	// Encrypted says the object was decrypted from a file SOPS encrypted.
	Encrypted bool
}

// ID is the object's identity: group, kind, namespace and name.
func (o *Object) ID() object.ObjMetadata {
	return IDOf(o.Object)
}

// Ref names the object for people: Kind/namespace/name or Kind/name.
func (o *Object) Ref() string {
	return RefOf(o.Object)
}

// IDOf is the identity of any unstructured object.
func IDOf(u *unstructured.Unstructured) object.ObjMetadata {
	return object.ObjMetadata{
		GroupKind: u.GroupVersionKind().GroupKind(),
		Namespace: u.GetNamespace(),
		Name:      u.GetName(),
	}
}

// RefOf names any unstructured object for people.
func RefOf(u *unstructured.Unstructured) string {
	return Ref(u.GroupVersionKind().GroupKind(), u.GetNamespace(), u.GetName())
}

// Ref names an object for people: Kind/namespace/name, or Kind/name for
// objects without a namespace. The group is left out; kinds are rarely
// ambiguous in one bundle and error messages stay readable.
func Ref(gk schema.GroupKind, namespace, name string) string {
	if namespace == "" {
		return gk.Kind + "/" + name
	}
	return gk.Kind + "/" + namespace + "/" + name
}

// Bundle is everything rendered from one source, in a stable order: files in
// lexical order, objects in the order they appear in each file.
type Bundle struct {
	Objects []*Object
	// Skipped are the files and folders left out because they are not
	// Kubernetes objects (Helm values, tool configurations, kustomize
	// Components), for drivers to mention.
	Skipped []Skipped
}

// Error is a problem with one file, document or object of the source.
type Error struct {
	// Source is the file and line.
	Source Source
	// Object names the object when there is one (Kind/namespace/name).
	Object string
	// Err says what is wrong and, where it can, how to fix it.
	Err error
}

func (e *Error) Error() string {
	if e.Object == "" {
		return fmt.Sprintf("%s: %v", e.Source, e.Err)
	}
	return fmt.Sprintf("%s: %s: %v", e.Source, e.Object, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }
