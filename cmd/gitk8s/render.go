package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/gitk8s/gitk8s/internal/diff"
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
			snap, bundle, err := src.load(cmd.Context(), src.take(args))
			if err != nil {
				return failWith(exitError, err)
			}
			defer snap.Close()
			printSkipped(cmd.ErrOrStderr(), bundle)
			if !showSecrets {
				masker := diff.NewMasker()
				for _, o := range bundle.Objects {
					masker.Learn(o.Object)
				}
				for _, o := range bundle.Objects {
					masker.MaskObject(o.Object)
				}
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
