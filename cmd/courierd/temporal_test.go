package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/courierq/courier"
	"github.com/courierq/courier/client"
	"github.com/courierq/courier/internal/testenv"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

func jobClient(t *testing.T, st *courier.Node) courierv1.JobServiceClient {
	t.Helper()
	conn, err := client.Dial(st.GRPCAddr(), client.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return courierv1.NewJobServiceClient(conn)
}

// TestBisectWithoutTemporal: the embedded demo refuses workflow job types
// with FailedPrecondition saying how to start Temporal, and records nothing.
func TestBisectWithoutTemporal(t *testing.T) {
	st := startCourierd(t, demoConfig(t))
	jc := jobClient(t, st)
	payload, _ := anypb.New(&demov1.Bisect{Good: 0, Bad: 100, Culprit: 42})
	_, err := jc.EnqueueJob(context.Background(), &courierv1.EnqueueJobRequest{Payload: payload})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "make run-temporal") {
		t.Fatalf("Bisect without Temporal: %v; want FailedPrecondition naming make run-temporal", err)
	}
	resp, err := jc.ListJobs(context.Background(), &courierv1.ListJobsRequest{})
	if err != nil || len(resp.Jobs) != 0 {
		t.Fatalf("jobs recorded after a refused enqueue: %v %v", resp, err)
	}
}

// TestBisectOnTemporal runs the demo workflow job type through courierd
// configured with a real Temporal dev server, and its enqueue limit.
func TestBisectOnTemporal(t *testing.T) {
	srv := testenv.Temporal(t)
	body := demoConfig(t) + fmt.Sprintf("temporal: {hostPort: %q, namespace: %q, taskQueue: courierd-test}\n", srv.HostPort, srv.Namespace)
	body = strings.Replace(body, "  types:\n", "  types:\n    courier.demo.v1.Bisect: {enqueueRatePerSecond: 0.001, enqueueBurst: 1}\n", 1)
	st := startCourierd(t, body)
	jc := jobClient(t, st)
	payload, _ := anypb.New(&demov1.Bisect{Good: 0, Bad: 16, Culprit: 11})
	resp, err := jc.EnqueueJob(context.Background(), &courierv1.EnqueueJobRequest{Payload: payload})
	if err != nil {
		t.Fatal(err)
	}
	// Over the enqueue limit: ResourceExhausted with a retry delay, nothing recorded.
	_, err = jc.EnqueueJob(context.Background(), &courierv1.EnqueueJobRequest{Payload: payload})
	st2 := status.Convert(err)
	var retry *errdetails.RetryInfo
	for _, d := range st2.Details() {
		if r, ok := d.(*errdetails.RetryInfo); ok {
			retry = r
		}
	}
	if st2.Code() != codes.ResourceExhausted || retry == nil || retry.RetryDelay.AsDuration() <= 0 {
		t.Fatalf("second Bisect over the enqueue limit: %v (retry info %v)", err, retry)
	}

	j, seen := watchUntilDone(t, jc, resp.JobId)
	var res demov1.BisectResult
	if j.State != courierv1.State_SUCCEEDED || j.Result.UnmarshalTo(&res) != nil || res.Culprit != 11 {
		t.Fatalf("Bisect: %v", j)
	}
	mid := false
	for _, s := range seen {
		if f := s.GetProgress().GetFraction(); f > 0 && f < 1 {
			mid = true
		}
	}
	if !mid {
		t.Errorf("no intermediate progress seen in %d updates", len(seen))
	}
	list, err := jc.ListJobs(context.Background(), &courierv1.ListJobsRequest{Type: "courier.demo.v1.Bisect"})
	if err != nil || len(list.Jobs) != 1 {
		t.Fatalf("Bisect jobs recorded: %v %v; want only the admitted one", list, err)
	}
}
