package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

type cancelCommand struct{}

func (c *cancelCommand) Usage() string          { return "cancel ID           cancel a queued or running job" }
func (c *cancelCommand) Flags(fs *flag.FlagSet) {}

func (c *cancelCommand) Run(ctx context.Context, g *globals, args []string) error {
	if len(args) != 1 {
		return errors.New("cancel takes one job ID")
	}
	svc, err := g.jobs()
	if err != nil {
		return err
	}
	defer g.close()
	j, err := svc.CancelJob(ctx, &courierv1.CancelJobRequest{Id: args[0]})
	if err != nil {
		return g.callErr(ctx, err)
	}
	if g.output == "json" {
		return g.printJSON(j)
	}
	fmt.Fprintf(g.stdout, "%s %s\n", j.GetId(), j.GetState())
	return nil
}
