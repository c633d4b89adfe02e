package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"

	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

// A dead letter is named SUBSCRIPTION/MESSAGE_ID on the command line
// (subscription IDs have no '/').
func letterName(d interface {
	GetSubscription() string
	GetMessageId() string
}) string {
	return d.GetSubscription() + "/" + d.GetMessageId()
}

func parseLetter(s string) (*courierv1.DeadLetterRef, error) {
	sub, id, ok := strings.Cut(s, "/")
	if !ok || sub == "" || id == "" {
		return nil, fmt.Errorf("%q is not a dead letter: name it SUBSCRIPTION/MESSAGE_ID, as courier dead-letters list shows", s)
	}
	return &courierv1.DeadLetterRef{Subscription: sub, MessageId: id}, nil
}

func newDeadLettersCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "dead-letters",
		Aliases: []string{"dl"},
		Short:   "list, show and replay the dead letters of the job types",
		Long: `Dead letters are the messages of jobs that failed for good (or never decoded),
kept on each type's dead-letter subscription. Any courier replica with the API
role lists and replays them (ListDeadLetters, ReplayDeadLetters). A dead letter
is named SUBSCRIPTION/MESSAGE_ID. A replay enqueues a new job from it (labelled
reenqueued-from=DEAD_JOB_ID; replaying one dead job twice makes one job) and
removes it.`,
		Example: `  courier dead-letters list --type courier.demo.v1.Sleep
  courier dead-letters show courier-demo-v1-Sleep-dead-letter/12
  courier dead-letters replay courier-demo-v1-Sleep-dead-letter/12 courier-demo-v1-Sleep-dead-letter/13
  courier dead-letters replay --type courier.demo.v1.Sleep`,
	}
	cmd.AddCommand(newDLListCommand(g), newDLShowCommand(g), newDLReplayCommand(g))
	return cmd
}

func newDLListCommand(g *globals) *cobra.Command {
	var (
		typ   string
		limit int
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "list dead letters, oldest first (a peek: they stay)",
		Args:  args(0, "no arguments (filter with --type)"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			svc, err := g.jobs()
			if err != nil {
				return err
			}
			resp, err := svc.ListDeadLetters(ctx, &courierv1.ListDeadLettersRequest{Type: typ, PageSize: int32(limit)})
			if err != nil {
				return g.callErr(ctx, err)
			}
			if g.format == "json" {
				return g.printJSON(ctx, resp)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "DEAD LETTER\tTYPE\tJOB\tATTEMPT\tPUBLISHED\tREASON")
			for _, d := range resp.GetDeadLetters() {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", letterName(d), or(d.GetType(), "-"), or(d.GetJobId(), "-"), d.GetAttempt(), fmtTime(d.GetPublishTime()), oneLine(d.GetReason()))
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&typ, "type", "", "only dead letters of this job `type`")
	f.IntVar(&limit, "limit", 100, "at most `N` dead letters of each type (1 to 1000)")
	return cmd
}

func newDLShowCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show SUBSCRIPTION/MESSAGE_ID",
		Short: "show a dead letter: its job, reason, payload and attributes",
		Args:  args(1, "one dead letter, SUBSCRIPTION/MESSAGE_ID"),
		RunE: func(cmd *cobra.Command, a []string) error {
			ctx := cmd.Context()
			ref, err := parseLetter(a[0])
			if err != nil {
				return err
			}
			svc, err := g.jobs()
			if err != nil {
				return err
			}
			resp, err := svc.ListDeadLetters(ctx, &courierv1.ListDeadLettersRequest{PageSize: 1000})
			if err != nil {
				return g.callErr(ctx, err)
			}
			i := slices.IndexFunc(resp.GetDeadLetters(), func(d *courierv1.DeadLetter) bool { return letterName(d) == letterName(ref) })
			if i < 0 {
				return fmt.Errorf("no dead letter %s (replayed already, or being read by someone else: courier dead-letters list)", a[0])
			}
			d := resp.GetDeadLetters()[i]
			if g.format == "json" {
				return g.printJSON(ctx, d)
			}
			printDeadLetter(g.stdout, d, g.typeResolver(ctx))
			return nil
		},
	}
}

func printDeadLetter(w io.Writer, d *courierv1.DeadLetter, types *types) {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	line("dead letter", letterName(d))
	line("type", d.GetType())
	line("job", d.GetJobId())
	if d.GetAttempt() > 0 {
		line("attempt", fmt.Sprint(d.GetAttempt()))
	}
	line("published", fmtTime(d.GetPublishTime()))
	line("reason", d.GetReason())
	line("payload", anyJSON(d.GetPayload(), types))
	for _, k := range slices.Sorted(maps.Keys(d.GetLabels())) {
		line("label "+k, d.GetLabels()[k])
	}
	for _, k := range slices.Sorted(maps.Keys(d.GetAttributes())) {
		line("attribute "+k, d.GetAttributes()[k])
	}
	tw.Flush()
}

func newDLReplayCommand(g *globals) *cobra.Command {
	var typ string
	cmd := &cobra.Command{
		Use:   "replay SUBSCRIPTION/MESSAGE_ID... | --type TYPE",
		Short: "enqueue a new job from each dead letter, then remove it",
		RunE: func(cmd *cobra.Command, a []string) error {
			ctx := cmd.Context()
			req := &courierv1.ReplayDeadLettersRequest{Type: typ}
			switch {
			case len(a) == 0 && typ == "":
				return fmt.Errorf("replay takes dead letters (SUBSCRIPTION/MESSAGE_ID, from courier dead-letters list) or --type TYPE")
			case len(a) > 0 && typ != "":
				return fmt.Errorf("replay takes dead letters or --type, not both")
			}
			for _, s := range a {
				ref, err := parseLetter(s)
				if err != nil {
					return err
				}
				req.DeadLetters = append(req.DeadLetters, ref)
			}
			svc, err := g.jobs()
			if err != nil {
				return err
			}
			resp, err := svc.ReplayDeadLetters(ctx, req)
			if err != nil {
				return g.callErr(ctx, err)
			}
			failed := 0
			for _, r := range resp.GetResults() {
				if r.GetError() != nil {
					failed++
				}
			}
			if g.format == "json" {
				if err := g.printJSON(ctx, resp); err != nil {
					return err
				}
			} else {
				for _, r := range resp.GetResults() {
					if e := r.GetError(); e != nil {
						fmt.Fprintf(g.stdout, "%s: %s: %s\n", letterName(r), codes.Code(e.GetCode()), e.GetMessage())
						continue
					}
					fmt.Fprintf(g.stdout, "%s → job %s\n", letterName(r), r.GetJobId())
				}
				if len(resp.GetResults()) == 0 {
					fmt.Fprintln(g.stdout, "no dead letters to replay")
				}
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d dead letters were not replayed", failed, len(resp.GetResults()))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&typ, "type", "", "replay every dead letter of this job `type` (up to 1000)")
	return cmd
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// oneLine keeps a reason on its table row.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 100 {
		s = s[:97] + "..."
	}
	return s
}
