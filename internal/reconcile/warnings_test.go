package reconcile

import (
	"context"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/cluster"
)

// TestLiveReadFailureIsAWarning applies as a ServiceAccount that may
// write ConfigMaps and its inventory but not read ResourceQuotas: the
// policy gate runs without the live state, the apply succeeds, and the
// result carries a warning that names what could not be read, which
// both faces show (the CLI prints it, the daemon logs it).
func TestLiveReadFailureIsAWarning(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	client := env.Client(t, "")
	name := "limited-" + ns
	if _, err := client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "limited"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	subject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: "limited", Namespace: ns}}
	if _, err := client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch", "create", "patch", "update"}},
		{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get"}},
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.RbacV1().ClusterRoles().Delete(ctx, name, metav1.DeleteOptions{}) })
	if _, err := client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: name}, Subjects: subject}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.RbacV1().ClusterRoleBindings().Delete(ctx, name, metav1.DeleteOptions{}) })
	// The inventory lives in gitk8s-system.
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: apply.DefaultInventoryNamespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	inventoryRole := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list", "create", "patch", "update"}}}}
	if _, err := client.RbacV1().Roles(apply.DefaultInventoryNamespace).Create(ctx, inventoryRole, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = client.RbacV1().Roles(apply.DefaultInventoryNamespace).Delete(ctx, name, metav1.DeleteOptions{})
	})
	if _, err := client.RbacV1().RoleBindings(apply.DefaultInventoryNamespace).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name}, Subjects: subject}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = client.RbacV1().RoleBindings(apply.DefaultInventoryNamespace).Delete(ctx, name, metav1.DeleteOptions{})
	})
	expiry := int64(3600)
	tok, err := client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "limited", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	admin := env.Target(t, "").Config
	limited, err := cluster.New("limited", ns, &rest.Config{Host: admin.Host, BearerToken: tok.Status.Token, TLSClientConfig: rest.TLSClientConfig{CAData: admin.CAData}}, cluster.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}

	res := Run(ctx, Request{Name: "warned-" + ns, Source: dir(t, map[string]string{"a.yaml": configMap(ns, "a", "1")}), Settings: DefaultSettings(),
		Clusters: Clusters([]*cluster.Target{limited})})
	if res.Reason != Succeeded {
		t.Fatalf("reason %s: %v", res.Reason, res.Err)
	}
	warnings := res.Clusters[0].Warnings
	if len(warnings) == 0 || !strings.Contains(strings.Join(warnings, "\n"), "resourcequotas") {
		t.Errorf("warnings %q, want one naming the ResourceQuotas the gate could not read", warnings)
	}
	if !configMapExists(t, ns, "a") {
		t.Error("the ConfigMap was not applied")
	}
}
