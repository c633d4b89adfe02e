package ingest_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/ingest"
	"github.com/courierq/courier/internal/testenv"
	"github.com/courierq/courier/jobs"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
	"github.com/courierq/courier/publisher"
)

// TestDuplicateDeliveryDoesNotRunConcurrently: a second message of a job
// that runs waits (the run's lease holds, or, for a quick run not recorded
// yet, this worker knows it runs), not run beside it; the job runs once.
func TestDuplicateDeliveryDoesNotRunConcurrently(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind testenv.StoreKind) {
		var runs atomic.Int32
		started, release := make(chan struct{}, 2), make(chan struct{})
		reg := handlers.NewRegistry()
		handlers.Register(reg, func(ctx context.Context, job *handlers.Job[*demov1.Sleep]) (*demov1.SleepResult, error) {
			runs.Add(1)
			started <- struct{}{}
			<-release
			return &demov1.SleepResult{}, nil
		}, fastRetry)
		s := newStack(t, kind, reg, ingest.Config{})
		ctx := testCtx(t)
		const id = "duplicated-job"
		if _, err := s.pub.Publish(ctx, &demov1.Sleep{Duration: durationpb.New(time.Second)}, publisher.WithID(id)); err != nil {
			t.Fatal(err)
		}
		<-started
		if _, err := s.pub.Publish(ctx, &demov1.Sleep{Duration: durationpb.New(time.Second)}, publisher.WithID(id)); err != nil {
			t.Fatal(err)
		}
		s.logs.await(ctx, 1, "waiting for that run to end", id)
		if n := runs.Load(); n != 1 {
			t.Fatalf("the handler ran %d times while the first run holds the lease; want 1", n)
		}
		close(release)
		job := waitState(ctx, t, s.store, id, jobs.Succeeded)
		if job.State != jobs.Succeeded || job.Attempt != 1 || job.Lease != "" {
			t.Fatalf("job %+v; want SUCCEEDED on attempt 1, lease cleared", job)
		}
		if n := runs.Load(); n != 1 {
			t.Fatalf("the handler ran %d times; want 1", n)
		}
	})
}

// TestLostLeaseStopsTheHandler: when the run's lease is gone (here another
// worker took the job over), the next heartbeat stops the handler, and its
// outcome is not recorded over the other run's.
func TestLostLeaseStopsTheHandler(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind testenv.StoreKind) {
		started, stopped := make(chan struct{}, 1), make(chan error, 1)
		reg := handlers.NewRegistry()
		handlers.Register(reg, func(ctx context.Context, job *handlers.Job[*demov1.Sleep]) (*demov1.SleepResult, error) {
			started <- struct{}{}
			<-ctx.Done()
			stopped <- context.Cause(ctx)
			return nil, ctx.Err()
		}, fastRetry)
		s := newStack(t, kind, reg, ingest.Config{Lease: 1500 * time.Millisecond})
		ctx := testCtx(t)
		id, err := s.pub.Publish(ctx, &demov1.Sleep{Duration: durationpb.New(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		<-started
		// The run is recorded RUNNING under its lease (a quick run once it
		// outlives RunningAfter).
		if j := waitState(ctx, t, s.store, id, jobs.Running); j.State != jobs.Running {
			t.Fatalf("job %+v; want RUNNING", j)
		}
		// Another worker's run: the job went back to Queued and was started
		// under a new lease.
		if _, err := s.store.Fail(ctx, jobs.FailParams{ID: id, Code: 14, Message: "taken over", Retry: true}); err != nil {
			t.Fatal(err)
		}
		other, err := s.store.Start(ctx, jobs.StartParams{ID: id, Attempt: 1, Lease: "other-worker", LeaseFor: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case cause := <-stopped:
			if !strings.Contains(cause.Error(), "lease is gone") {
				t.Fatalf("handler ctx cause %v, want the lost lease", cause)
			}
		case <-ctx.Done():
			t.Fatal("the lost lease did not stop the handler")
		}
		s.logs.await(ctx, 1, "lease is gone", id)
		if job, err := s.store.Get(ctx, id); err != nil || job.State != jobs.Running || job.Lease != "other-worker" || job.Attempt != other.Attempt {
			t.Fatalf("job %+v, %v; want it still RUNNING under the other worker's lease", job, err)
		}
	})
}
