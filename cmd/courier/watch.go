package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

func newWatchCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "watch ID",
		Short: "follow a job until it ends (a live progress bar on a terminal)",
		Args:  args(1, "one job ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return watch(cmd.Context(), g, args[0])
		},
	}
}

// watch follows job id until it ends and prints it: a live progress bar on a
// terminal (redrawn in place, fitted to its width), a line per change when
// the output is a file or a pipe (no escape codes), protojson documents with
// -o json. It returns exitError{3} when the job FAILED and exitError{4} when
// it was CANCELLED.
func watch(ctx context.Context, g *globals, id string) error {
	svc, err := g.jobs()
	if err != nil {
		return err
	}
	stream, err := svc.WatchJob(ctx, &courierv1.WatchJobRequest{Id: id})
	if err != nil {
		return g.callErr(ctx, err)
	}
	_, tty := terminalWidth(g.stdout)
	tty = tty && g.format == "text"
	var last *courierv1.Job
	for {
		j, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if tty && last != nil {
				fmt.Fprintln(g.stdout)
			}
			return g.callErr(ctx, err)
		}
		last = j
		switch {
		case g.format == "json":
			if err := g.printJSON(ctx, j); err != nil {
				return err
			}
		case tty:
			cols, _ := terminalWidth(g.stdout) // again: the window may have changed
			// One column spare: writing the last one makes some terminals wrap.
			fmt.Fprintf(g.stdout, "\r\x1b[K%s", progressLine(j, cols-1))
		default:
			fmt.Fprintf(g.stdout, "%s %s attempt=%d progress=%.0f%% %s\n", j.GetId(), j.GetState(), j.GetAttempt(), j.GetProgress().GetFraction()*100, printable(j.GetProgress().GetMessage()))
		}
	}
	if last == nil {
		return fmt.Errorf("the server ended the watch of %s without sending the job", id)
	}
	if g.format == "text" {
		if tty {
			fmt.Fprintln(g.stdout)
		}
		printJob(g.stdout, last, g.typeResolver(ctx))
	}
	return exitFor(last)
}
