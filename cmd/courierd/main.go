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
	logLevel := fs.String("log-level", "", "log level: debug, info, warn, error (default: the config's log.level, info)")
	showVersion := fs.Bool("version", false, "print the version (module and VCS information) and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: courierd [--config FILE]

With no --config, courierd runs the embedded demo stack: gRPC on 127.0.0.1:8005,
HTTP on 127.0.0.1:8006, all on loopback, nothing else needed.

Every setting of the config file can also be set from the environment:
COURIER_ and its path, upper-cased, "_" for "." (handlers.ackDeadline is
COURIER_HANDLERS_ACKDEADLINE=90s); see the README, "Configuration from the
environment".

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *showVersion {
		fmt.Fprintln(os.Stdout, version())
		return nil
	}

	data, source := config.Demo, "the embedded demo config"
	if *configPath != "" {
		var err error
		if data, err = os.ReadFile(*configPath); err != nil {
			return fmt.Errorf("config: %w", err)
		}
		source = *configPath
	}
	cfg, unknown, err := config.ParseEnv(data, os.Environ())
	if err != nil {
		return fmt.Errorf("%s: %w", source, err)
	}
	if *logLevel != "" {
		cfg.Log.Level = *logLevel
	}
	logger, err := courier.NewLogger(stderr, cfg.Log)
	if err != nil {
		return fmt.Errorf("--log-level or log section: %w", err)
	}
	logger.Info("courierd: starting", "version", shortVersion(), "config", source)
	if len(unknown) > 0 {
		logger.Warn("courierd: these COURIER_ environment variables name no setting and are ignored; check their spelling (COURIER_ and the setting's path, upper-cased, \"_\" for \".\")", "vars", unknown)
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
