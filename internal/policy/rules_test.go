package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitk8s/gitk8s/internal/render"
)

func objects(t *testing.T, yaml string) []*render.Object {
	t.Helper()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "app.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	// Files that look SOPS-encrypted are read as they are (no key).
	b, err := render.Render(t.Context(), render.Options{Root: root, SOPS: render.SOPSOptions{Ciphertext: true}})
	if err != nil {
		t.Fatal(err)
	}
	return b.Objects
}

func deploy(podSpec string) string {
	return "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n" + podSpec
}

func TestRules(t *testing.T) {
	tests := []struct {
		name   string
		yaml   string
		rule   string
		want   string // "" means the rule must not fire
		absent []string
	}{
		// probes
		{"named probe port not declared", deploy("      containers:\n      - name: app\n        image: x\n        ports: [{name: web, containerPort: 8080}]\n        readinessProbe: {httpGet: {path: /, port: http}}\n"), "probe-port-undeclared", `readinessProbe uses port "http"`, nil},
		{"named probe port declared", deploy("      containers:\n      - name: app\n        image: x\n        ports: [{name: http, containerPort: 8080}]\n        readinessProbe: {httpGet: {path: /, port: http}}\n"), "probe-port-undeclared", "", nil},
		// The kubelet probes a number whether or not the container declares
		// it (ingress-nginx probes its undeclared 10254): a warning, never
		// the blocking rule.
		{"numbered probe port not declared does not block", deploy("      containers:\n      - name: app\n        image: x\n        ports: [{containerPort: 8080}]\n        livenessProbe: {tcpSocket: {port: 9090}}\n"), "probe-port-undeclared", "", nil},
		{"numbered probe port not declared", deploy("      containers:\n      - name: app\n        image: x\n        ports: [{containerPort: 8080}]\n        livenessProbe: {tcpSocket: {port: 9090}}\n"), "probe-port-unlisted", "livenessProbe uses port 9090", nil},
		{"numbered probe port declared", deploy("      containers:\n      - name: app\n        image: x\n        ports: [{containerPort: 9090}]\n        livenessProbe: {tcpSocket: {port: 9090}}\n"), "probe-port-unlisted", "", nil},
		{"named probe port is not a numbered one", deploy("      containers:\n      - name: app\n        image: x\n        ports: [{name: web, containerPort: 8080}]\n        readinessProbe: {httpGet: {path: /, port: http}}\n"), "probe-port-unlisted", "", nil},
		{"liveness equals readiness", deploy("      containers:\n      - name: app\n        image: x\n        livenessProbe: {httpGet: {path: /, port: 80}}\n        readinessProbe: {httpGet: {path: /, port: 80}}\n"), "probe-liveness-equals-readiness", "liveness and readiness probes are the same", nil},
		{"liveness successThreshold", deploy("      containers:\n      - name: app\n        image: x\n        livenessProbe: {httpGet: {path: /, port: 80}, successThreshold: 3}\n"), "probe-timing", "livenessProbe.successThreshold is 3", nil},
		{"timeout not below period", deploy("      containers:\n      - name: app\n        image: x\n        readinessProbe: {httpGet: {path: /, port: 80}, periodSeconds: 5, timeoutSeconds: 5}\n"), "probe-timeout-period", "timeoutSeconds (5) is not below periodSeconds (5)", nil},
		{"jobs need no probes", "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: j, image: x}]\n", "probe-readiness-missing", "", nil},
		// rbac
		{"wildcard verbs", "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: r, namespace: shop}\nrules: [{apiGroups: [apps], resources: [deployments], verbs: ['*']}]\n", "rbac-wildcard", "grants * in verbs", nil},
		{"system roles are Kubernetes' own", "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: 'system:thing'}\nrules: [{apiGroups: ['*'], resources: ['*'], verbs: ['*']}]\n", "rbac-wildcard", "", nil},
		{"escalate", "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r}\nrules: [{apiGroups: [rbac.authorization.k8s.io], resources: [clusterroles], verbs: [escalate]}]\n", "rbac-escalate-bind-impersonate", "grants escalate", nil},
		{"impersonate", "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r}\nrules: [{apiGroups: [''], resources: [users], verbs: [impersonate]}]\n", "rbac-escalate-bind-impersonate", "grants impersonate", nil},
		{"secrets read", "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: r, namespace: shop}\nrules: [{apiGroups: [''], resources: [secrets], verbs: [list]}]\n", "rbac-secrets-read", "can read Secrets", nil},
		{"configmaps read is fine", "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: r, namespace: shop}\nrules: [{apiGroups: [''], resources: [configmaps], verbs: [list]}]\n", "rbac-secrets-read", "", nil},
		{"nodes proxy", "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r}\nrules: [{apiGroups: [''], resources: [nodes/proxy], verbs: [get]}]\n", "rbac-nodes-proxy", "allows nodes/proxy", nil},
		{"anonymous", "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: b}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}\nsubjects: [{kind: Group, name: 'system:unauthenticated', apiGroup: rbac.authorization.k8s.io}]\n", "rbac-anonymous-binding", "binds Group system:unauthenticated", nil},
		{"masters", "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: b, namespace: shop}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}\nsubjects: [{kind: Group, name: 'system:masters', apiGroup: rbac.authorization.k8s.io}]\n", "rbac-anonymous-binding", "system:masters", nil},
		{"binding to a role that is missing", "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: b, namespace: kube-system}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: auth-reader}\nsubjects: [{kind: ServiceAccount, name: adapter, namespace: monitoring}]\n", "rbac-binding-ref-missing", "refers to Role auth-reader, which is not in the repository", nil},
		// Every API server makes this Role; prometheus-adapter and
		// metrics-server bind it.
		{"binding to a Role Kubernetes makes", "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: b, namespace: kube-system}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: extension-apiserver-authentication-reader}\nsubjects: [{kind: ServiceAccount, name: adapter, namespace: monitoring}]\n", "rbac-binding-ref-missing", "", nil},
		{"that Role's name elsewhere is not Kubernetes'", "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: b, namespace: shop}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: extension-apiserver-authentication-reader}\nsubjects: [{kind: ServiceAccount, name: adapter, namespace: monitoring}]\n", "rbac-binding-ref-missing", "refers to Role extension-apiserver-authentication-reader", nil},
		{"cluster role binding to a role", "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: b}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}\nsubjects: [{kind: User, name: u, apiGroup: rbac.authorization.k8s.io}]\n", "rbac-clusterrolebinding-to-role", "the API server rejects it", nil},
		// secrets
		{"plaintext secret", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {password: hunter2-hunter2}\n", "secret-plaintext-in-git", "holds 1 values in plain text", []string{"hunter2"}},
		{"sops secret", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {password: RU5DW2Fi}\nsops: {mac: 'ENC[AES256_GCM,data:abc]'}\n", "secret-plaintext-in-git", "", nil},
		{"invalid base64", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {password: 'not base64!'}\n", "secret-data-invalid", "data[password] is not valid base64", []string{"not base64!"}},
		{"plain text in data", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {password: admin123}\n", "secret-data-invalid", "data[password] looks like plain text", []string{"admin123"}},
		{"real base64", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {password: YWRtaW4xMjM=}\n", "secret-data-invalid", "", nil},
		{"docker config without JSON", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/dockerconfigjson\ndata: {.dockerconfigjson: bm90IGpzb24=}\n", "secret-data-invalid", "needs data[.dockerconfigjson]", nil},
		{"env literal", deploy("      containers:\n      - name: app\n        image: x\n        env: [{name: DB_PASSWORD, value: sup3r-s3cret}]\n"), "secret-in-env-literal", "variable DB_PASSWORD looks like a secret", []string{"sup3r-s3cret"}},
		{"env from secret", deploy("      containers:\n      - name: app\n        image: x\n        env: [{name: DB_PASSWORD, valueFrom: {secretKeyRef: {name: db, key: p}}}]\n"), "secret-in-env-literal", "", nil},
		{"private key in a config map", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {tls.pem: \"-----BEGIN RSA PRIVATE KEY-----\\nabc\\n-----END RSA PRIVATE KEY-----\"}\n", "configmap-sensitive-content", "key tls.pem holds a private key", []string{"abc"}},
		// quotas
		{"quota exceeded with surge and HPA", "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: q, namespace: shop}\nspec: {hard: {requests.cpu: '2', pods: '5'}}\n---\n" +
			deploy("      containers: [{name: app, image: x, resources: {requests: {cpu: 500m}}}]\n") +
			"---\napiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: web, namespace: shop}\nspec: {scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}, minReplicas: 2, maxReplicas: 4}\n",
			"quota-fit", "requests.cpu 2500m > 2 (by 500m)", nil},
		{"limit range defaults count", "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: q, namespace: shop}\nspec: {hard: {limits.memory: 1Gi}}\n---\napiVersion: v1\nkind: LimitRange\nmetadata: {name: l, namespace: shop}\nspec: {limits: [{type: Container, default: {memory: 512Mi}}]}\n---\n" +
			deploy("      containers: [{name: app, image: x}]\n"), "quota-fit", "limits.memory 1536Mi > 1Gi", nil},
		{"init container larger than the sum", "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: q, namespace: shop}\nspec: {hard: {requests.memory: 1Gi}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: shop}\nspec:\n  initContainers: [{name: i, image: x, resources: {requests: {memory: 2Gi}}}]\n  containers: [{name: c, image: x, resources: {requests: {memory: 100Mi}}}]\n",
			"quota-fit", "requests.memory 2Gi > 1Gi", nil},
		{"statefulset storage and node ports", "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: q, namespace: shop}\nspec: {hard: {requests.storage: 5Gi, services.nodeports: '1'}}\n---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db, namespace: shop}\nspec:\n  replicas: 3\n  serviceName: db\n  selector: {matchLabels: {app: db}}\n  template: {metadata: {labels: {app: db}}, spec: {containers: [{name: db, image: x}]}}\n  volumeClaimTemplates: [{metadata: {name: d}, spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 2Gi}}}}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: shop}\nspec: {type: NodePort, ports: [{port: 80}, {port: 443}]}\n",
			"quota-fit", "requests.storage 6Gi > 5Gi (by 1Gi); services.nodeports 2 > 1 (by 1)", nil},
		{"fits", "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: q, namespace: shop}\nspec: {hard: {requests.cpu: '10'}}\n---\n" + deploy("      containers: [{name: app, image: x, resources: {requests: {cpu: 100m}}}]\n"), "quota-fit", "", nil},
		{"resources a quota needs", "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: q, namespace: shop}\nspec: {hard: {limits.cpu: '10'}}\n---\n" + deploy("      containers: [{name: app, image: x}]\n"), "resources-required-by-quota", "container app sets no limits.cpu", nil},
		{"request above the default limit", "apiVersion: v1\nkind: LimitRange\nmetadata: {name: l, namespace: shop}\nspec: {limits: [{type: Container, default: {cpu: 200m}}]}\n---\n" + deploy("      containers: [{name: app, image: x, resources: {requests: {cpu: 300m}}}]\n"), "resources-limitrange-conflict", "cpu request 300m is above its limit 200m", nil},
		{"a limit range fills it", "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: q, namespace: shop}\nspec: {hard: {limits.cpu: '10'}}\n---\napiVersion: v1\nkind: LimitRange\nmetadata: {name: l, namespace: shop}\nspec: {limits: [{type: Container, default: {cpu: 200m}}]}\n---\n" + deploy("      containers: [{name: app, image: x}]\n"), "resources-required-by-quota", "", nil},
	}
	t.Run("decrypted secret", func(t *testing.T) {
		objs := objects(t, "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {password: from-sops}\n")
		objs[0].Encrypted = true
		for _, f := range Evaluate(objs, Config{}, nil) {
			if f.Rule == "secret-plaintext-in-git" {
				t.Errorf("a Secret decrypted from SOPS is reported as plain text in Git: %s", f.Message)
			}
		}
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			findings := Evaluate(objects(t, tt.yaml), Config{}, nil)
			var got []string
			for _, f := range findings {
				if f.Rule == tt.rule {
					got = append(got, f.Message)
				}
				for _, secret := range tt.absent {
					if strings.Contains(f.Message, secret) || strings.Contains(f.Fix, secret) {
						t.Errorf("finding quotes a value: %s", f.Message)
					}
				}
			}
			joined := strings.Join(got, "\n")
			if tt.want == "" && len(got) > 0 {
				t.Errorf("%s fired: %s", tt.rule, joined)
			}
			if tt.want != "" && !strings.Contains(joined, tt.want) {
				t.Errorf("%s: got %q, want %q", tt.rule, joined, tt.want)
			}
		})
	}
}

func TestSkipsAndModes(t *testing.T) {
	yaml := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  annotations: {policy.gitk8s.io/skip: configmap-sensitive-content, policy.gitk8s.io/skip-reason: test fixture}\ndata: {password: x}\n---\n" +
		"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: d\n  annotations: {policy.gitk8s.io/skip: configmap-sensitive-content}\ndata: {password: x}\n"
	findings := Evaluate(objects(t, yaml), Config{}, nil)
	var rules []string
	for _, f := range findings {
		rules = append(rules, f.Object+" "+f.Rule)
	}
	joined := strings.Join(rules, ", ")
	if strings.Contains(joined, "ConfigMap/c configmap-sensitive-content") {
		t.Errorf("a skip with a reason was not honoured: %s", joined)
	}
	if !strings.Contains(joined, "ConfigMap/d configmap-sensitive-content") || !strings.Contains(joined, "ConfigMap/d policy-skip-reason") {
		t.Errorf("a skip without a reason must not skip, and must be reported: %s", joined)
	}
	off := Evaluate(objects(t, yaml), Config{Modes: map[string]Mode{"configmap-sensitive-content": Off}}, nil)
	for _, f := range off {
		if f.Rule == "configmap-sensitive-content" {
			t.Errorf("rule off still fired")
		}
	}
	quota := "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: q, namespace: shop}\nspec: {hard: {pods: '1'}}\n---\n" + deploy("      containers: [{name: app, image: x}]\n")
	if !Blocking(Evaluate(objects(t, quota), Config{}, nil)) {
		t.Error("quota-fit does not block by default")
	}
	if Blocking(Evaluate(objects(t, quota), Config{Modes: map[string]Mode{"quota-fit": Warn}}, nil)) {
		t.Error("quota-fit in warn mode still blocks")
	}
	if f := Evaluate(objects(t, quota), Config{ExcludeNamespaces: []string{"shop"}}, nil); len(f) != 0 {
		t.Errorf("an excluded namespace was checked: %v", f)
	}
}

// TestSlowProbeTimeoutIsAWarning: a probe that may take longer than its
// period (the course's health-check lesson: timeoutSeconds 30, the default
// period of 10 s) breaks nothing, so it is a warning and never blocks.
func TestSlowProbeTimeoutIsAWarning(t *testing.T) {
	for _, r := range builtin {
		switch r.ID {
		case "probe-timeout-period":
			if r.Severity != Warning {
				t.Errorf("probe-timeout-period is %v by default, want a warning", r.Severity)
			}
		case "probe-timing":
			if r.Severity != Error {
				t.Errorf("probe-timing is %v by default, want an error: the API server refuses what it finds", r.Severity)
			}
		}
	}
}
