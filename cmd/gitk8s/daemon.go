package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/gitk8s/gitk8s/internal/daemon"
)

func newDaemonCommand(g *globalOptions, stderr io.Writer) *cobra.Command {
	var configPath, cacheDir, logFormat, advertiseURL string
	cmd := &cobra.Command{
		Use:   "daemon --config FILE",
		Short: "Keep clusters converged on Git (see docs/configuration.md)",
		Long: `Daemon reads a configuration of clusters and syncs and, per sync, on its
interval asks the remote for the revision; only when it moved does it render,
check policies, apply, prune and wait for health, as gitk8s apply does. It
runs until it is stopped (SIGTERM or Ctrl-C); an invalid configuration is
refused at start with every problem named.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if configPath == "" {
				return failWith(exitError, fmt.Errorf("--config is required"))
			}
			cfg, err := daemon.LoadConfig(configPath)
			if err != nil {
				return failWith(exitError, err)
			}
			var handler slog.Handler = slog.NewTextHandler(stderr, nil)
			if logFormat == "json" {
				handler = slog.NewJSONHandler(stderr, nil)
			}
			logger := slog.New(handler)
			listen := cfg.Webhooks.ListenAddress()
			if advertiseURL == "" {
				advertiseURL = defaultAdvertiseURL(listen)
			}
			d, err := daemon.New(cfg, daemon.Options{GitCacheDir: cacheDir, Logger: logger, Kubeconfig: g.kubeconfig, AdvertiseURL: advertiseURL})
			if err != nil {
				return failWith(exitError, err)
			}
			defer d.Close()
			servers, err := d.Servers(daemon.DefaultServerOptions())
			if err != nil {
				return failWith(exitError, err)
			}
			// Bind every address before serving any, so that an address
			// that cannot be had stops the daemon at start instead of
			// leaving it running without webhooks or probes.
			var listeners []net.Listener
			for _, srv := range servers {
				l, err := net.Listen("tcp", srv.Addr)
				if err != nil {
					for _, l := range listeners {
						_ = l.Close()
					}
					return failWith(exitError, fmt.Errorf("listen %s: %w", srv.Addr, err))
				}
				listeners = append(listeners, l)
			}
			// client-go's own lines (leader election, watches) go through the
			// same handler, so that --log-format json is JSON throughout.
			// Routed once the daemon is sure to run.
			routeKlogTo(logger)
			for i, srv := range servers {
				go func() {
					if err := srv.Serve(listeners[i]); err != nil && !errors.Is(err, http.ErrServerClosed) {
						logger.Error("listener stopped", "listen", srv.Addr, "error", err)
					}
				}()
			}
			started := []any{"listen", listen, "syncs", len(cfg.Syncs), "clusters", len(cfg.Clusters)}
			if cfg.Webhooks.HooksListen != "" {
				started = append(started, "hooksListen", cfg.Webhooks.HooksListen)
			}
			logger.Info("daemon started", started...)
			err = d.RunElected(cmd.Context())
			shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for _, srv := range servers {
				_ = srv.Shutdown(shutdown)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "configuration file")
	cmd.Flags().StringVar(&cacheDir, "git-cache-dir", "", "where remote repositories are cached (default: the user's cache directory)")
	cmd.Flags().StringVar(&logFormat, "log-format", "text", "text or json")
	cmd.Flags().StringVar(&advertiseURL, "advertise-url", "", "where other replicas reach this daemon's HTTP API at webhooks.listen, so that standbys forward webhooks and status requests to the leader (default: http://$POD_IP:<listen port> when POD_IP is set)")
	return cmd
}

// defaultAdvertiseURL is http://$POD_IP:<port of listen>, or empty when
// POD_IP is not set (a standby then answers 503 instead of forwarding).
func defaultAdvertiseURL(listen string) string {
	ip := os.Getenv("POD_IP")
	if ip == "" {
		return ""
	}
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		return ""
	}
	return "http://" + net.JoinHostPort(ip, port)
}
