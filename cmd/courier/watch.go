package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

type watchCommand struct{}

func (c *watchCommand) Usage() string {
	return "watch ID            follow a job until it ends (live progress bar on a terminal)"
}
func (c *watchCommand) Flags(fs *flag.FlagSet) {}

func (c *watchCommand) Run(ctx context.Context, g *globals, args []string) error {
	if len(args) != 1 {
		return errors.New("watch takes one job ID")
	}
	defer g.close()
	return watch(ctx, g, args[0])
}

// watch follows job id until it ends and prints it: a live progress bar on a
// terminal, a line per change otherwise, protojson documents with -o json.
// It returns exitError{3} when the job FAILED and exitError{4} when it was
// CANCELLED.
func watch(ctx context.Context, g *globals, id string) error {
	svc, err := g.jobs()
	if err != nil {
		return err
	}
	stream, err := svc.WatchJob(ctx, &courierv1.WatchJobRequest{Id: id})
	if err != nil {
		return g.callErr(ctx, err)
	}
	tty := g.output == "text" && isTerminal(g.stdout)
	var last *courierv1.Job
	for {
		j, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if tty {
				fmt.Fprintln(g.stdout)
			}
			return g.callErr(ctx, err)
		}
		last = j
		switch {
		case g.output == "json":
			if err := g.printJSON(j); err != nil {
				return err
			}
		case tty:
			fmt.Fprintf(g.stdout, "\r\x1b[K%s", progressBar(j, 100))
		default:
			fmt.Fprintf(g.stdout, "%s %s attempt=%d progress=%.0f%% %s\n", j.GetId(), j.GetState(), j.GetAttempt(), j.GetProgress().GetFraction()*100, j.GetProgress().GetMessage())
		}
	}
	if last == nil {
		return fmt.Errorf("the server ended the watch of %s without sending the job", id)
	}
	if g.output == "text" {
		if tty {
			fmt.Fprintln(g.stdout)
		}
		printJob(g.stdout, last)
	}
	return exitFor(last)
}
