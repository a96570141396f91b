package faults

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gitk8s/gitk8s/internal/testenv"
)

// driftYAML is a Deployment of 2 replicas, its Service and ten
// ConfigMaps holding value.
func driftYAML(ns, value string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: %[1]s}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "nginx:1.27"}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: %[1]s}
spec:
  selector: {app: web}
  ports: [{port: 80}]
`, ns)
	for i := range 10 {
		b.WriteString(configMapYAML(ns, fmt.Sprintf("cm-%d", i), value))
	}
	return b.String()
}

// TestFaultPeopleEditWhileSyncing has people run kubectl edit, delete and
// scale on managed objects while the daemon syncs a new revision pushed
// before every other change: each change is healed from its watch event
// within seconds, and at the end every object is as the last revision
// says.
func TestFaultPeopleEditWhileSyncing(t *testing.T) {
	ns := env.Namespace(t)
	c := client(t, "")
	ctx := context.Background()
	srv := testenv.NewGitServer(t)
	revision, value := srv.Commit(t, map[string]string{"app.yaml": driftYAML(ns, "r0")}), "r0"
	name := "drift-" + ns
	d := startDaemon(t, daemonSpec{Syncs: fmt.Sprintf(`- name: %s
  source: {url: %s, interval: 1s}
  clusters: [c1]
  prune: true
  wait: {timeout: 1m}
  policies: {skip: true}
`, name, srv.URL)})
	d.waitSynced(t, name, revision, time.Minute)

	// The editor kubectl edit runs: it rewrites the file it is given.
	dir := t.TempDir()
	editor := func(script string) string {
		p := filepath.Join(dir, fmt.Sprintf("editor-%d.sh", len(script)))
		if err := os.WriteFile(p, []byte("#!/bin/sh\nsed -i -e '"+script+"' \"$1\"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	editValue := editor(`s/^  value: .*/  value: edited/`)
	editImage := editor(`s/image: nginx:1.27/image: nginx:edited/`)
	kubectl := func(editorPath string, args ...string) error {
		cmd := exec.Command(env.Kubectl(), append([]string{"--kubeconfig", env.Kubeconfig, "--context", env.Contexts[0], "-n", ns}, args...)...)
		cmd.Env = append(os.Environ(), "KUBE_EDITOR="+editorPath)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	cmValue := func(n string) (string, bool) {
		cm, err := c.CoreV1().ConfigMaps(ns).Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			return "", false
		}
		return cm.Data["value"], true
	}
	type action struct {
		kind   string
		run    func(i int) error
		healed func(i int) bool
	}
	actions := []action{
		{"kubectl scale deployment", func(int) error { return kubectl("", "scale", "deployment", "web", "--replicas=5") }, func(int) bool {
			dep, err := c.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
			return err == nil && dep.Spec.Replicas != nil && *dep.Spec.Replicas == 2
		}},
		{"kubectl edit configmap", func(i int) error { return kubectl(editValue, "edit", "configmap", fmt.Sprintf("cm-%d", i%10)) }, func(i int) bool {
			v, ok := cmValue(fmt.Sprintf("cm-%d", i%10))
			return ok && v != "edited"
		}},
		{"kubectl delete configmap", func(i int) error {
			return kubectl("", "delete", "configmap", fmt.Sprintf("cm-%d", (i+5)%10), "--wait=false")
		}, func(i int) bool {
			_, ok := cmValue(fmt.Sprintf("cm-%d", (i+5)%10))
			return ok
		}},
		{"kubectl edit deployment", func(int) error { return kubectl(editImage, "edit", "deployment", "web") }, func(int) bool {
			dep, err := c.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
			return err == nil && dep.Spec.Template.Spec.Containers[0].Image == "nginx:1.27"
		}},
		{"kubectl delete service", func(int) error { return kubectl("", "delete", "service", "web", "--wait=false") }, func(int) bool {
			_, err := c.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
			return err == nil
		}},
	}

	requests := markRequests(t)
	driftBefore := d.metric(t, "gitk8s_drift_total")
	heals := map[string][]time.Duration{}
	commits := 0
	var lastChange time.Time
	for round := range 3 {
		for i, a := range actions {
			// Git moves on every other change people make, so that the
			// daemon's syncs of new revisions overlap with their changes.
			if i%2 == 0 {
				commits++
				value = fmt.Sprintf("r%d", commits)
				revision = srv.Commit(t, map[string]string{"app.yaml": driftYAML(ns, value)})
			}
			var err error
			for range 3 { // kubectl edit loses a race with a sync now and then: a conflict
				if err = a.run(round); err == nil {
					break
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			done := time.Now()
			lastChange = done
			poll(t, a.kind+" healed", 30*time.Second, 20*time.Millisecond, func() bool { return a.healed(round) })
			heals[a.kind] = append(heals[a.kind], time.Since(done))
			time.Sleep(300 * time.Millisecond)
		}
	}
	// Converged: from the last change people made until the sync is
	// Ready at the last revision.
	d.waitSynced(t, name, revision, time.Minute)
	converged := time.Since(lastChange)

	kinds := make([]string, 0, len(heals))
	for k := range heals {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		ds := heals[k]
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		t.Logf("%s: healed in %s median, %s at most (%d times)", k, ds[len(ds)/2].Round(10*time.Millisecond), ds[len(ds)-1].Round(10*time.Millisecond), len(ds))
	}
	t.Logf("%d commits; drift events: %.0f; reconciles: %d", commits, d.metric(t, "gitk8s_drift_total")-driftBefore, d.reconciles(t, ""))

	lost := 0
	dep, err := c.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil || *dep.Spec.Replicas != 2 || dep.Spec.Template.Spec.Containers[0].Image != "nginx:1.27" {
		lost++
	}
	if _, err := c.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{}); err != nil {
		lost++
	}
	for i := range 10 {
		if got, ok := cmValue(fmt.Sprintf("cm-%d", i)); !ok || got != value {
			lost++
		}
	}
	figures(t, "kubectl edit, delete and scale on managed objects during syncs", converged, requests.sent(t), lost)
}
