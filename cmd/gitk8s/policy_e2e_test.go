package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gitk8s/gitk8s/internal/testenv"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestQuotaFitPredictsTheAPIServer: what gitk8s says fits the quota gets
// all its pods; what it says does not, applied anyway with the gate off,
// gets FailedCreate on its ReplicaSet.
func TestQuotaFitPredictsTheAPIServer(t *testing.T) {
	ns := env.Namespace(t)
	s := newSyncDir(t, map[string]string{
		"quota.yaml": fmt.Sprintf(`apiVersion: v1
kind: ResourceQuota
metadata: {name: compute, namespace: %[1]s}
spec:
  hard: {requests.cpu: "1", pods: "10"}
---
apiVersion: v1
kind: LimitRange
metadata: {name: defaults, namespace: %[1]s}
spec:
  limits:
  - type: Container
    defaultRequest: {cpu: 100m}
    default: {cpu: 200m}
`, ns),
		"fits.yaml": deployment(ns, "fits", 2, ""),
	})
	s.mustRun("apply", exitOK, "--wait", "1m")
	client := env.Client(t, "")
	ctx := context.Background()
	dep, err := client.AppsV1().Deployments(ns).Get(ctx, "fits", metav1.GetOptions{})
	if err != nil || dep.Status.ReadyReplicas != 2 {
		t.Fatalf("the Deployment gitk8s accepted did not get its pods: %v %v", dep.Status, err)
	}

	big := strings.Replace(deployment(ns, "big", 4, ""), "containers: [{name: app, image: nginx}]", "containers: [{name: app, image: nginx, resources: {requests: {cpu: 300m}, limits: {cpu: 400m}}}]", 1)
	s.write("big.yaml", big)
	_, stderr := s.mustRun("apply", exitFailed)
	if !strings.Contains(stderr, "error quota-fit") || !strings.Contains(stderr, "would exceed ResourceQuota compute: requests.cpu") || !strings.Contains(stderr, "> 1 (by") {
		t.Errorf("quota-fit did not explain the overrun:\n%s", stderr)
	}
	if _, err := client.AppsV1().Deployments(ns).Get(ctx, "big", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("a blocked sync wrote the Deployment (err=%v)", err)
	}

	// Applied anyway, the API server and controller manager agree with
	// the prediction: the ReplicaSet cannot create all its pods.
	s.mustRun("apply", exitOK, "--policy", "quota-fit=off")
	deadline := time.Now().Add(30 * time.Second)
	for {
		rsList, err := client.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=big"})
		if err != nil {
			t.Fatal(err)
		}
		failed := false
		for _, rs := range rsList.Items {
			for _, c := range rs.Status.Conditions {
				if c.Type == "ReplicaFailure" && c.Reason == "FailedCreate" && strings.Contains(c.Message, "exceeded quota") {
					failed = true
				}
			}
		}
		if failed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no FailedCreate on the ReplicaSet of the Deployment gitk8s said would not fit: %+v", rsList.Items)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestValidateSARIFAndSecretReference: validate against a cluster finds a
// reference to a Secret that exists nowhere, writes SARIF, and never
// quotes a Secret value.
func TestValidateSARIFAndSecretReference(t *testing.T) {
	ns := env.Namespace(t)
	dir := testenv.WriteFiles(t, map[string]string{
		"app.yaml": deployment(ns, "app", 1, "") + "---\n" + fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: creds, namespace: %s}\nstringData: {token: tok-value-31337}\n", ns),
	})
	// Point the Deployment at a Secret that is nowhere.
	path := dir + "/app.yaml"
	data := strings.Replace(readFile(t, path), "containers: [{name: app, image: nginx}]", "containers: [{name: app, image: nginx, envFrom: [{secretRef: {name: missing-creds}}], env: [{name: API_TOKEN, value: tok-value-31337}]}]", 1)
	writeFile(t, path, data)

	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"validate", dir, "--kubeconfig", env.Kubeconfig, "--context", env.Contexts[0], "-o", "sarif"}, &out, &errOut)
	if code != exitFailed {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errOut.String())
	}
	var sarif struct {
		Version string `json:"version"`
		Runs    []struct {
			Results []struct {
				RuleID    string `json:"ruleId"`
				Level     string `json:"level"`
				Locations []struct {
					PhysicalLocation struct {
						ArtifactLocation struct {
							URI string `json:"uri"`
						} `json:"artifactLocation"`
					} `json:"physicalLocation"`
				} `json:"locations"`
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal(out.Bytes(), &sarif); err != nil {
		t.Fatal(err)
	}
	rules := map[string]string{}
	for _, r := range sarif.Runs[0].Results {
		rules[r.RuleID] = r.Level
		if r.Locations[0].PhysicalLocation.ArtifactLocation.URI != "app.yaml" {
			t.Errorf("location %+v", r.Locations)
		}
	}
	if sarif.Version != "2.1.0" || rules["secret-reference-missing"] != "error" || rules["secret-in-env-literal"] != "warning" || rules["secret-plaintext-in-git"] != "warning" {
		t.Errorf("SARIF results %v", rules)
	}
	if strings.Contains(out.String()+errOut.String(), "tok-value-31337") {
		t.Error("validate output quotes a Secret value")
	}
}
