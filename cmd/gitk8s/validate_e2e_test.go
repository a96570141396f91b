package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/gitk8s/gitk8s/internal/cluster"
	"github.com/gitk8s/gitk8s/internal/policy"
	"github.com/gitk8s/gitk8s/internal/render"
	"github.com/gitk8s/gitk8s/internal/testenv"
)

// TestValidateRendersChartsForTheCluster validates a Helm chart offline
// and against a cluster: online, the chart is rendered as apply renders
// it, with the cluster's version and namespace, so the findings are about
// the objects apply would write.
func TestValidateRendersChartsForTheCluster(t *testing.T) {
	target := env.Target(t, "")
	caps, err := cluster.CapabilitiesOf(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	if caps.KubeVersion == render.DefaultKubeVersion {
		t.Skipf("the cluster's version is the render's default, %s: the test could not tell them apart", caps.KubeVersion)
	}
	dir := testenv.WriteFiles(t, map[string]string{
		"caps/Chart.yaml": "apiVersion: v2\nname: caps\nversion: 0.1.0\n",
		// The Deployment has no probes, so the gate names it in a warning.
		"caps/templates/deployment.yaml": `apiVersion: apps/v1
kind: Deployment
metadata:
  name: caps-{{ .Capabilities.KubeVersion.Version | replace "." "-" }}
  namespace: {{ .Release.Namespace }}
spec:
  selector: {matchLabels: {app: caps}}
  template:
    metadata: {labels: {app: caps}}
    spec:
      containers: [{name: c, image: example.test/caps:1}]
`,
	})
	name := func(version string) string { return "caps-" + strings.ReplaceAll(version, ".", "-") }
	tests := []struct {
		name  string
		flags []string
		want  string
	}{
		{name: "offline", want: "Deployment/default/" + name(render.DefaultKubeVersion)},
		{name: "online", flags: []string{"--context", env.Contexts[0]}, want: "Deployment/" + target.Namespace + "/" + name(caps.KubeVersion)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := gitk8s(t, append([]string{"validate", dir, "--path", "caps", "-o", "json"}, tt.flags...)...)
			if code != exitOK {
				t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
			}
			var out struct{ Findings []policy.Finding }
			if err := json.Unmarshal([]byte(stdout), &out); err != nil {
				t.Fatalf("%v\n%s", err, stdout)
			}
			var objects []string
			for _, f := range out.Findings {
				objects = append(objects, f.Object)
			}
			if len(objects) == 0 || !strings.Contains(strings.Join(objects, " "), tt.want) {
				t.Errorf("findings are about %v, want them about %s\n%s", objects, tt.want, stdout)
			}
			for _, o := range objects {
				if o != tt.want {
					t.Errorf("a finding is about %s, want only %s", o, tt.want)
				}
			}
		})
	}
}
