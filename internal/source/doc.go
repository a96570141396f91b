// Package source opens what gitk8s renders: a plain local directory, read as
// it is on disk, or a Git repository, read at one commit. Either way the
// result is a Snapshot: a read-only tree on disk and the revision it holds.
//
// A Git repository is never read through its work tree: the commit's tree is
// written to a private directory, so uncommitted edits and a checked-out
// branch do not change what is applied.
package source
