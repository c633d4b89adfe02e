// Command courierd runs courier: the gRPC API, the HTTP endpoints
// (dashboard, /metrics, health) and the workers. With no --config it runs
// the embedded demo stack on loopback; with --config FILE, the configured
// services. It is flags and signals around courier.New: everything it runs,
// a program of yours can run with the same call.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/courierq/courier"
	"github.com/courierq/courier/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "courierd: %v\nTry: courierd --help\n", err)
		os.Exit(1)
	}
}

// run parses args, builds the Node and runs it until ctx ends, then shuts
// down gracefully. ready, when non-nil, is called with the Node once it is
// ready (tests use it); opts are passed to courier.New.
func run(ctx context.Context, args []string, stderr io.Writer, ready func(*courier.Node), opts ...courier.Option) error {
	fs := flag.NewFlagSet("courierd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "config `file` (YAML); empty runs the embedded demo stack")
	shutdownTimeout := fs.Duration("shutdown-timeout", 0, "how long a graceful shutdown may take before in-flight work is cancelled (default: the config's shutdownTimeout, 30s)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: courierd [--config FILE]\n\nWith no --config, courierd runs the embedded demo stack: gRPC on 127.0.0.1:8005,\nHTTP on 127.0.0.1:8006, all on loopback, nothing else needed.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	var cfg *config.Config
	var err error
	if *configPath == "" {
		logger.Info("courierd: no --config: running the embedded demo stack")
		cfg, err = config.Parse(config.Demo)
	} else {
		cfg, err = config.Load(*configPath)
	}
	if err != nil {
		return err
	}
	if *shutdownTimeout > 0 {
		cfg.ShutdownTimeout = config.Duration(*shutdownTimeout)
	}
	node, err := courier.New(cfg, append([]courier.Option{courier.WithLogger(logger)}, opts...)...)
	if err != nil {
		return err
	}
	if ready != nil {
		go func() {
			select {
			case <-node.Ready():
				ready(node)
			case <-node.Done():
			}
		}()
	}
	return node.Run(ctx)
}
