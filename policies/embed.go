// Package policies holds gitk8s's built-in ValidatingAdmissionPolicies as
// YAML, for people to read, copy and change; gitk8s evaluates them with
// the policies of each repository.
package policies

import "embed"

// FS holds the built-in policy files.
//
//go:embed *.yaml
var FS embed.FS
