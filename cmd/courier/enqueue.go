package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	_ "github.com/courierq/courier/proto/courier/demo/v1" // the demo job types
	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

type enqueueCommand struct {
	key      string
	wait     bool
	labels   labelFlag
	runAfter time.Duration
}

func (c *enqueueCommand) Usage() string {
	return "enqueue TYPE JSON   enqueue a job [--key K] [--wait] [--label k=v] [--after 5m]"
}

func (c *enqueueCommand) Flags(fs *flag.FlagSet) {
	fs.StringVar(&c.key, "key", "", "idempotency `key`: the same key and type return the first job")
	fs.BoolVar(&c.wait, "wait", false, "wait for the job to end, showing its progress; exit 3 if it fails")
	fs.Var(&c.labels, "label", "a `k=v` label (repeatable)")
	fs.DurationVar(&c.runAfter, "after", 0, "do not run before this `duration` from now")
}

func (c *enqueueCommand) Run(ctx context.Context, g *globals, args []string) error {
	if len(args) != 2 {
		return errors.New("enqueue takes TYPE and JSON, e.g. courier enqueue courier.demo.v1.Echo '{\"message\":\"hi\"}'")
	}
	typeName, body := args[0], args[1]
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(typeName))
	if err != nil {
		return fmt.Errorf("unknown message type %q: this CLI knows the types compiled into it (courier.demo.v1.Echo, courier.demo.v1.Sleep, ...)", typeName)
	}
	msg := mt.New().Interface()
	if err := protojson.Unmarshal([]byte(body), msg); err != nil {
		return fmt.Errorf("JSON is not a valid %s: %v", typeName, err)
	}
	payload, err := anypb.New(msg)
	if err != nil {
		return err
	}
	req := &courierv1.EnqueueJobRequest{Payload: payload, IdempotencyKey: c.key, Labels: c.labels.m}
	if c.runAfter > 0 {
		req.RunAfter = timestamppb.New(time.Now().Add(c.runAfter))
	}
	svc, err := g.jobs()
	if err != nil {
		return err
	}
	defer g.close()
	resp, err := svc.EnqueueJob(ctx, req)
	if err != nil {
		return g.callErr(ctx, err)
	}
	if !c.wait {
		if g.output == "json" {
			return g.printJSON(resp)
		}
		if resp.GetDuplicate() {
			fmt.Fprintf(g.stdout, "%s (duplicate: key %q already enqueued this job)\n", resp.GetJobId(), c.key)
		} else {
			fmt.Fprintln(g.stdout, resp.GetJobId())
		}
		return nil
	}
	if g.output == "text" && resp.GetDuplicate() {
		fmt.Fprintf(g.stderr, "duplicate: key %q already enqueued job %s; watching it\n", c.key, resp.GetJobId())
	}
	return watch(ctx, g, resp.GetJobId())
}

// labelFlag collects k=v flags.
type labelFlag struct{ m map[string]string }

func (l *labelFlag) String() string { return fmt.Sprint(l.m) }

func (l *labelFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("label %q is not k=v", s)
	}
	if l.m == nil {
		l.m = map[string]string{}
	}
	l.m[k] = v
	return nil
}
