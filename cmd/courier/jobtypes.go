package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

// courier types pause|resume|list: job types whose workers stop pulling.
func newTypesCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "types",
		Short: "pause and resume job types, fleet-wide",
		Long: `A paused job type is not pulled by any worker of the fleet (within
jobs.typePausePoll, 5s by default); its queued jobs wait, and enqueue goes on.

  courier types pause courier.demo.v1.Echo
  courier types list
  courier types resume courier.demo.v1.Echo`,
	}
	pause := &cobra.Command{
		Use: "pause TYPE", Short: "pause a job type", Args: args(1, "a job type"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			svc, err := g.jobs()
			if err != nil {
				return err
			}
			p, err := svc.PauseJobType(ctx, &courierv1.PauseJobTypeRequest{Type: args[0]})
			if err != nil {
				return g.callErr(ctx, err)
			}
			if g.format == "json" {
				return g.printJSON(ctx, p)
			}
			fmt.Fprintf(g.stdout, "%s paused since %s\n", p.GetType(), fmtTime(p.GetPauseTime()))
			return nil
		},
	}
	resume := &cobra.Command{
		Use: "resume TYPE", Short: "resume a paused job type", Args: args(1, "a job type"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			svc, err := g.jobs()
			if err != nil {
				return err
			}
			r, err := svc.ResumeJobType(ctx, &courierv1.ResumeJobTypeRequest{Type: args[0]})
			if err != nil {
				return g.callErr(ctx, err)
			}
			if g.format == "json" {
				return g.printJSON(ctx, r)
			}
			if r.GetResumed() {
				fmt.Fprintf(g.stdout, "%s resumed\n", args[0])
			} else {
				fmt.Fprintf(g.stdout, "%s was not paused\n", args[0])
			}
			return nil
		},
	}
	list := &cobra.Command{
		Use: "list", Short: "list the paused job types", Args: args(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			svc, err := g.jobs()
			if err != nil {
				return err
			}
			resp, err := svc.ListPausedJobTypes(ctx, &courierv1.ListPausedJobTypesRequest{})
			if err != nil {
				return g.callErr(ctx, err)
			}
			if g.format == "json" {
				return g.printJSON(ctx, resp)
			}
			if len(resp.GetTypes()) == 0 {
				fmt.Fprintln(g.stdout, "no job type is paused")
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PAUSED TYPE\tSINCE")
			for _, p := range resp.GetTypes() {
				fmt.Fprintf(tw, "%s\t%s\n", p.GetType(), fmtTime(p.GetPauseTime()))
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(pause, resume, list)
	return cmd
}
