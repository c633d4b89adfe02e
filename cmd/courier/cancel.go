package main

import (
	"fmt"

	"github.com/spf13/cobra"

	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

func newCancelCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "cancel a queued or running job",
		Args:  args(1, "one job ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			svc, err := g.jobs()
			if err != nil {
				return err
			}
			j, err := svc.CancelJob(ctx, &courierv1.CancelJobRequest{Id: args[0]})
			if err != nil {
				return g.callErr(ctx, err)
			}
			if g.format == "json" {
				return g.printJSON(ctx, j)
			}
			fmt.Fprintf(g.stdout, "%s %s\n", j.GetId(), j.GetState())
			return nil
		},
	}
}
