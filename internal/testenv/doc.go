// Package testenv gives end-to-end tests a real Kubernetes control plane
// (see package controlplane): one per test package, started from TestMain,
// or an already running one named by GITK8S_TEST_KUBECONFIG. Each test gets
// its own namespace.
//
//	var env *testenv.Env
//
//	func TestMain(m *testing.M) { testenv.Main(m, &env, 1) }
//
//	func TestX(t *testing.T) {
//		ns := env.Namespace(t)
//		target := env.Target(t, "")
//		…
//	}
//
// Tests that need it fail, with the reason, when the control plane cannot
// start; they are never skipped.
package testenv
