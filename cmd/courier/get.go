package main

import (
	"github.com/spf13/cobra"

	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

func newGetCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "show a job",
		Args:  args(1, "one job ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			svc, err := g.jobs()
			if err != nil {
				return err
			}
			j, err := svc.GetJob(ctx, &courierv1.GetJobRequest{Id: args[0]})
			if err != nil {
				return g.callErr(ctx, err)
			}
			if g.format == "json" {
				return g.printJSON(ctx, j)
			}
			printJob(g.stdout, j, g.typeResolver(ctx))
			return nil
		},
	}
}
