package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitk8s/gitk8s/internal/testenv"
)

// TestMigrateThenValidateThenApply takes manifests written the way 2018
// courses wrote them: validate names each removed version with its fix,
// migrate rewrites them, and what comes out applies on Kubernetes v1.37.
func TestMigrateThenValidateThenApply(t *testing.T) {
	ns := env.Namespace(t)
	old, err := os.ReadFile(filepath.Join("..", "..", "internal", "apiversions", "testdata", "course-2018.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// Keep the objects that have a replacement, in the test's namespace.
	docs := strings.Split(string(old), "\n---\n")
	var kept []string
	for _, d := range docs {
		if strings.Contains(d, "PodSecurityPolicy") {
			continue
		}
		kept = append(kept, strings.Replace(d, "metadata:\n  name:", "metadata:\n  namespace: "+ns+"\n  name:", 1))
	}
	dir := testenv.WriteFiles(t, map[string]string{"app/course.yaml": strings.Join(kept, "\n---\n")})

	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"validate", dir, "--context", env.Contexts[0], "--kubeconfig", env.Kubeconfig}, &out, &errOut)
	if code != exitFailed {
		t.Fatalf("validate before migrate: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	for _, want := range []string{
		"app/course.yaml:1: error api-removed: Deployment/" + ns + "/frontend: extensions/v1beta1 Deployment was removed in Kubernetes 1.16: use apiVersion apps/v1",
		"Ingress/" + ns + "/guestbook: extensions/v1beta1 Ingress was removed in Kubernetes 1.22: use apiVersion networking.k8s.io/v1",
		"HorizontalPodAutoscaler/" + ns + "/frontend: autoscaling/v2beta1 HorizontalPodAutoscaler was removed in Kubernetes 1.25",
		"CronJob/" + ns + "/backup: batch/v1beta1 CronJob was removed in Kubernetes 1.25",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("validate lacks %q:\n%s", want, out.String())
		}
	}

	out.Reset()
	code = run(context.Background(), []string{"migrate", dir}, &out, &errOut)
	if code != exitFailed { // the Ingress pathType is a decision for a person
		t.Fatalf("migrate: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "Deployment/frontend: extensions/v1beta1 → apps/v1") || !strings.Contains(out.String(), "decide: pathType") {
		t.Errorf("migrate report:\n%s", out.String())
	}

	out.Reset()
	if code := run(context.Background(), []string{"validate", dir, "--context", env.Contexts[0], "--kubeconfig", env.Kubeconfig}, &out, &errOut); code != exitOK {
		t.Fatalf("validate after migrate: exit %d\n%s", code, out.String())
	}
	// The HPA still points at extensions/v1beta1 in scaleTargetRef, which
	// the API accepts as a reference; everything applies and gets healthy.
	s := &syncDir{t: t, dir: dir, inventory: "migrated-" + ns, memory: t.TempDir()}
	s.mustRun("apply", exitOK, "--wait", "1m")
}
