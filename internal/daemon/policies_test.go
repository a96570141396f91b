package daemon

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gitk8s/gitk8s/internal/testenv"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestLoadConfigRefusesBadPolicies(t *testing.T) {
	_, err := LoadConfig(writeConfig(t, `apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: a}}
syncs:
- name: shop
  source: {url: https://git.example/shop.git}
  clusters: [local]
  policies:
    builtin: strict
    dirs: [policies, ../elsewhere, /abs]
    modes: {quota-fit: off, no-such-rule: warn, probe-timing: loud}
    disabled: [also-no-such-rule]
`))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`sync shop: policies: builtin: mode "strict": use enforce, warn or off`,
		"sync shop: policies: rule no-such-rule: no such rule",
		`sync shop: policies: rule probe-timing: mode "loud": use enforce, warn or off`,
		"sync shop: policies: disabled rule also-no-such-rule: no such rule",
		`sync shop: policies: dirs: "../elsewhere" must be a folder inside the repository`,
		`sync shop: policies: dirs: "/abs" must be a folder inside the repository`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "quota-fit") {
		t.Errorf("a valid mode was refused:\n%v", err)
	}

	cfg, err := LoadConfig(writeConfig(t, `apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: a}}
syncs:
- name: shop
  source: {url: https://git.example/shop.git}
  clusters: [local]
  policies: {builtin: warn, dirs: [policies], modes: {quota-fit: enforce, probe-liveness-missing: off}, excludeNamespaces: [kube-system], disabled: [probe-timing]}
`))
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.Syncs[0].Policies; p == nil || p.Builtin != "warn" || p.Modes["quota-fit"] != "enforce" || p.Modes["probe-liveness-missing"] != "off" || p.Disabled[0] != "probe-timing" || p.ExcludeNamespaces[0] != "kube-system" {
		t.Errorf("policies read as %+v", p)
	}
}

// TestPoliciesPerSync syncs one commit, which quota-fit blocks, three
// ways: with the default policies (blocked, nothing applied), with
// quota-fit off, and with the built-in rules in warn mode (both applied).
func TestPoliciesPerSync(t *testing.T) {
	strictNS, offNS, warnNS := env.Namespace(t), env.Namespace(t), env.Namespace(t)
	srv := testenv.NewGitServer(t)
	// One pod allowed; one replica plus the rolling update's surge is two.
	srv.Commit(t, map[string]string{"app.yaml": `apiVersion: v1
kind: ResourceQuota
metadata: {name: pods}
spec: {hard: {pods: "1"}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx}]}
`})
	cfg, err := LoadConfig(writeConfig(t, fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: %[1]s, path: %[2]s}}
syncs:
- {name: strict-%[4]s, source: {url: %[3]s, interval: 1h}, clusters: [local], namespace: %[4]s, policies: {builtin: enforce}}
- {name: off-%[5]s, source: {url: %[3]s, interval: 1h}, clusters: [local], namespace: %[5]s, policies: {modes: {quota-fit: off}}}
- {name: warn-%[6]s, source: {url: %[3]s, interval: 1h}, clusters: [local], namespace: %[6]s, policies: {builtin: warn}}
`, env.Contexts[0], env.Kubeconfig, srv.URL, strictNS, offNS, warnNS)))
	if err != nil {
		t.Fatal(err)
	}
	d, logs := runElectedDaemon(t, cfg)
	done := func(name string) bool { return statusNamed(d, name).Condition("Ready").Status != "" }
	deadline := time.Now().Add(60 * time.Second)
	for !done("strict-"+strictNS) || !done("off-"+offNS) || !done("warn-"+warnNS) {
		if time.Now().After(deadline) {
			t.Fatalf("the syncs did not finish: %+v\nlogs:\n%s", d.Status(), logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	client := env.Client(t, "")
	deployed := func(ns string) bool {
		_, err := client.AppsV1().Deployments(ns).Get(context.Background(), "web", metav1.GetOptions{})
		return err == nil
	}
	if st := statusNamed(d, "strict-"+strictNS); st.Condition("Ready").Reason != ReasonPolicyViolation || !strings.Contains(st.LastError, "quota-fit") || deployed(strictNS) {
		t.Errorf("default policies: status %+v, deployed %v", st, deployed(strictNS))
	}
	for _, name := range []string{"off-" + offNS, "warn-" + warnNS} {
		ns := strings.SplitN(name, "-", 2)[1]
		if st := statusNamed(d, name); st.Condition("Ready").Status != "True" || !deployed(ns) {
			t.Errorf("%s: status %+v, deployed %v\nlogs:\n%s", name, st, deployed(ns), logs())
		}
	}
}
