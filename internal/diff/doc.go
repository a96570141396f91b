// Package diff turns objects into what a reviewer reads: normalized YAML
// (no managedFields, resourceVersion, uid, generation, timestamps, status or
// last-applied annotation) and unified diffs between two versions of an
// object, with every Secret value replaced by a mask.
//
// A Masker is made once per output. The same value always gets the same
// mask in that output (`<secret #3>`), whether it came from data (base64)
// or stringData (plain), so a reviewer still sees which values changed and
// which stayed, and never the values. Secrets, KubeFed federated Secrets
// and Lists of them are masked. Redact removes every value the Masker has
// seen from any other text (errors, logs) before it is shown, in every form
// text carries it: plain, base64 of both alphabets, URL-encoded, quoted.
package diff
