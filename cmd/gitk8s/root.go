package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/gitk8s/gitk8s/internal/cluster"
)

// Exit codes shared by the commands, as kubectl diff uses them.
const (
	exitOK     = 0
	exitFailed = 1 // the command ran and found failures, changes or violations
	exitError  = 2 // the command could not do its job: bad input, unreachable cluster, bad flags
)

// codeError carries an exit code through cobra.
type codeError struct {
	code int
	err  error
}

func (e *codeError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}

func (e *codeError) Unwrap() error { return e.err }

// failWith wraps err so that run exits with code. A nil err still exits
// with code but prints nothing more.
func failWith(code int, err error) error { return &codeError{code: code, err: err} }

// globalOptions are the flags every command shares.
type globalOptions struct {
	kubeconfig     string
	contexts       []string
	clustersFile   string
	selector       string
	clusterTimeout time.Duration
	qps            float32
	burst          int
}

func (g *globalOptions) targets() ([]*cluster.Target, error) {
	opts := cluster.DefaultOptions()
	opts.Kubeconfig = g.kubeconfig
	opts.QPS, opts.Burst = g.qps, g.burst
	if g.clustersFile != "" {
		specs, err := cluster.ReadFile(g.clustersFile)
		if err != nil {
			return nil, err
		}
		if specs, err = cluster.Select(specs, g.selector); err != nil {
			return nil, err
		}
		var targets []*cluster.Target
		for _, s := range specs {
			if len(g.contexts) > 0 && !slices.Contains(g.contexts, s.Name) {
				continue
			}
			t, err := cluster.FromSpec(opts, s)
			if err != nil {
				return nil, err
			}
			targets = append(targets, t)
		}
		if len(targets) == 0 {
			return nil, fmt.Errorf("%s: no cluster named %v", g.clustersFile, g.contexts)
		}
		return targets, nil
	}
	if g.selector != "" {
		return nil, fmt.Errorf("--selector needs --clusters FILE, where clusters have labels")
	}
	contexts := g.contexts
	if len(contexts) == 0 {
		contexts = []string{""} // the kubeconfig's current context
	}
	var targets []*cluster.Target
	for _, c := range contexts {
		t, err := cluster.FromKubeconfig(opts, c)
		if err != nil {
			return nil, err
		}
		targets = append(targets, t)
	}
	return targets, nil
}

// run executes the command line and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:           "gitk8s",
		Short:         "Render, diff and apply Kubernetes manifests from Git",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.kubeconfig, "kubeconfig", "", "path to the kubeconfig file (default $KUBECONFIG or ~/.kube/config)")
	root.PersistentFlags().StringArrayVar(&g.contexts, "context", nil, "kubeconfig context to use; repeat for several clusters (default: the current context); with --clusters, a cluster name")
	root.PersistentFlags().StringVar(&g.clustersFile, "clusters", "", "clusters file: names, contexts and labels of the clusters to use")
	root.PersistentFlags().StringVarP(&g.selector, "selector", "l", "", "with --clusters: only clusters whose labels match (region=eu,tier!=dev)")
	root.PersistentFlags().DurationVar(&g.clusterTimeout, "cluster-timeout", 10*time.Minute, "deadline of each cluster's part of a command")
	defaults := cluster.DefaultOptions()
	root.PersistentFlags().Float32Var(&g.qps, "qps", defaults.QPS, "client-side requests per second per cluster")
	root.PersistentFlags().IntVar(&g.burst, "burst", defaults.Burst, "client-side request burst per cluster")
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetArgs(args)
	root.AddCommand(
		newRenderCommand(stdout),
		newApplyCommand(g, stdout, stderr),
		newDiffCommand(g, stdout, stderr),
		newMigrateCommand(stdout),
		newValidateCommand(g, stdout, stderr),
		newStatusCommand(g, stdout),
		newDaemonCommand(g, stderr),
		newSuspendCommand(g, stdout),
		newResumeCommand(g, stdout),
		newReconcileCommand(g, stdout),
		newConvertCommand(stdout),
		newVersionCommand(stdout),
		newPushCommand(stdout),
	)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ce *codeError
	if errors.As(err, &ce) {
		if ce.err != nil {
			fmt.Fprintln(stderr, "error:", ce.err)
		}
		return ce.code
	}
	fmt.Fprintln(stderr, "error:", err)
	return exitError
}
