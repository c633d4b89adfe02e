package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

func newListCommand(g *globals) *cobra.Command {
	var (
		state, typ, pageToken string
		labels                map[string]string
		limit                 int
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "list jobs, newest first",
		Example: `  courier list --state failed --type courier.demo.v1.Sleep
  courier list --label team=a --limit 200`,
		Args: args(0, "no arguments (filter with --state, --type and --label)"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			req := &courierv1.ListJobsRequest{Type: typ, Labels: labels, PageSize: int32(limit), PageToken: pageToken}
			if state != "" {
				v, ok := courierv1.State_value[strings.ToUpper(state)]
				if !ok || v == 0 {
					return fmt.Errorf("--state %q: the states are %s", state, strings.Join(stateNames(), ", "))
				}
				req.State = courierv1.State(v)
			}
			svc, err := g.jobs()
			if err != nil {
				return err
			}
			resp, err := svc.ListJobs(ctx, req)
			if err != nil {
				return g.callErr(ctx, err)
			}
			if g.format == "json" {
				return g.printJSON(ctx, resp)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tTYPE\tSTATE\tATTEMPT\tCREATED")
			for _, j := range resp.GetJobs() {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\n", j.GetId(), j.GetType(), j.GetState(), j.GetAttempt(), j.GetMaxAttempts(), fmtTime(j.GetCreateTime()))
			}
			tw.Flush()
			if resp.GetNextPageToken() != "" {
				fmt.Fprintf(g.stdout, "more: courier list --page-token %s\n", resp.GetNextPageToken())
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&state, "state", "", "only jobs in this `state` ("+strings.Join(stateNames(), ", ")+")")
	f.StringVar(&typ, "type", "", "only jobs of this payload `type`")
	f.StringToStringVar(&labels, "label", nil, "only jobs with this `k=v` label (repeatable)")
	f.IntVar(&limit, "limit", 50, "at most `N` jobs (one page; the server caps it at 1000)")
	f.StringVar(&pageToken, "page-token", "", "continue from a previous list's next page `token`")
	cmd.RegisterFlagCompletionFunc("state", cobra.FixedCompletions(stateNames(), cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// stateNames lists the job states, in life order.
func stateNames() []string {
	return []string{"QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"}
}
