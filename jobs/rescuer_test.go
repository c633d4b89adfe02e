package jobs_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/courierq/courier/jobs"
)

// TestRescuerPass: a job published (outbox entry gone) and never delivered
// is rescued once it has been quiet for After, not before; one that a worker
// holds (MarkSeen) is left alone.
func TestRescuerPass(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := t0
	s := openStore(t, func() time.Time { return clock })
	var ids []string
	for range 2 {
		j, _, err := s.Enqueue(ctx, jobs.EnqueueParams{Job: jobs.Job{Type: "test.v1.Rescue"}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	if _, err := s.ClaimOutbox(ctx, jobs.ClaimOutboxParams{Limit: 10, Owner: "relay", LeaseFor: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkSent(ctx, ids); err != nil { // published: the outbox is empty
		t.Fatal(err)
	}
	rescuerNow := t0
	r, err := jobs.NewRescuer(jobs.RescuerConfig{Store: s, After: time.Minute, Now: func() time.Time { return rescuerNow }})
	if err != nil {
		t.Fatal(err)
	}
	clock = t0.Add(50 * time.Second)
	if err := s.MarkSeen(ctx, ids[1:]); err != nil { // a worker holds the second
		t.Fatal(err)
	}
	rescuerNow = t0.Add(59 * time.Second)
	if res, err := r.Pass(ctx); err != nil || len(res.Requeued)+len(res.Released) != 0 {
		t.Fatalf("Pass after 59s = %+v, %v; want nothing rescued yet", res, err)
	}
	rescuerNow = t0.Add(61 * time.Second)
	clock = rescuerNow
	res, err := r.Pass(ctx)
	if err != nil || !slices.Equal(res.Requeued, ids[:1]) || len(res.Released) != 0 {
		t.Fatalf("Pass after 61s = %+v, %v; want only %s requeued (the other was seen at 50s)", res, err, ids[0])
	}
	if n, _, err := s.OutboxStats(ctx); err != nil || n != 1 {
		t.Fatalf("outbox after the rescue: %d entries, %v; want the rescued job's", n, err)
	}
	if _, err := jobs.NewRescuer(jobs.RescuerConfig{Store: s, After: -time.Second}); err == nil {
		t.Fatal("NewRescuer with a negative After: no error")
	}
}
