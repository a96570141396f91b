// Package faults holds the fault matrix of docs/reliability.md: end-to-end
// tests that break one part of a running system — an API server, etcd,
// the Git server, a cluster, the daemon, its leader, its managed objects,
// its webhook listener — while the gitk8s daemon (the binary, run as a
// child process) syncs, and check that it ends converged on what Git says
// with no object lost. Each test logs its figures in one form:
//
//	fault: <name>: converged in <d>, requests <n>, objects lost <n>
//
// The package starts a control plane of its own (three clusters on one
// etcd), whatever GITK8S_TEST_KUBECONFIG says, since its tests kill and
// restart that control plane's processes:
//
//	go test -count=1 -v -run TestFault ./test/faults/
//
// It holds no code the gitk8s binary uses.
package faults
