// Command pubsub-emulator serves courier's Google Cloud Pub/Sub emulator
// (the google.pubsub.v1 gRPC API, schemas included) until interrupted.
// Point any Pub/Sub client at it with PUBSUB_EMULATOR_HOST=HOST:PORT. With
// --data-dir, topics, subscriptions, snapshots, schemas and unacked
// messages survive restarts; with --config FILE it creates the schemas,
// topics and subscriptions the file lists before it serves (see
// emulator.Resources). The public keys of the OIDC tokens it sends to push
// endpoints are at http://HOST:PORT/oauth2/v3/certs.
//
// It is for local development and tests, not for production traffic.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/courierq/courier/emulator"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "pubsub-emulator: %v\nTry: pubsub-emulator --host 127.0.0.1 --port 8085 [--data-dir DIR] [--config FILE]\n", err)
		os.Exit(1)
	}
}

// run starts the emulator, provisions what --config lists, prints the line
// "listening on HOST:PORT" to stdout (tests wait for it) and serves until
// ctx ends.
func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("pubsub-emulator", flag.ContinueOnError)
	host := fs.String("host", "127.0.0.1", "address to listen on")
	port := fs.Int("port", 8085, "port to listen on (0: a free port)")
	dataDir := fs.String("data-dir", "", "folder that keeps state across restarts (default: memory only)")
	config := fs.String("config", "", "YAML or JSON file of schemas, topics and subscriptions to create at start")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q; all settings are flags", fs.Args())
	}
	var res *emulator.Resources
	if *config != "" {
		var err error
		if res, err = emulator.LoadResources(*config); err != nil {
			return err
		}
	}
	srv, err := emulator.Start(ctx, emulator.Config{Host: *host, Port: *port, DataDir: *dataDir})
	if err != nil {
		return err
	}
	if res != nil {
		report, err := srv.Provision(ctx, res)
		for _, line := range report {
			fmt.Fprintf(os.Stderr, "pubsub-emulator: %s\n", line)
		}
		if err != nil {
			srv.Close()
			return fmt.Errorf("%s: %w", *config, err)
		}
	}
	fmt.Printf("listening on %s\n", srv.Addr)
	if *dataDir != "" {
		fmt.Fprintf(os.Stderr, "pubsub-emulator: keeping state in %s\n", *dataDir)
	}
	<-ctx.Done()
	return srv.Close()
}
