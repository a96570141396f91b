package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/gitk8s/gitk8s/internal/daemon"
)

func newSuspendCommand(g *globalOptions, stdout io.Writer) *cobra.Command {
	var namespace, reason string
	cmd := &cobra.Command{
		Use:   "suspend SYNC [--reason TEXT]",
		Short: "Stop a daemon's sync from reconciling until it is resumed",
		Long: `Suspend lists SYNC in the ConfigMap gitk8s-suspended of --namespace in the
daemon's home cluster (the cluster of --context), with the reason, who
suspended it and when. Every daemon replica watches that ConfigMap: while the
sync is listed, its interval, webhooks and drift heal do nothing (drift is
still counted). Who may suspend is whoever Kubernetes RBAC lets update that
ConfigMap (the Role gitk8s-suspend in deploy/10-rbac.yaml).

Exit status: 0 suspended, 2 error.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, err := homeClient(g)
			if err != nil {
				return failWith(exitError, err)
			}
			warnOtherNamespace(cmd, namespace)
			s := daemon.Suspension{Reason: reason, By: whoAmI(cmd.Context(), g, client), At: time.Now().UTC().Truncate(time.Second)}
			if err := daemon.Suspend(cmd.Context(), client, namespace, args[0], s); err != nil {
				return failWith(exitError, err)
			}
			fmt.Fprintf(stdout, "sync %s suspended\n", args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&namespace, "namespace", daemon.HomeNamespace, "the daemon's namespace in its home cluster")
	cmd.Flags().StringVar(&reason, "reason", "", "why, for whoever looks at the sync's status")
	return cmd
}

func newResumeCommand(g *globalOptions, stdout io.Writer) *cobra.Command {
	var namespace string
	cmd := &cobra.Command{
		Use:   "resume SYNC",
		Short: "Let a suspended sync reconcile again, at once",
		Long: `Resume removes SYNC from the ConfigMap gitk8s-suspended of --namespace in
the daemon's home cluster; the daemon reconciles it at once. A sync with
suspend: true in the daemon's configuration stays suspended: only the
configuration can resume it.

Exit status: 0 resumed, 2 error (the sync was not suspended by gitk8s
suspend, among others).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, err := homeClient(g)
			if err != nil {
				return failWith(exitError, err)
			}
			warnOtherNamespace(cmd, namespace)
			err = daemon.Resume(cmd.Context(), client, namespace, args[0])
			if errors.Is(err, daemon.ErrNotSuspended) {
				return failWith(exitError, fmt.Errorf("%w (a sync with suspend: true in the daemon's configuration can only be resumed there)", err))
			}
			if err != nil {
				return failWith(exitError, err)
			}
			fmt.Fprintf(stdout, "sync %s resumed (unless the daemon's configuration says suspend: true)\n", args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&namespace, "namespace", daemon.HomeNamespace, "the daemon's namespace in its home cluster")
	return cmd
}

// warnOtherNamespace says so when --namespace is not the one the daemon
// reads its suspensions from: the command then changes a ConfigMap no
// daemon follows.
func warnOtherNamespace(cmd *cobra.Command, namespace string) {
	if namespace != daemon.HomeNamespace {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: the daemon follows gitk8s-suspended in %s only; %s is followed by no daemon\n", daemon.HomeNamespace, namespace)
	}
}

// homeClient is a client of the one cluster the flags name: the daemon's
// home cluster.
func homeClient(g *globalOptions) (kubernetes.Interface, error) {
	targets, err := g.targets()
	if err != nil {
		return nil, err
	}
	if len(targets) != 1 {
		return nil, fmt.Errorf("name one cluster, the daemon's home cluster, with --context (%d given)", len(targets))
	}
	return kubernetes.NewForConfig(targets[0].Config)
}

// whoAmI is the user the API server knows the credentials as, else the
// kubeconfig context's user name, else "".
func whoAmI(ctx context.Context, g *globalOptions, client kubernetes.Interface) string {
	review, err := client.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err == nil && review.Status.UserInfo.Username != "" {
		return review.Status.UserInfo.Username
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = g.kubeconfig
	raw, err := rules.Load()
	if err != nil {
		return ""
	}
	name := raw.CurrentContext
	if len(g.contexts) == 1 && g.clustersFile == "" {
		name = g.contexts[0]
	}
	if c, ok := raw.Contexts[name]; ok {
		return c.AuthInfo
	}
	return ""
}
