package main

import (
	"github.com/spf13/cobra"

	"github.com/gitk8s/gitk8s/internal/render"
	"github.com/gitk8s/gitk8s/internal/source"
)

// sourceOptions select what to render from SRC.
type sourceOptions struct {
	ref              string
	path             string
	allowRemoteBases bool
	jsonnetEntry     string
	tlas             map[string]string
	extVars          map[string]string
	jsonnetLibs      []string
}

func (o *sourceOptions) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.ref, "ref", "", "branch, tag or commit to read when SRC is a Git repository (default HEAD)")
	cmd.Flags().StringVar(&o.path, "path", "", "folder inside SRC to render")
	cmd.Flags().BoolVar(&o.allowRemoteBases, "allow-remote-bases", false, "let kustomizations load bases from remote repositories and URLs")
	cmd.Flags().StringVar(&o.jsonnetEntry, "jsonnet-entry", "", "evaluate only this .jsonnet file (relative to --path) instead of every one")
	cmd.Flags().StringToStringVar(&o.tlas, "tla", nil, "jsonnet top-level argument, key=value (repeatable)")
	cmd.Flags().StringToStringVar(&o.extVars, "ext-str", nil, "jsonnet external variable, key=value (repeatable)")
	cmd.Flags().StringArrayVar(&o.jsonnetLibs, "jsonnet-lib", nil, "jsonnet library folder inside the source (repeatable)")
}

// renderOptions are the render options for a snapshot.
func (o *sourceOptions) renderOptions(snap *source.Snapshot) render.Options {
	return render.Options{
		Root: snap.Root, Path: snap.Path,
		AllowRemoteBases: o.allowRemoteBases,
		JsonnetEntry:     o.jsonnetEntry,
		Jsonnet:          render.JsonnetOptions{TLAs: o.tlas, ExtVars: o.extVars, LibPaths: o.jsonnetLibs},
	}
}

// load opens SRC and renders it. The snapshot must be closed by the caller.
func (o *sourceOptions) load(src string) (*source.Snapshot, *render.Bundle, error) {
	snap, err := source.Open(src, source.Options{Ref: o.ref, Path: o.path})
	if err != nil {
		return nil, nil, err
	}
	bundle, err := render.Render(o.renderOptions(snap))
	if err != nil {
		_ = snap.Close()
		return nil, nil, err
	}
	return snap, bundle, nil
}
