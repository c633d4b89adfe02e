package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

type listCommand struct {
	state     string
	typ       string
	labels    labelFlag
	limit     int
	pageToken string
}

func (c *listCommand) Usage() string {
	return "list                list jobs, newest first [--state S] [--type T] [--label k=v] [--limit N]"
}

func (c *listCommand) Flags(fs *flag.FlagSet) {
	fs.StringVar(&c.state, "state", "", "only jobs in this `state` (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)")
	fs.StringVar(&c.typ, "type", "", "only jobs of this payload `type`")
	fs.Var(&c.labels, "label", "only jobs with this `k=v` label (repeatable)")
	fs.IntVar(&c.limit, "limit", 50, "at most `N` jobs (one page)")
	fs.StringVar(&c.pageToken, "page-token", "", "continue from a previous list's next page `token`")
}

func (c *listCommand) Run(ctx context.Context, g *globals, args []string) error {
	if len(args) != 0 {
		return errors.New("list takes no arguments; filter with --state, --type and --label")
	}
	req := &courierv1.ListJobsRequest{Type: c.typ, Labels: c.labels.m, PageSize: int32(c.limit), PageToken: c.pageToken}
	if c.state != "" {
		v, ok := courierv1.State_value[strings.ToUpper(c.state)]
		if !ok || v == 0 {
			return fmt.Errorf("--state %q: the states are QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED", c.state)
		}
		req.State = courierv1.State(v)
	}
	svc, err := g.jobs()
	if err != nil {
		return err
	}
	defer g.close()
	resp, err := svc.ListJobs(ctx, req)
	if err != nil {
		return g.callErr(ctx, err)
	}
	if g.output == "json" {
		return g.printJSON(resp)
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
}
