package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/gitk8s/gitk8s/internal/diff"
	"github.com/gitk8s/gitk8s/internal/reconcile"
)

func newRenderCommand(stdout io.Writer) *cobra.Command {
	var src sourceOptions
	var output string
	var showSecrets bool
	cmd := &cobra.Command{
		Use:   "render SRC [FILE...]",
		Short: "Print the objects rendered from SRC, in a stable order",
		Long: `Render reads SRC (a directory, or a Git repository at --ref) and prints every
object it defines. Bad input is an error naming the file and line.

Secret values (a Secret's data and stringData, a federated Secret's
template and overrides) are printed as masks, as every other output of
gitk8s shows them; --show-secrets prints them as they are, to pipe the
output to kubectl.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "yaml" && output != "json" {
				return failWith(exitError, fmt.Errorf("-o %s: use yaml or json", output))
			}
			from := src.take(args)
			render, err := src.renderSettings()
			if err != nil {
				return failWith(exitError, err)
			}
			bundle, err := reconcile.Render(cmd.Context(), reconcile.Request{Source: src.opener(from, src.path), Settings: reconcile.Settings{Render: render}})
			if err != nil {
				return failWith(exitError, err)
			}
			printSkipped(cmd.ErrOrStderr(), bundle)
			objects := make([]*unstructured.Unstructured, len(bundle.Objects))
			for i, o := range bundle.Objects {
				objects[i] = o.Object
			}
			if !showSecrets {
				diff.NewMasker().MaskAll(objects)
			}
			if output == "json" {
				items := make([]any, len(bundle.Objects))
				for i, o := range bundle.Objects {
					items[i] = o.Object.Object
				}
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
			}
			for i, o := range bundle.Objects {
				data, err := yaml.Marshal(o.Object.Object)
				if err != nil {
					return failWith(exitError, fmt.Errorf("%s: %s: %w", o.Source, o.Ref(), err))
				}
				if i > 0 {
					fmt.Fprintln(stdout, "---")
				}
				fmt.Fprintf(stdout, "# Source: %s\n%s", o.Source, data)
			}
			return nil
		},
	}
	src.addFlags(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "yaml", "output format: yaml or json")
	cmd.Flags().BoolVar(&showSecrets, "show-secrets", false, "print Secret values instead of their masks")
	return cmd
}
