// Package source opens what gitk8s renders: a plain local directory, read as
// it is on disk, or a Git repository, read at one commit. Either way the
// result is a Snapshot: a read-only tree on disk and the revision it holds.
//
// A Git repository is never read through its work tree: the commit's tree is
// written to a private directory, so uncommitted edits and a checked-out
// branch do not change what is applied. That tree is untrusted input, since
// whoever can push decides what it holds: an entry that could be written
// outside the snapshot or over another entry, a symbolic link that resolves
// outside it, or a .git folder is refused with an *EntryError naming it, and
// nothing is left on disk.
package source
