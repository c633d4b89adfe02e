package jobstest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/courierq/courier/jobs"
)

// testDefer checks jobs.Deferrer, for stores that implement it: a QUEUED
// job with no outbox entry gets one due when asked (claimable only then);
// a job with an entry, with an ordering key, or not QUEUED is refused with
// ErrConflict, changing nothing.
func testDefer(ctx context.Context, t *testing.T, s jobs.Store, clk *Clock) {
	df, ok := s.(jobs.Deferrer)
	if !ok {
		t.Skip("the store does not implement jobs.Deferrer (optional)")
	}
	j, _, err := s.Enqueue(ctx, jobs.EnqueueParams{Job: jobs.Job{Type: "t.v1.Defer"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := df.Defer(ctx, j.ID, clk.Now().Add(time.Minute)); !errors.Is(err, jobs.ErrConflict) {
		t.Fatalf("Defer of a job whose outbox entry is still there: %v; want ErrConflict", err)
	}
	if es, err := s.ClaimOutbox(ctx, jobs.ClaimOutboxParams{Limit: 10, Owner: "r", LeaseFor: time.Minute}); err != nil || len(es) != 1 {
		t.Fatalf("ClaimOutbox: %d entries, %v", len(es), err)
	}
	if err := s.MarkSent(ctx, []string{j.ID}); err != nil {
		t.Fatal(err)
	}
	due := clk.Now().Add(time.Minute)
	if err := df.Defer(ctx, j.ID, due); err != nil {
		t.Fatalf("Defer of a QUEUED job with no outbox entry: %v", err)
	}
	if es, err := s.ClaimOutbox(ctx, jobs.ClaimOutboxParams{Limit: 10, Owner: "r", LeaseFor: time.Minute}); err != nil || len(es) != 0 {
		t.Fatalf("ClaimOutbox before the deferred entry is due: %d entries, %v; want none", len(es), err)
	}
	clk.Add(time.Minute)
	es, err := s.ClaimOutbox(ctx, jobs.ClaimOutboxParams{Limit: 10, Owner: "r", LeaseFor: time.Minute})
	if err != nil || len(es) != 1 || es[0].JobID != j.ID || !es[0].Due.Equal(due.UTC().Truncate(time.Microsecond)) {
		t.Fatalf("ClaimOutbox once due: %+v, %v; want the job's entry, due %v", es, err, due)
	}
	if err := s.MarkSent(ctx, []string{j.ID}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, j.ID); err != nil || got.State != jobs.Queued || got.Attempt != 0 {
		t.Fatalf("the deferred job: %+v, %v; want it QUEUED, attempt 0", got, err)
	}

	ordered, _, err := s.Enqueue(ctx, jobs.EnqueueParams{Job: jobs.Job{Type: "t.v1.Defer", OrderingKey: "k"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.MarkSent(ctx, []string{ordered.ID}); err != nil {
		t.Fatal(err)
	}
	if err := df.Defer(ctx, ordered.ID, due); !errors.Is(err, jobs.ErrConflict) {
		t.Fatalf("Defer of a job with an ordering key: %v; want ErrConflict", err)
	}
	if _, err := s.Cancel(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	if err := df.Defer(ctx, j.ID, due); !errors.Is(err, jobs.ErrConflict) {
		t.Fatalf("Defer of a cancelled job: %v; want ErrConflict", err)
	}
	if err := df.Defer(ctx, "no-such-job", due); !errors.Is(err, jobs.ErrConflict) {
		t.Fatalf("Defer of an unknown job: %v; want ErrConflict", err)
	}
	if n, _, err := s.OutboxStats(ctx); err != nil || n != 0 {
		t.Fatalf("OutboxStats after refused Defers: %d, %v; want 0", n, err)
	}
}
