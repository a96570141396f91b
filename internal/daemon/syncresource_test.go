package daemon

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/gitk8s/gitk8s/internal/testenv"
)

func syncObject(t *testing.T, text string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(text), &u.Object); err != nil {
		t.Fatal(err)
	}
	return u
}

// TestSyncFromResourceKeepsTeamsApart checks what a Sync may not do that a
// sync of the configuration file may: read the daemon's files, Secrets of
// another namespace, raise render limits, reach the network when it
// renders, name a cluster the operator did not open to Syncs, or act
// without a ServiceAccount when one is required.
func TestSyncFromResourceKeepsTeamsApart(t *testing.T) {
	cfg := &Config{Clusters: []ClusterConfig{{Name: "home"}, {Name: "prod"}},
		SyncResources: &SyncResourcesConfig{Enabled: true, RequireServiceAccount: true}}
	s, err := cfg.SyncFromResource(syncObject(t, `apiVersion: gitk8s.io/v1alpha1
kind: Sync
metadata: {name: shop, namespace: team-a, generation: 3}
spec:
  serviceAccountName: deployer
  source: {url: "https://git.example/shop.git", auth: {secretRef: {name: creds}}}
`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "team-a.shop" || s.Impersonates() != "system:serviceaccount:team-a:deployer" || s.generation() != 3 {
		t.Errorf("name %q, impersonates %q, generation %d", s.Name, s.Impersonates(), s.generation())
	}
	if !slices.Equal(s.Clusters, []string{"home"}) || s.Source.Auth.SecretRef.Namespace != "team-a" ||
		s.Inventory.Namespace != "team-a" || s.Inventory.Name != "gitk8s-shop" || s.Resource.DeletionPolicy != DeletionPrune {
		t.Errorf("defaults: clusters %v, auth namespace %q, inventory %s/%s, deletion %s", s.Clusters, s.Source.Auth.SecretRef.Namespace,
			s.Inventory.Namespace, s.Inventory.Name, s.Resource.DeletionPolicy)
	}

	_, err = cfg.SyncFromResource(syncObject(t, `apiVersion: gitk8s.io/v1alpha1
kind: Sync
metadata: {name: shop, namespace: team-a}
spec:
  source:
    url: "https://git.example/shop.git"
    auth: {secretRef: {name: creds, namespace: team-b}}
    decryption: {provider: sops, secretDir: /etc/gitk8s/keys}
    allowRemoteBases: true
    renderLimits: {memory: 8Gi}
  clusters: [prod]
  inventory: {namespace: gitk8s-system}
  deletionPolicy: Keep
`))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"Sync team-a/shop:",
		"spec.serviceAccountName is required here",
		"spec.source.auth.secretRef: namespace team-b is not the Sync's (team-a)",
		"spec.source.decryption.secretDir: a Sync cannot read the daemon's files",
		"spec.source.allowRemoteBases: the operator does not let Syncs reach the network",
		"spec.source.renderLimits: a Sync may lower the render limits, not raise them",
		"spec.inventory: namespace gitk8s-system is not the Sync's (team-a)",
		"spec.deletionPolicy \"Keep\" must be Prune or Orphan",
		"spec: cluster prod is not in clusters",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}

	cfg.SyncResources = &SyncResourcesConfig{Enabled: true, DefaultServiceAccount: "gitk8s-sync", Clusters: []string{"home", "prod"}, AllowCrossNamespaceRefs: true}
	s, err = cfg.SyncFromResource(syncObject(t, `apiVersion: gitk8s.io/v1alpha1
kind: Sync
metadata: {name: shop, namespace: team-a}
spec:
  source: {url: "https://git.example/shop.git", auth: {secretRef: {name: creds, namespace: shared}}}
  clusters: [prod]
`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Impersonates() != "system:serviceaccount:team-a:gitk8s-sync" || s.Source.Auth.SecretRef.Namespace != "shared" {
		t.Errorf("impersonates %q, auth namespace %q", s.Impersonates(), s.Source.Auth.SecretRef.Namespace)
	}
	if _, err := cfg.SyncFromResource(syncObject(t, "apiVersion: gitk8s.io/v1alpha1\nkind: Sync\nmetadata: {name: x, namespace: a}\nspec: {source: {url: u}, intervall: 1m}\n")); err == nil || !strings.Contains(err.Error(), "intervall") {
		t.Errorf("an unknown field is not named: %v", err)
	}
}

// kubectl runs kubectl against the test control plane.
func kubectl(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(env.Kubectl(), append([]string{"--kubeconfig", env.Kubeconfig, "--context", env.Contexts[0]}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// installSyncCRD applies deploy/05-crds.yaml and waits until Syncs are
// served.
func installSyncCRD(t *testing.T) {
	t.Helper()
	if out, err := kubectl(t, "", "apply", "--server-side", "-f", crdFile); err != nil {
		t.Fatalf("apply the CRD: %v\n%s", err, out)
	}
	if out, err := kubectl(t, "", "wait", "--for=condition=Established", "--timeout=60s", "crd/syncs.gitk8s.io"); err != nil {
		t.Fatalf("the CRD is not established: %v\n%s", err, out)
	}
}

// TestSyncResources runs the daemon with Sync resources on the local
// control plane: kubectl refuses a bad Sync by the CRD's rules; a team's
// Sync deploys into its namespace as its ServiceAccount and shows Ready in
// kubectl get and kubectl wait; an object in another team's namespace, or
// in gitk8s's own, is refused by the API server with the error in the
// status, nothing else written and nothing pruned; a Sync cannot name
// another team's Git credentials; spec.suspend, a requested reconcile and
// an edit take effect without a restart; deleting the Sync prunes what it
// applied and its inventory.
func TestSyncResources(t *testing.T) {
	installSyncCRD(t)
	ensureHomeNamespace(t)
	teamA, teamB := env.Namespace(t), env.Namespace(t)
	ctx := context.Background()
	client := env.Client(t, "")
	// The team's ServiceAccount may manage ConfigMaps and Secrets (its
	// inventory) in its own namespace, and nothing else.
	if _, err := client.CoreV1().ServiceAccounts(teamA).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "deployer"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "deployer"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"configmaps", "secrets"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get"}},
	}}
	if _, err := client.RbacV1().Roles(teamA).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "deployer"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "deployer", Namespace: teamA}},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "deployer"}}
	if _, err := client.RbacV1().RoleBindings(teamA).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	putSecret(t, teamB, "git-creds", map[string]string{"username": "b", "password": "team-b-password-51c3"})

	srv := testenv.NewGitServer(t)
	srv.Commit(t, map[string]string{"app/cm.yaml": configMap(teamA, "settings", "one")})
	run := runDaemon(t, fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: %s, path: %s}}
syncResources: {enabled: true, requireServiceAccount: true}
`, env.Contexts[0], env.Kubeconfig))
	t.Cleanup(func() {
		// Syncs left by a failed test must not hold their namespaces.
		for _, ns := range []string{teamA, teamB} {
			list, _ := env.Target(t, "").Dynamic.Resource(SyncGVR).Namespace(ns).List(ctx, metav1.ListOptions{})
			for _, u := range list.Items {
				_, _ = env.Target(t, "").Dynamic.Resource(SyncGVR).Namespace(ns).Patch(ctx, u.GetName(), types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
			}
		}
	})

	// The CRD's schema, then its CEL rules, refuse what they can see
	// before gitk8s does.
	refused := func(spec string, wants ...string) {
		t.Helper()
		out, err := kubectl(t, fmt.Sprintf("apiVersion: gitk8s.io/v1alpha1\nkind: Sync\nmetadata: {name: bad, namespace: %s}\nspec:\n%s", teamA, spec), "apply", "-f", "-")
		if err == nil {
			t.Fatalf("kubectl applied a bad Sync:\n%s", out)
		}
		for _, want := range wants {
			if !strings.Contains(out, want) {
				t.Errorf("kubectl's refusal lacks %q:\n%s", want, out)
			}
		}
	}
	refused("  source: {url: \"https://git.example/x\", interval: soon}\n  drift: ignore\n", `spec.drift: Unsupported value: "ignore"`, "spec.source.interval")
	refused("  source: {url: \"ftp://git.example/x\", ref: {branch: main, tag: v1}}\n  clusters: [local]\n  clusterSelector: {matchLabels: {env: prod}}\n",
		"give clusters or clusterSelector, not both", "give one of branch, tag, semver or commit", "url must be an https://")
	refused("  source: {url: \"https://git.example/x\", auth: {secretDir: /etc/gitk8s}}\n", "a Sync cannot read the daemon's files")

	apply := func(text string) {
		t.Helper()
		if out, err := kubectl(t, text, "apply", "-f", "-"); err != nil {
			t.Fatalf("kubectl apply: %v\n%s", err, out)
		}
	}
	sync := func(name string, extra string) string {
		return fmt.Sprintf("apiVersion: gitk8s.io/v1alpha1\nkind: Sync\nmetadata: {name: %s, namespace: %s}\nspec:\n  source: {url: %q, path: app, interval: 1s}\n%s", name, teamA, srv.URL, extra)
	}
	get := func(name string) *unstructured.Unstructured {
		u, err := env.Target(t, "").Dynamic.Resource(SyncGVR).Namespace(teamA).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil
		}
		return u
	}
	condition := func(u *unstructured.Unstructured, typ string) (status, reason, message string) {
		if u == nil {
			return
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == typ {
				s, _ := m["status"].(string)
				r, _ := m["reason"].(string)
				msg, _ := m["message"].(string)
				return s, r, msg
			}
		}
		return
	}

	// Without a ServiceAccount the operator's rule refuses it, in its status.
	apply(sync("nobody", ""))
	run.eventually(t, "the Sync without a ServiceAccount is refused in its status", 20*time.Second, func() bool {
		_, reason, msg := condition(get("nobody"), "Stalled")
		return reason == ReasonInvalidSpec && strings.Contains(msg, "spec.serviceAccountName is required here")
	})
	// Another team's credentials cannot be named.
	apply(sync("borrower", fmt.Sprintf("  serviceAccountName: deployer\n  source: {url: %q, path: app, auth: {secretRef: {name: git-creds, namespace: %s}}}\n", srv.URL, teamB)))
	run.eventually(t, "the Sync naming another namespace's Secret is refused", 20*time.Second, func() bool {
		_, reason, msg := condition(get("borrower"), "Ready")
		return reason == ReasonInvalidSpec && strings.Contains(msg, "namespace "+teamB+" is not the Sync's")
	})

	apply(sync("app", "  serviceAccountName: deployer\n"))
	run.eventually(t, "the Sync is Ready", 60*time.Second, func() bool {
		u := get("app")
		status, _, _ := condition(u, "Ready")
		gen, _, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
		return status == "True" && gen == u.GetGeneration() && slices.Contains(u.GetFinalizers(), SyncFinalizer)
	})
	if got := configMapValue(t, teamA, "settings"); got != "one" {
		t.Fatalf("settings = %q, want one", got)
	}
	if out, err := kubectl(t, "", "wait", "-n", teamA, "--for=condition=Ready", "--timeout=10s", "sync/app"); err != nil {
		t.Errorf("kubectl wait: %v\n%s", err, out)
	}
	out, err := kubectl(t, "", "get", "syncs", "-n", teamA)
	if err != nil {
		t.Fatal(err)
	}
	rev, _, _ := unstructured.NestedString(get("app").Object, "status", "lastAppliedRevision")
	var row string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "app ") {
			row = line
		}
	}
	if f := strings.Fields(row); len(f) < 6 || f[1] != "True" || f[2] != ReasonSucceeded || f[3] != rev || f[4] != "1" {
		t.Errorf("kubectl get syncs: row %q, want app True Succeeded %s 1 AGE:\n%s", row, rev, out)
	}
	if _, err := client.CoreV1().Secrets(teamA).Get(ctx, "gitk8s-app", metav1.GetOptions{}); err != nil {
		t.Errorf("the inventory in the team's namespace: %v", err)
	}

	// A commit with objects in another team's namespace and in gitk8s's
	// own: the API server refuses them for the team's ServiceAccount.
	mark := env.MarkAudit(t, "")
	srv.Commit(t, map[string]string{
		"app/cm.yaml":      configMap(teamA, "settings", "two"),
		"app/other.yaml":   configMap(teamB, "intruder", "x"),
		"app/daemon.yaml":  configMap(HomeNamespace, "intruder", "x"),
		"app/another.yaml": configMap(teamA, "another", "x"),
	})
	run.eventually(t, "gitk8s refuses the object in its own namespace", 60*time.Second, func() bool {
		status, _, msg := condition(get("app"), "Ready")
		return status == "False" && strings.Contains(msg, "ConfigMap/"+HomeNamespace+"/intruder: in "+HomeNamespace+", the daemon's own namespace")
	})
	srv.Commit(t, map[string]string{"app/daemon.yaml": ""})
	run.eventually(t, "the Sync reports the API server's refusal", 60*time.Second, func() bool {
		status, _, msg := condition(get("app"), "Ready")
		return status == "False" && strings.Contains(msg, "forbidden") && strings.Contains(msg, teamB)
	})
	_, reason, _ := condition(get("app"), "Ready")
	if reason != ReasonPlanFailed {
		t.Errorf("reason %s, want %s: nothing may be written once the plan is refused", reason, ReasonPlanFailed)
	}
	for _, e := range mark.Requests(t, "gitk8s") {
		write := e.Verb != "get" && e.Verb != "list" && e.Verb != "watch" && !strings.Contains(e.RequestURI, "dryRun=All") && e.ResponseStatus.Code < 300
		if write && e.ObjectRef.Resource != "syncs" && e.ObjectRef.Resource != "events" {
			t.Errorf("written after the refusal: %s %s %s/%s", e.Verb, e.ObjectRef.Resource, e.ObjectRef.Namespace, e.ObjectRef.Name)
		}
	}
	if got := configMapValue(t, teamA, "settings"); got != "one" {
		t.Errorf("settings = %q after a refused revision, want one", got)
	}
	for _, ns := range []string{teamB, HomeNamespace} {
		if _, err := client.CoreV1().ConfigMaps(ns).Get(ctx, "intruder", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("ConfigMap %s/intruder: %v", ns, err)
		}
	}

	// Fixed; then suspended in the spec: a new commit waits.
	srv.Commit(t, map[string]string{"app/cm.yaml": configMap(teamA, "settings", "three"), "app/other.yaml": "", "app/daemon.yaml": "", "app/another.yaml": ""})
	run.eventually(t, "the fixed revision is applied", 60*time.Second, func() bool { return configMapValue(t, teamA, "settings") == "three" })
	apply(sync("app", "  serviceAccountName: deployer\n  suspend: true\n"))
	run.eventually(t, "the Sync is suspended", 20*time.Second, func() bool { return run.status(ResourceSyncName(teamA, "app")).Suspended })
	srv.Commit(t, map[string]string{"app/cm.yaml": configMap(teamA, "settings", "four")})
	time.Sleep(3 * time.Second)
	if got := configMapValue(t, teamA, "settings"); got != "three" {
		t.Errorf("a suspended Sync applied %q", got)
	}
	apply(sync("app", "  serviceAccountName: deployer\n"))
	run.eventually(t, "the resumed Sync applies the new commit", 60*time.Second, func() bool { return configMapValue(t, teamA, "settings") == "four" })

	// An edit of the spec is applied at once; a requested reconcile is
	// served whatever the interval.
	apply(sync("app", "  serviceAccountName: deployer\n  source: {url: \""+srv.URL+"\", path: app, interval: 1h}\n"))
	run.eventually(t, "the edit is observed", 20*time.Second, func() bool {
		u := get("app")
		gen, _, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
		return gen == u.GetGeneration()
	})
	// Drift is watched as the ServiceAccount, in its namespace, and healed.
	if _, err := client.CoreV1().ConfigMaps(teamA).Patch(ctx, "settings", types.MergePatchType, []byte(`{"data":{"value":"edited"}}`), metav1.PatchOptions{FieldManager: "someone"}); err != nil {
		t.Fatal(err)
	}
	run.eventually(t, "the drift is healed", 30*time.Second, func() bool { return configMapValue(t, teamA, "settings") == "four" })
	if out, err := kubectl(t, "", "annotate", "--overwrite", "-n", teamA, "sync/app", AnnotationReconcileRequestedAt+"=now-1"); err != nil {
		t.Fatalf("annotate: %v\n%s", err, out)
	}
	run.eventually(t, "the requested reconcile is handled", 30*time.Second, func() bool {
		handled, _, _ := unstructured.NestedString(get("app").Object, "status", "lastHandledReconcileAt")
		return handled == "now-1" && configMapValue(t, teamA, "settings") == "four"
	})

	// Deleting the Sync prunes what it applied, then lets it go.
	if out, err := kubectl(t, "", "delete", "-n", teamA, "sync/app", "--timeout=60s"); err != nil {
		t.Fatalf("kubectl delete: %v\n%s", err, out)
	}
	if _, err := client.CoreV1().ConfigMaps(teamA).Get(ctx, "settings", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the deleted Sync's ConfigMap: %v", err)
	}
	if _, err := client.CoreV1().Secrets(teamA).Get(ctx, "gitk8s-app", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the deleted Sync's inventory: %v", err)
	}
	run.eventually(t, "the daemon forgets the Sync", 10*time.Second, func() bool {
		_, ok := run.d.syncConfig(ResourceSyncName(teamA, "app"))
		return !ok
	})
	run.noLeak(t, []string{"team-b-password-51c3"})
}

// TestConvertedSyncsPassAsResources converts a configuration's syncs into
// Sync resources and reads them back as the daemon reads Syncs: the same
// sync, with its inventory kept, and a sync that reads the daemon's files
// named as one that cannot be converted.
func TestConvertedSyncsPassAsResources(t *testing.T) {
	cfg, err := parseConfig(t, `apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: x}}
syncs:
- name: shop
  source: {url: "https://git.example/shop.git", ref: {branch: main}, interval: 2m, auth: {secretRef: {name: creds}}}
  clusters: [local]
  prune: true
  policies: {modes: {quota-fit: warn}}
syncResources: {enabled: true, clusters: [local]}
`)
	if err != nil {
		t.Fatal(err)
	}
	syncs, err := cfg.SyncResourcesOf(HomeNamespace)
	if err != nil || len(syncs) != 1 {
		t.Fatalf("%d Syncs, %v", len(syncs), err)
	}
	text, err := yaml.Marshal(syncs[0])
	if err != nil {
		t.Fatal(err)
	}
	s, err := cfg.SyncFromResource(syncObject(t, string(text)))
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	file, _ := cfg.Sync("shop")
	if got, want := s.Settings().InventoryOf(s.Name), file.Settings().InventoryOf(file.Name); got.Name != want.Name || got.Namespace != want.Namespace {
		t.Errorf("inventory %s/%s, want the sync's %s/%s", got.Namespace, got.Name, want.Namespace, want.Name)
	}
	if s.Source.URL != file.Source.URL || s.Source.Interval != file.Source.Interval || !s.Prune || s.Source.Auth.SecretRef.Namespace != HomeNamespace || s.Policies.Modes["quota-fit"] != "warn" {
		t.Errorf("converted sync differs:\n%s", text)
	}
	cfg.Syncs[0].Source.Auth = &SourceAuth{SecretDir: "/etc/creds"}
	if _, err := cfg.SyncResourcesOf(HomeNamespace); err == nil || !strings.Contains(err.Error(), "sync shop: source.auth.secretDir: a Sync cannot read the daemon's files") {
		t.Errorf("secretDir: %v", err)
	}
}

// TestSyncWithItsOwnKubeconfig deploys with a cluster the team reaches
// itself: a kubeconfig in a Secret of the Sync's namespace, holding a
// token of the team's account. The daemon's requests go with that token,
// and the operator's ServiceAccount rule does not apply to it.
func TestSyncWithItsOwnKubeconfig(t *testing.T) {
	installSyncCRD(t)
	ensureHomeNamespace(t)
	team := env.Namespace(t)
	ctx := context.Background()
	client := env.Client(t, "")
	if _, err := client.CoreV1().ServiceAccounts(team).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "remote"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "remote"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "remote", Namespace: team}},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "admin"}}
	if _, err := client.RbacV1().RoleBindings(team).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	data := serviceAccountKubeconfig(t, team, "remote", team)
	putSecret(t, team, "cluster", map[string]string{"value": string(data)})

	srv := testenv.NewGitServer(t)
	srv.Commit(t, map[string]string{"cm.yaml": configMap(team, "settings", "remote")})
	run := runDaemon(t, fmt.Sprintf(`apiVersion: gitk8s.io/v1alpha1
kind: Config
clusters:
- {name: local, kubeconfig: {context: %s, path: %s}}
syncResources: {enabled: true, requireServiceAccount: true, namespaces: [%s]}
`, env.Contexts[0], env.Kubeconfig, team))
	syncs := env.Target(t, "").Dynamic.Resource(SyncGVR).Namespace(team)
	t.Cleanup(func() {
		_, _ = syncs.Patch(context.Background(), "own", types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
	})
	mark := env.MarkAudit(t, "")
	if out, err := kubectl(t, fmt.Sprintf("apiVersion: gitk8s.io/v1alpha1\nkind: Sync\nmetadata: {name: own, namespace: %s}\nspec:\n  source: {url: %q}\n  kubeConfig: {secretRef: {name: cluster}}\n", team, srv.URL), "apply", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	run.eventually(t, "the Sync with its own kubeconfig applies", 60*time.Second, func() bool { return configMapValue(t, team, "settings") == "remote" })
	asTeam := 0
	for _, e := range mark.Requests(t, "gitk8s") {
		if e.User.Username == "system:serviceaccount:"+team+":remote" && e.Verb == "patch" && e.ObjectRef.Resource == "configmaps" {
			asTeam++
		}
	}
	if asTeam == 0 {
		t.Error("the ConfigMap was not applied with the team's kubeconfig")
	}
	out, err := kubectl(t, fmt.Sprintf("apiVersion: gitk8s.io/v1alpha1\nkind: Sync\nmetadata: {name: both, namespace: %s}\nspec:\n  source: {url: %q}\n  kubeConfig: {secretRef: {name: cluster}}\n  clusters: [local]\n", team, srv.URL), "apply", "-f", "-")
	if err == nil || !strings.Contains(out, "give kubeConfig or clusters/clusterSelector, not both") {
		t.Errorf("kubeConfig with clusters: %v\n%s", err, out)
	}
	if out, err := kubectl(t, "", "delete", "-n", team, "sync/own", "--timeout=60s"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got := configMapValue(t, team, "settings"); got != "" {
		t.Errorf("the deleted Sync's ConfigMap is still there: %q", got)
	}
}
