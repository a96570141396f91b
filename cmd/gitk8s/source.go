package main

import (
	"github.com/spf13/cobra"

	"github.com/gitk8s/gitk8s/internal/render"
	"github.com/gitk8s/gitk8s/internal/source"
)

// sourceOptions select what to render from SRC.
type sourceOptions struct {
	ref  string
	path string
}

func (o *sourceOptions) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.ref, "ref", "", "branch, tag or commit to read when SRC is a Git repository (default HEAD)")
	cmd.Flags().StringVar(&o.path, "path", "", "folder inside SRC to render")
}

// load opens SRC and renders it. The snapshot must be closed by the caller.
func (o *sourceOptions) load(src string) (*source.Snapshot, *render.Bundle, error) {
	snap, err := source.Open(src, source.Options{Ref: o.ref, Path: o.path})
	if err != nil {
		return nil, nil, err
	}
	bundle, err := render.Render(render.Options{Root: snap.Root, Path: snap.Path})
	if err != nil {
		_ = snap.Close()
		return nil, nil, err
	}
	return snap, bundle, nil
}
