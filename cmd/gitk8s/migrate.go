package main

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gitk8s/gitk8s/internal/apiversions"
)

func newMigrateCommand(stdout io.Writer) *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "migrate PATH...",
		Short: "Rewrite manifests that use removed API versions",
		Long: `Migrate rewrites, in place, the objects of the YAML files under each PATH that
use API versions Kubernetes removed, to the versions that replace them, where
the conversion is mechanical: the selector apps/v1 requires, Ingress backends
and path types, autoscaling/v2 metric targets, and plain version changes.
Comments and key order are kept. What needs a person's decision is listed.

Exit status: 0 nothing left to decide, 1 something needs a person, 2 error.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			needsHuman := false
			for _, arg := range args {
				err := filepath.WalkDir(arg, func(p string, d fs.DirEntry, err error) error {
					if err != nil {
						return err
					}
					if d.IsDir() {
						if p != arg && strings.HasPrefix(d.Name(), ".") {
							return fs.SkipDir
						}
						return nil
					}
					if ext := strings.ToLower(filepath.Ext(p)); ext != ".yaml" && ext != ".yml" {
						return nil
					}
					data, err := os.ReadFile(p)
					if err != nil {
						return err
					}
					out, changes, err := apiversions.Migrate(data)
					if err != nil {
						return fmt.Errorf("%s: %w", p, err)
					}
					for _, c := range changes {
						if c.To != "" {
							fmt.Fprintf(stdout, "%s:%d: %s: %s → %s\n", p, c.Line, c.Object, c.From, c.To)
						} else {
							fmt.Fprintf(stdout, "%s:%d: %s: %s left as it is\n", p, c.Line, c.Object, c.From)
						}
						for _, d := range c.Done {
							fmt.Fprintf(stdout, "    done: %s\n", d)
						}
						for _, h := range c.Human {
							fmt.Fprintf(stdout, "    decide: %s\n", h)
							needsHuman = true
						}
					}
					if dryRun || string(out) == string(data) {
						return nil
					}
					info, err := d.Info()
					if err != nil {
						return err
					}
					return os.WriteFile(p, out, info.Mode().Perm())
				})
				if err != nil {
					return failWith(exitError, err)
				}
			}
			if needsHuman {
				return failWith(exitFailed, nil)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "report what would change; write nothing")
	return cmd
}
