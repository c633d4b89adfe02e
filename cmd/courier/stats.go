package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

func newStatsCommand(g *globals) *cobra.Command {
	var typ string
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "count jobs by type and state, with each type's oldest queued job",
		Example: `  courier stats
  courier stats --type courier.demo.v1.Sleep -o json`,
		Args: args(0, "no arguments (narrow to one type with --type)"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			svc, err := g.jobs()
			if err != nil {
				return err
			}
			resp, err := svc.CountJobs(ctx, &courierv1.CountJobsRequest{Type: typ})
			if err != nil {
				return g.callErr(ctx, err)
			}
			if g.format == "json" {
				return g.printJSON(ctx, resp)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "TYPE\tQUEUED\tRUNNING\tSUCCEEDED\tFAILED\tCANCELLED\tOLDEST QUEUED\t")
			for _, c := range resp.GetTypes() {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\t\n", c.GetType(), c.GetQueued(), c.GetRunning(), c.GetSucceeded(), c.GetFailed(), c.GetCancelled(), fmtTime(c.GetOldestQueuedTime()))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&typ, "type", "", "only this payload `type`")
	return cmd
}
