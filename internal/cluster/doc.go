// Package cluster turns kubeconfig contexts into Targets: one per cluster,
// each with its own client, REST mapper over a cached discovery client and
// client-side rate limit. Every call gitk8s makes to a cluster goes through a
// Target, so a single cluster is just the case of one.
//
// It does not decide what to apply or how; see package apply.
package cluster
