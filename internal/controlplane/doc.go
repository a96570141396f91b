// Package controlplane starts and stops real Kubernetes control planes on
// loopback, for `make demo` and for the end-to-end tests: one etcd, and per
// cluster a kube-apiserver (with its own port and etcd prefix, RBAC on, audit
// log), kube-controller-manager, kube-scheduler and kwok, which plays the
// kubelet for fake nodes so that pods really get scheduled and become Ready.
//
// The binaries come from the tools modules under hack/ (`make controlplane`);
// this package only configures and runs them. It is not part of the gitk8s
// binary and has nothing to do with reconciling.
//
//	cp, err := controlplane.Start(ctx, controlplane.Options{Dir: dir, BinDir: bin, KwokStages: stages})
//	defer cp.Stop()
//	// cp.Kubeconfig has a context per cluster: local-1, local-2, …
package controlplane
