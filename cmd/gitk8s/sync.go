package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/gitk8s/gitk8s/internal/apply"
	"github.com/gitk8s/gitk8s/internal/cluster"
	"github.com/gitk8s/gitk8s/internal/diff"
	"github.com/gitk8s/gitk8s/internal/federation"
	"github.com/gitk8s/gitk8s/internal/policy"
	"github.com/gitk8s/gitk8s/internal/render"
	"github.com/gitk8s/gitk8s/internal/source"
)

// syncOptions are the flags apply and diff share: what to read, which
// inventory it belongs to and how to prune.
type syncOptions struct {
	src                   sourceOptions
	inventory             string
	inventoryNamespace    string
	prune                 bool
	allowDestructivePrune bool
	pruneTimeout          time.Duration
	forceConflicts        bool
	concurrency           int
	noMemory              bool
	policy                policyOptions
}

func (o *syncOptions) addFlags(cmd *cobra.Command, pruneDefault bool) {
	o.src.addFlags(cmd)
	cmd.Flags().StringVar(&o.inventory, "inventory", "", "name of the ApplySet parent Secret that records what this source applied (default: gitk8s-<name of SRC>[-<path>])")
	cmd.Flags().StringVar(&o.inventoryNamespace, "inventory-namespace", apply.DefaultInventoryNamespace, "namespace of the inventory Secret")
	cmd.Flags().BoolVar(&o.prune, "prune", pruneDefault, "delete objects of the inventory that are no longer rendered")
	cmd.Flags().BoolVar(&o.allowDestructivePrune, "allow-destructive-prune", false, "let a prune delete Namespaces, CRDs, PersistentVolumes and claims, or more than half of the inventory")
	cmd.Flags().DurationVar(&o.pruneTimeout, "prune-timeout", time.Minute, "how long to wait for each pruned object to be gone; one still there (a finalizer holds it) stays in the inventory")
	cmd.Flags().BoolVar(&o.forceConflicts, "force-conflicts", true, "take over fields other field managers own (each is reported); false makes them errors")
	cmd.Flags().IntVar(&o.concurrency, "concurrency", 0, "requests in flight per cluster (default 16)")
	cmd.Flags().BoolVar(&o.noMemory, "no-memory", false, "do not remember what was applied; every object is dry-run")
	o.policy.addFlags(cmd)
}

// managerOptions turns the flags into apply options.
func (o *syncOptions) managerOptions(snap *source.Snapshot, masker *diff.Masker) (apply.Options, error) {
	opts := apply.DefaultOptions()
	opts.Masker = masker
	opts.ForceConflicts = o.forceConflicts
	if o.concurrency > 0 {
		opts.Concurrency = o.concurrency
	}
	opts.Prune = o.prune
	opts.AllowDestructivePrune = o.allowDestructivePrune
	opts.PruneTimeout = o.pruneTimeout
	opts.Inventory = apply.InventoryOptions{Name: o.inventory, Namespace: o.inventoryNamespace}
	if opts.Inventory.Name == "" {
		opts.Inventory.Name = defaultInventoryName(snap.Origin, snap.Path)
	}
	if !o.noMemory {
		mem, err := apply.DefaultMemoryDir()
		if err != nil {
			return opts, err
		}
		opts.Memory = mem
	}
	return opts, nil
}

var notNameChars = regexp.MustCompile(`[^a-z0-9-]+`)

// defaultInventoryName derives an inventory name from the source: gitk8s-
// and the last element of its path (or URL), then the rendered folder.
func defaultInventoryName(origin, path string) string {
	base := strings.TrimSuffix(filepath.Base(strings.TrimRight(origin, "/")), ".git")
	if abs, err := filepath.Abs(origin); err == nil && (origin == "." || origin == "") {
		base = filepath.Base(abs)
	}
	name := "gitk8s-" + base
	if path != "" && path != "." {
		name += "-" + path
	}
	name = strings.Trim(notNameChars.ReplaceAllString(strings.ToLower(name), "-"), "-")
	if len(name) > 63 {
		name = strings.TrimRight(name[:63], "-")
	}
	return name
}

// planClusters runs the apply (or plan) against every cluster at once,
// each with its own deadline. A cluster that is not Ready is skipped, with
// the reason, and nothing is applied or pruned there; the others go on.
// KubeFed objects in the bundle are first expanded per cluster.
func planClusters(ctx context.Context, g *globalOptions, bundle *render.Bundle, opts apply.Options, gate *policy.Config) ([]clusterResult, []federation.Placement, error) {
	targets, err := g.targets()
	if err != nil {
		return nil, nil, err
	}
	results := make([]clusterResult, len(targets))
	probes := make([]cluster.Health, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() { probes[i] = cluster.Probe(ctx, t) })
	}
	wg.Wait()

	objectsFor := map[string][]*render.Object{}
	var placements []federation.Placement
	if federation.HasFederated(bundle.Objects) {
		var clusters []federation.Cluster
		for i, t := range targets {
			clusters = append(clusters, federation.Cluster{Name: t.Name, Labels: t.Labels, Ready: probes[i].State == cluster.Ready})
		}
		res, err := federation.Expand(bundle.Objects, clusters)
		if err != nil {
			return nil, nil, err
		}
		objectsFor, placements = res.PerCluster, res.Placements
	} else {
		for _, t := range targets {
			objectsFor[t.Name] = bundle.Objects
		}
	}

	for i, t := range targets {
		results[i].cluster = t.Name
		if probes[i].State != cluster.Ready {
			results[i].err = fmt.Errorf("cluster %s (%s) is %s: %s; nothing was applied or pruned there", t.Name, t.Server, probes[i].State, probes[i].Reason)
			continue
		}
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, g.clusterTimeout)
			defer cancel()
			clusterOpts := opts
			var gateDone chan struct{}
			if gate != nil {
				// The policy gate runs while the plan reads and dry-runs;
				// the first write waits for it, and a blocked sync writes
				// nothing.
				gateDone = make(chan struct{})
				go func() {
					defer close(gateDone)
					results[i].findings = policy.EvaluateIn(&policy.Context{Objects: objectsFor[t.Name], Live: policy.NewLive(cctx, t), DefaultNamespace: t.Namespace}, *gate)
				}()
				clusterOpts.BeforeWrite = func(ctx context.Context) error {
					select {
					case <-gateDone:
					case <-ctx.Done():
						return ctx.Err()
					}
					if policy.Blocking(results[i].findings) {
						return errPolicyBlocked
					}
					return nil
				}
			}
			results[i].changeSet, results[i].err = apply.NewManager(t, clusterOpts).Apply(cctx, objectsFor[t.Name])
			if gateDone != nil {
				<-gateDone
				results[i].blocked = policy.Blocking(results[i].findings)
			}
		})
	}
	wg.Wait()
	return results, placements, nil
}

// errPolicyBlocked stops an apply whose objects break an enforced policy.
var errPolicyBlocked = errors.New("policy violations: nothing was applied")

// clusterResult is one cluster's change set, or why there is none.
type clusterResult struct {
	cluster   string
	changeSet *apply.ChangeSet
	err       error
	// findings are the policy gate's; blocked is set when they stopped the sync.
	findings []policy.Finding
	blocked  bool
}
