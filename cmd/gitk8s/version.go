package main

import (
	"fmt"
	"io"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/gitk8s/gitk8s/internal/apply"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func newVersionCommand(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the gitk8s version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintf(stdout, "gitk8s %s (%s, %s/%s; ApplySet tooling %s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH, apply.Tooling)
			return nil
		},
	}
}
