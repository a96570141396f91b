package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/gitk8s/gitk8s/internal/daemon"
)

func newReconcileCommand(g *globalOptions, stdout io.Writer) *cobra.Command {
	var namespace string
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "reconcile SYNC [-n NAMESPACE]",
		Short: "Ask the daemon to reconcile a Sync resource now",
		Long: `Reconcile sets the annotation gitk8s.io/reconcile-requested-at of the Sync
resource SYNC in --namespace (in the cluster of --context) to the current
time. The daemon then reconciles it at once, applying even when the revision
is the one applied (so it heals what was changed by hand), and records the
request it served in status.lastHandledReconcileAt. With --wait (the
default) the command waits for that and prints the Ready condition.

Exit status: 0 Ready, 1 reconciled but not Ready, 2 error or timeout.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			targets, err := g.targets()
			if err != nil {
				return failWith(exitError, err)
			}
			if len(targets) != 1 {
				return failWith(exitError, fmt.Errorf("name one cluster, the daemon's home cluster, with --context (%d given)", len(targets)))
			}
			syncs := targets[0].Dynamic.Resource(daemon.SyncGVR).Namespace(namespace)
			requested := time.Now().UTC().Format(time.RFC3339Nano)
			patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, daemon.AnnotationReconcileRequestedAt, requested)
			if _, err := syncs.Patch(cmd.Context(), args[0], types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				return failWith(exitError, fmt.Errorf("Sync %s/%s: %w", namespace, args[0], err))
			}
			fmt.Fprintf(stdout, "reconcile of Sync %s/%s requested\n", namespace, args[0])
			if !wait {
				return nil
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			for {
				u, err := syncs.Get(ctx, args[0], metav1.GetOptions{})
				if err == nil {
					if handled, _, _ := unstructured.NestedString(u.Object, "status", "lastHandledReconcileAt"); handled == requested && !reconciling(u) {
						status, reason, message := readyOf(u)
						rev, _, _ := unstructured.NestedString(u.Object, "status", "lastAppliedRevision")
						fmt.Fprintf(stdout, "Ready=%s %s at %s: %s\n", status, reason, rev, message)
						if status != "True" {
							return failWith(exitNotReady, nil)
						}
						return nil
					}
				}
				select {
				case <-ctx.Done():
					return failWith(exitError, fmt.Errorf("Sync %s/%s: the daemon did not serve the request within %s (is it running, with syncResources.enabled?)", namespace, args[0], timeout))
				case <-time.After(500 * time.Millisecond):
				}
			}
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "default", "the Sync's namespace")
	cmd.Flags().BoolVar(&wait, "wait", true, "wait until the daemon has served the request")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait")
	return cmd
}

// exitNotReady is reconcile's exit code for a Sync that is not Ready.
const exitNotReady = 1

// reconciling reports whether a Sync's Reconciling condition is True.
func reconciling(u *unstructured.Unstructured) bool {
	status, _, _ := conditionOf(u, "Reconciling")
	return status == "True"
}

// readyOf is a Sync's Ready condition.
func readyOf(u *unstructured.Unstructured) (status, reason, message string) {
	return conditionOf(u, "Ready")
}

func conditionOf(u *unstructured.Unstructured, typ string) (status, reason, message string) {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == typ {
			status, _ = m["status"].(string)
			reason, _ = m["reason"].(string)
			message, _ = m["message"].(string)
		}
	}
	return
}

func newConvertCommand(stdout io.Writer) *cobra.Command {
	var config, namespace string
	cmd := &cobra.Command{
		Use:   "convert --config FILE [--namespace NAMESPACE]",
		Short: "Print the syncs of a daemon configuration as Sync resources",
		Long: `Convert prints each sync of the daemon configuration FILE as a Sync resource
(gitk8s.io/v1alpha1) in --namespace, to apply with kubectl. Each keeps its
inventory, so the Sync takes over what the sync applied, and names the
namespaces of its Secrets. Remove the syncs from the file when the Syncs are
applied, so that one daemon does not serve both. A sync that reads the
daemon's files (secretDir) cannot become a Sync and is named.

Exit status: 0 converted, 2 error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := daemon.LoadConfig(config)
			if err != nil {
				return failWith(exitError, err)
			}
			syncs, err := cfg.SyncResourcesOf(namespace)
			if err != nil {
				return failWith(exitError, err)
			}
			for _, s := range syncs {
				out, err := yaml.Marshal(s)
				if err != nil {
					return failWith(exitError, err)
				}
				fmt.Fprintf(stdout, "---\n%s", out)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&config, "config", "", "the daemon's configuration file")
	cmd.Flags().StringVar(&namespace, "namespace", daemon.HomeNamespace, "the namespace of the Syncs")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}
