// Package reconcile is the sync engine: the one composition of the
// pipeline's stages for one sync across its clusters. A Request says what
// to read (a source that opens a snapshot), how to render and check it
// (Settings) and where it goes (Clusters); Run opens the snapshot, renders
// it, expands federated objects with the clusters that are Ready, runs the
// policy gate while the plan reads and dry-runs, applies wave by wave,
// prunes within the guards and waits for health, and returns a Result: per
// cluster a Reason, the change set, the findings, and the federated
// placements.
//
// Both faces of gitk8s drive it: the CLI turns flags into a Request and
// prints the Result; the daemon builds the Request of a configured sync on
// its schedule and turns the Result into status, events and metrics. So a
// pull-request check that builds the daemon's Request for a sync, with
// DryRun set, predicts what the daemon's next reconcile of it will do.
//
// It does not print, schedule, or keep state between runs beyond the
// apply memory the caller passes in; drivers observe a run through Hooks.
//
//	src := reconcile.SourceFunc(func(ctx context.Context) (*source.Snapshot, error) {
//		return source.Open(ctx, "./shop", source.Options{Path: "deploy"})
//	})
//	res := reconcile.Run(ctx, reconcile.Request{
//		Name:     "shop",
//		Source:   src,
//		Settings: reconcile.DefaultSettings(),
//		Clusters: reconcile.Clusters(targets),
//		DryRun:   true,
//	})
//	for _, c := range res.Clusters {
//		fmt.Println(c.Name, c.Reason, c.Err)
//	}
package reconcile
