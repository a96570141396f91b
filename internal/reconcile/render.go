package reconcile

import (
	"context"

	"github.com/gitk8s/gitk8s/internal/render"
	"github.com/gitk8s/gitk8s/internal/source"
)

// Render opens the request's snapshot and renders it as Run does: a Helm
// chart for the first of the request's clusters that answers, with the
// render's defaults when it has none. It is for the commands that only
// read; nothing is asked of a cluster but its capabilities.
func Render(ctx context.Context, req Request) (*render.Bundle, error) {
	snap, bundle, err := renderSnapshot(ctx, req)
	if err != nil {
		return nil, err
	}
	_ = snap.Close()
	return bundle, nil
}

// renderSnapshot opens the request's snapshot and renders it. The caller
// closes the snapshot.
func renderSnapshot(ctx context.Context, req Request) (*source.Snapshot, *render.Bundle, error) {
	snap, err := req.Source.Open(ctx)
	if err != nil {
		return nil, nil, err
	}
	bundle, err := req.Settings.Render.Render(ctx, renderOptions(ctx, req, snap))
	if err != nil {
		_ = snap.Close()
		return nil, nil, err
	}
	return snap, bundle, nil
}
