// Command courier is the command-line client of courier's JobService:
// enqueue a job and wait for it, get, watch, cancel and list jobs.
//
//	courier [--addr 127.0.0.1:8005] [-o json] enqueue TYPE JSON [--key K] [--wait]
//	courier get ID | watch ID | cancel ID | list [--state S] [--type T]
//	courier dead-letters list [--type T] | show SUB/ID | replay SUB/ID... | replay --type T
//	courier version | completion bash|zsh|fish|powershell
//
// It learns message types from the server (gRPC server reflection), so it
// enqueues and shows any type courierd knows, not only types compiled into
// it. Settings come from flags, then the environment (COURIER_ADDR,
// COURIER_TOKEN, COURIER_PROFILE, COURIER_CONFIG), then a profile file.
//
// Exit status: 0 on success; 1 on errors; 3 when a waited-for job FAILED;
// 4 when it was CANCELLED.
package main

import (
	"context"
	"errors"
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
	default:
		fmt.Fprintf(os.Stderr, "courier: %v\nTry: courier help\n", err)
		os.Exit(1)
	}
}

// run runs the command line args, writing to stdout and stderr, with the
// process environment.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runEnv(ctx, args, stdout, stderr, os.Getenv)
}

// runEnv is run with the environment variables getenv returns.
func runEnv(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	g := &globals{stdout: stdout, stderr: stderr, getenv: getenv}
	defer g.close()
	root := newRoot(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	return root.ExecuteContext(ctx)
}
