package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

func newEnqueueCommand(g *globals) *cobra.Command {
	var (
		key, orderingKey   string
		wait, whileActive  bool
		labels             map[string]string
		runAfter           time.Duration
		uniqueFor, timeout time.Duration
		maxAttempts        int
	)
	cmd := &cobra.Command{
		Use:   "enqueue TYPE JSON",
		Short: "enqueue a job of message type TYPE (any type the server knows), its payload as JSON",
		Example: `  courier enqueue courier.demo.v1.Echo '{"message":"hi"}'
  courier enqueue courier.demo.v1.Sleep '{"duration":"5s"}' --wait --label team=a --key nightly-42
  courier enqueue courier.demo.v1.Echo '{"message":"hi"}' --key digest-7 --unique-for 1h --ordering-key customer-7
  courier enqueue courier.demo.v1.Sleep '{"duration":"1s"}' --max-attempts 2 --timeout 30s`,
		Args: args(2, `TYPE and JSON, e.g. courier enqueue courier.demo.v1.Echo '{"message":"hi"}'`),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			typeName, body := args[0], args[1]
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
			req := &courierv1.EnqueueJobRequest{Payload: payload, IdempotencyKey: key, Labels: labels,
				UniqueWhileActive: whileActive, MaxAttempts: int32(maxAttempts), OrderingKey: orderingKey}
			if runAfter > 0 {
				req.RunAfter = timestamppb.New(time.Now().Add(runAfter))
			}
			// The server checks these and names what is wrong; flags
			// given as 0 are sent, so that it does.
			if cmd.Flags().Changed("unique-for") {
				req.UniqueFor = durationpb.New(uniqueFor)
			}
			if cmd.Flags().Changed("timeout") {
				req.Timeout = durationpb.New(timeout)
			}
			svc, err := g.jobs()
			if err != nil {
				return err
			}
			resp, err := svc.EnqueueJob(ctx, req)
			if err != nil {
				return g.callErr(ctx, err)
			}
			if !wait {
				if g.format == "json" {
					return g.printJSON(ctx, resp)
				}
				if resp.GetDuplicate() {
					fmt.Fprintf(g.stdout, "%s (duplicate: key %q already enqueued this job)\n", resp.GetJobId(), key)
				} else {
					fmt.Fprintln(g.stdout, resp.GetJobId())
				}
				return nil
			}
			if g.format == "text" && resp.GetDuplicate() {
				fmt.Fprintf(g.stderr, "duplicate: key %q already enqueued job %s; watching it\n", key, resp.GetJobId())
			}
			return watch(ctx, g, resp.GetJobId())
		},
	}
	f := cmd.Flags()
	f.StringVar(&key, "key", "", "idempotency `key`: the same key and type return the first job")
	f.BoolVar(&wait, "wait", false, "wait for the job to end, showing its progress; exit 3 if it fails, 4 if cancelled")
	f.StringToStringVar(&labels, "label", nil, "a `k=v` label (repeatable, or k1=v1,k2=v2)")
	f.DurationVar(&runAfter, "after", 0, "do not run before this `duration` from now, e.g. 5m")
	f.DurationVar(&uniqueFor, "unique-for", 0, "with --key: hold the key only this `duration` after the enqueue")
	f.BoolVar(&whileActive, "unique-while-active", false, "with --key: hold the key only while the job is queued or running")
	f.IntVar(&maxAttempts, "max-attempts", 0, "attempts this job gets, `N` up to its type's (0: the type's)")
	f.DurationVar(&timeout, "timeout", 0, "timeout of each attempt, a `duration` up to its type's (unset: the type's)")
	f.StringVar(&orderingKey, "ordering-key", "", "jobs with one ordering `key` run one at a time, in enqueue order")
	return cmd
}
