package ingest_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/ingest"
	"github.com/courierq/courier/internal/testenv"
	"github.com/courierq/courier/jobs"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
)

// TestSnoozeWaitsInTheStore: a handler's Snooze puts the job back to
// QUEUED with run_after and an outbox entry due then, gives the attempt
// back and acks; a later copy of its message, delivered before run_after,
// is acked without running; on each store.
func TestSnoozeWaitsInTheStore(t *testing.T) {
	eachStore(t, func(t *testing.T, kind testenv.StoreKind) {
		if _, ok := testenv.Store(t, kind).(jobs.Snoozer); !ok {
			t.Skipf("the %s store keeps no snoozed jobs (it is no jobs.Snoozer): a snooze is an ordinary retry there", kind)
		}
		var runs atomic.Int32
		reg := handlers.NewRegistry()
		handlers.Register(reg, func(ctx context.Context, job *handlers.Job[*demov1.Echo]) (*demov1.EchoResult, error) {
			runs.Add(1)
			return nil, handlers.Snooze(time.Hour)
		}, fastRetry)
		s := newStack(t, kind, reg, ingest.Config{})
		ctx := testCtx(t)
		before := time.Now()
		id, err := s.pub.Publish(ctx, &demov1.Echo{Message: "later"})
		if err != nil {
			t.Fatal(err)
		}
		s.logs.await(ctx, 1, "job waits in the store", id)
		j, err := s.store.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if j.State != jobs.Queued || j.Attempt != 0 || j.RunAfter.Before(before.Add(time.Hour)) || j.Lease != "" {
			t.Fatalf("snoozed job: %+v; want QUEUED, attempt 0, run_after an hour on", j)
		}
		if n, _, err := s.store.OutboxStats(ctx); err != nil || n != 1 {
			t.Fatalf("outbox after a snooze: %d entries, %v; want the job's", n, err)
		}
		// A copy of the message before run_after: acked, not run.
		if _, err := s.pub.PublishSync(ctx, &demov1.Echo{Message: "later"}, withID(id)); err != nil {
			t.Fatal(err)
		}
		s.logs.await(ctx, 1, "waits until its run_after", id)
		if n := runs.Load(); n != 1 {
			t.Fatalf("handler ran %d times, want 1", n)
		}
	})
}
