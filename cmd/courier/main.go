// Command courier is the command-line client of courier's JobService:
// enqueue a job and wait for it, get, watch, cancel and list jobs.
//
//	courier [--addr 127.0.0.1:8005] [-o json] enqueue TYPE JSON [--key K] [--wait]
//	courier get ID | watch ID | cancel ID | list [--state S] [--type T]
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
)

// exitError carries an exit code without a message (the output said it).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	var ee exitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		os.Exit(ee.code)
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "courier: %v\nTry: courier help\n", err)
		os.Exit(1)
	}
}

// command is one subcommand.
type command interface {
	// Flags registers the command's flags.
	Flags(fs *flag.FlagSet)
	// Run runs it with its positional arguments.
	Run(ctx context.Context, g *globals, args []string) error
	// Usage is the one-line synopsis.
	Usage() string
}

func commands() map[string]command {
	return map[string]command{
		"enqueue": &enqueueCommand{},
		"get":     &getCommand{},
		"watch":   &watchCommand{},
		"cancel":  &cancelCommand{},
		"list":    &listCommand{},
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage: courier [--addr HOST:PORT] [-o text|json] COMMAND [ARGS]

Commands:
`)
	for _, name := range []string{"enqueue", "get", "watch", "cancel", "list"} {
		fmt.Fprintf(w, "  %s\n", commands()[name].Usage())
	}
	fmt.Fprint(w, `
Global flags (before or after the command):
  --addr HOST:PORT   courierd's gRPC address (default 127.0.0.1:8005, or $COURIER_ADDR)
  -o text|json       output format; json prints protojson
  --token-file FILE  bearer token for the server (or $COURIER_TOKEN)
  --ca-file FILE     verify the server with this CA (turns on TLS)
  --tls              use TLS with the system roots

Exit status: 0 on success; 1 on errors; 3 when a waited-for job FAILED; 4 when it was CANCELLED.
`)
}

// run parses the global flags and the command, and runs it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		return nil
	}
	// Global flags may come before the command.
	g := &globals{stdout: stdout, stderr: stderr}
	pre := flag.NewFlagSet("courier", flag.ContinueOnError)
	pre.SetOutput(stderr)
	pre.Usage = func() { usage(stderr) }
	g.register(pre)
	if err := pre.Parse(args); err != nil {
		return err
	}
	rest := pre.Args()
	if len(rest) == 0 {
		usage(stderr)
		return errors.New("no command given")
	}
	name := rest[0]
	cmd, ok := commands()[name]
	if !ok {
		return fmt.Errorf("unknown command %q; the commands are enqueue, get, watch, cancel, list", name)
	}
	fs := flag.NewFlagSet("courier "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintf(stderr, "Usage: courier %s\n", cmd.Usage()); fs.PrintDefaults() }
	g.register(fs)
	cmd.Flags(fs)
	pos, err := parseInterspersed(fs, rest[1:])
	if err != nil {
		return err
	}
	if err := g.validate(); err != nil {
		return err
	}
	return cmd.Run(ctx, g, pos)
}

// parseInterspersed parses flags wherever they are among the positional
// arguments (the standard flag package stops at the first positional one).
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
