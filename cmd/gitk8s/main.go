// Command gitk8s renders the Kubernetes manifests in a directory or Git
// repository, diffs them against clusters and applies them with server-side
// apply. See docs/architecture.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
