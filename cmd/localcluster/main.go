// Command localcluster starts and stops local Kubernetes control planes for
// the demo and for development (see internal/controlplane).
//
//	localcluster up   [-dir D] [-bin B] [-stages F] [-clusters N] [-nodes K]
//	localcluster down [-dir D]
//	localcluster status [-dir D]   (exit 0 when it runs)
//	localcluster stages -kwok-module DIR -out FILE
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/gitk8s/gitk8s/internal/controlplane"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "up":
		err = up(os.Args[2:])
	case "down":
		err = down(os.Args[2:])
	case "status":
		err = status(os.Args[2:])
	case "stages":
		err = stages(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "localcluster:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: localcluster up|down|status|stages [flags]")
	os.Exit(2)
}

func up(args []string) error {
	fs := flag.NewFlagSet("up", flag.ExitOnError)
	opts := controlplane.Options{Detach: true}
	fs.StringVar(&opts.Dir, "dir", ".cache/localcluster", "working directory for certificates, data, logs and the kubeconfig")
	fs.StringVar(&opts.BinDir, "bin", ".cache/bin", "directory with etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok")
	fs.StringVar(&opts.KwokStages, "stages", ".cache/kwok-stages.yaml", "kwok Stage file")
	fs.IntVar(&opts.Clusters, "clusters", 1, "number of clusters")
	fs.IntVar(&opts.Nodes, "nodes", 3, "fake nodes per cluster")
	_ = fs.Parse(args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cp, err := controlplane.Start(ctx, opts)
	if err != nil {
		return err
	}
	for _, c := range cp.Clusters {
		fmt.Printf("cluster %s at %s\n", c.Name, c.Server)
	}
	fmt.Printf("kubeconfig: %s\n", cp.Kubeconfig)
	return nil
}

func down(args []string) error {
	fs := flag.NewFlagSet("down", flag.ExitOnError)
	dir := fs.String("dir", ".cache/localcluster", "working directory given to up")
	_ = fs.Parse(args)
	cp, err := controlplane.Load(*dir)
	if os.IsNotExist(err) {
		return nil // nothing was started from there
	}
	if err != nil {
		return err
	}
	return cp.Stop()
}

func status(args []string) error {
	fs := flag.NewFlagSet("status", flag.ExitOnError)
	dir := fs.String("dir", ".cache/localcluster", "working directory given to up")
	_ = fs.Parse(args)
	cp, err := controlplane.Load(*dir)
	if err != nil {
		return fmt.Errorf("no control plane started from %s", *dir)
	}
	if !cp.Running() {
		return fmt.Errorf("the control plane started from %s is not running", *dir)
	}
	for _, c := range cp.Clusters {
		fmt.Printf("cluster %s at %s\n", c.Name, c.Server)
	}
	fmt.Printf("kubeconfig: %s\n", cp.Kubeconfig)
	return nil
}

func stages(args []string) error {
	fs := flag.NewFlagSet("stages", flag.ExitOnError)
	module := fs.String("kwok-module", "", "directory of the sigs.k8s.io/kwok module")
	out := fs.String("out", ".cache/kwok-stages.yaml", "file to write")
	_ = fs.Parse(args)
	if *module == "" {
		return fmt.Errorf("stages: -kwok-module is required")
	}
	return controlplane.WriteStages(*module, *out)
}
