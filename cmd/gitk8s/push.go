package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/gitk8s/gitk8s/internal/source"
)

// newPushCommand makes `gitk8s push oci://REGISTRY/REPO:TAG DIR`: the
// folder as an artifact in Flux's format, so that CI can publish what it
// tested and a sync (or flux) can read it.
func newPushCommand(stdout io.Writer) *cobra.Command {
	var sourceURL, revision string
	var plainHTTP bool
	cmd := &cobra.Command{
		Use:   "push oci://REGISTRY/REPOSITORY:TAG DIR",
		Short: "Push a folder of manifests to an OCI registry as an artifact",
		Long: `Push makes an artifact of DIR in Flux's format (one gzipped tarball of its
regular files, .git left out) and tags it. The same folder always makes
the same digest. Credentials: Docker's configuration, or
$GITK8S_OCI_USERNAME and $GITK8S_OCI_PASSWORD. A registry on loopback is
reached over plain HTTP, any other over HTTPS unless --plain-http.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := source.ParseOCI(args[0], "", "")
			if err != nil {
				return failWith(exitError, err)
			}
			if info, err := os.Stat(args[1]); err != nil || !info.IsDir() {
				return failWith(exitError, fmt.Errorf("%s: want a folder to push", args[1]))
			}
			annotations := map[string]string{}
			if sourceURL != "" {
				annotations["org.opencontainers.image.source"] = source.Redact(sourceURL)
			}
			if revision != "" {
				annotations["org.opencontainers.image.revision"] = revision
			}
			opts := source.OCIOptions{Auth: source.Auth{Username: os.Getenv("GITK8S_OCI_USERNAME"), Password: os.Getenv("GITK8S_OCI_PASSWORD")},
				DockerConfig: true, PlainHTTP: plainHTTP}
			digest, err := source.PushOCI(cmd.Context(), ref, args[1], annotations, opts)
			if err != nil {
				return failWith(exitFailed, err)
			}
			fmt.Fprintf(stdout, "pushed %s@%s\n", ref, digest)
			return nil
		},
	}
	cmd.Flags().StringVar(&sourceURL, "source", "", "the artifact's source (its Git URL), as org.opencontainers.image.source")
	cmd.Flags().StringVar(&revision, "revision", "", "the artifact's revision (branch@sha1:COMMIT, as Flux writes it), as org.opencontainers.image.revision")
	cmd.Flags().BoolVar(&plainHTTP, "plain-http", false, "reach a registry that is not on loopback over plain HTTP")
	return cmd
}
