package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

// courier schedules create|list|pause|resume|delete: periodic jobs.
func newSchedulesCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schedules",
		Short: "periodic jobs: create, list, pause, resume, delete",
		Long: `A schedule enqueues one job at each tick of a cron expression (in a time
zone) or of a fixed interval, once across all of courierd's replicas:

  courier schedules create nightly courier.demo.v1.Echo '{"message":"hi"}' --cron "0 2 * * *" --tz Europe/Paris
  courier schedules create often courier.demo.v1.Echo '{}' --every 90s --catch-up
  courier schedules list
  courier schedules pause nightly | resume nightly | delete nightly`,
	}
	cmd.AddCommand(newScheduleCreate(g), newScheduleList(g), newScheduleAction(g, "pause"), newScheduleAction(g, "resume"), newScheduleAction(g, "delete"))
	return cmd
}

func newScheduleCreate(g *globals) *cobra.Command {
	var (
		cron, tz string
		every    time.Duration
		catchUp  bool
		attempts int32
		labels   map[string]string
	)
	cmd := &cobra.Command{
		Use:   "create NAME TYPE JSON",
		Short: "create a schedule of jobs of message type TYPE, the payload as JSON",
		Args:  args(3, "a name, a message type and its JSON"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			name, typeName, body := args[0], args[1], args[2]
			types := g.typeResolver(ctx)
			mt, err := types.message(typeName)
			if err != nil {
				return err
			}
			msg := mt.New().Interface()
			if err := (protojson.UnmarshalOptions{Resolver: types}).Unmarshal([]byte(body), msg); err != nil {
				return fmt.Errorf("JSON is not a valid %s: %v", typeName, err)
			}
			payload, err := anypb.New(msg)
			if err != nil {
				return err
			}
			sc := &courierv1.Schedule{Name: name, Payload: payload, Cron: cron, TimeZone: tz, Labels: labels, MaxAttempts: attempts}
			if every != 0 {
				sc.Every = durationpb.New(every)
			}
			if catchUp {
				sc.Missed = courierv1.MissedTicks_MISSED_TICKS_CATCH_UP
			}
			svc, err := g.jobs()
			if err != nil {
				return err
			}
			out, err := svc.CreateSchedule(ctx, &courierv1.CreateScheduleRequest{Schedule: sc})
			if err != nil {
				return g.callErr(ctx, err)
			}
			if g.format == "json" {
				return g.printJSON(ctx, out)
			}
			fmt.Fprintf(g.stdout, "%s next %s\n", out.GetName(), fmtTime(out.GetNextTime()))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cron, "cron", "", "a cron `expression`: 5 fields, 6 with seconds first, or @hourly, @daily, ...")
	f.StringVar(&tz, "tz", "", "the IANA time `zone` of --cron (default UTC)")
	f.DurationVar(&every, "every", 0, "a fixed `interval` instead of --cron (ticks on whole multiples since the Unix epoch)")
	f.BoolVar(&catchUp, "catch-up", false, "run the ticks missed while courier was down (default: skip them)")
	f.Int32Var(&attempts, "max-attempts", 0, "attempts of each job (default: the handler's)")
	f.StringToStringVar(&labels, "label", nil, "a `k=v` label of each job (repeatable)")
	return cmd
}

func newScheduleList(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "list the schedules",
		Args:  args(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			svc, err := g.jobs()
			if err != nil {
				return err
			}
			resp, err := svc.ListSchedules(ctx, &courierv1.ListSchedulesRequest{})
			if err != nil {
				return g.callErr(ctx, err)
			}
			if g.format == "json" {
				return g.printJSON(ctx, resp)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tTYPE\tWHEN\tNEXT\tLAST JOB\tSTATE")
			for _, s := range resp.GetSchedules() {
				state := "active"
				if s.GetPaused() {
					state = "paused"
				}
				if s.GetFromConfig() {
					state += " (config)"
				}
				last := s.GetLastJobId()
				if last == "" {
					last = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.GetName(), s.GetPayload().MessageName(), scheduleWhen(s), fmtTime(s.GetNextTime()), last, state)
			}
			return tw.Flush()
		},
	}
}

// scheduleWhen is a schedule's spec in words.
func scheduleWhen(s *courierv1.Schedule) string {
	if s.GetEvery() != nil {
		return "every " + s.GetEvery().AsDuration().String()
	}
	tz := s.GetTimeZone()
	if tz == "" {
		tz = "UTC"
	}
	return fmt.Sprintf("%q %s", s.GetCron(), tz)
}

// newScheduleAction makes pause, resume and delete.
func newScheduleAction(g *globals, verb string) *cobra.Command {
	return &cobra.Command{
		Use:   verb + " NAME",
		Short: verb + " a schedule",
		Args:  args(1, "a schedule name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			svc, err := g.jobs()
			if err != nil {
				return err
			}
			var out *courierv1.Schedule
			switch verb {
			case "pause":
				out, err = svc.PauseSchedule(ctx, &courierv1.PauseScheduleRequest{Name: args[0]})
			case "resume":
				out, err = svc.ResumeSchedule(ctx, &courierv1.ResumeScheduleRequest{Name: args[0]})
			case "delete":
				_, err = svc.DeleteSchedule(ctx, &courierv1.DeleteScheduleRequest{Name: args[0]})
			}
			if err != nil {
				return g.callErr(ctx, err)
			}
			if out == nil {
				fmt.Fprintf(g.stdout, "%s deleted\n", args[0])
				return nil
			}
			if g.format == "json" {
				return g.printJSON(ctx, out)
			}
			fmt.Fprintf(g.stdout, "%s %sd, next %s\n", out.GetName(), verb, fmtTime(out.GetNextTime()))
			return nil
		},
	}
}
