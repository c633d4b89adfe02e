package main

import (
	"context"
	"errors"
	"flag"

	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

type getCommand struct{}

func (c *getCommand) Usage() string          { return "get ID              show a job" }
func (c *getCommand) Flags(fs *flag.FlagSet) {}

func (c *getCommand) Run(ctx context.Context, g *globals, args []string) error {
	if len(args) != 1 {
		return errors.New("get takes one job ID")
	}
	svc, err := g.jobs()
	if err != nil {
		return err
	}
	defer g.close()
	j, err := svc.GetJob(ctx, &courierv1.GetJobRequest{Id: args[0]})
	if err != nil {
		return g.callErr(ctx, err)
	}
	if g.output == "json" {
		return g.printJSON(j)
	}
	printJob(g.stdout, j)
	return nil
}
