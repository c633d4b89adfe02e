package jobstest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/courierq/courier/jobs"
)

// Tests of the optional store interfaces behind the job controls:
// jobs.BatchEnqueuer and jobs.UniqueScopes. A store without one skips its
// tests, saying so.

func batcher(t *testing.T, s jobs.Store) jobs.BatchEnqueuer {
	t.Helper()
	b, ok := s.(jobs.BatchEnqueuer)
	if !ok {
		t.Skipf("%T does not implement jobs.BatchEnqueuer", s)
	}
	return b
}

func queuedCount(ctx context.Context, t *testing.T, s jobs.Store) int {
	t.Helper()
	list, _, err := s.List(ctx, jobs.ListParams{PageSize: 1000})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return len(list)
}

func testEnqueueBatch(ctx context.Context, t *testing.T, s jobs.Store) {
	b := batcher(t, s)
	before := enqueue(ctx, t, s, jobs.Job{Type: "test.v1.Batch", IdempotencyKey: "old"})
	res, err := b.EnqueueBatch(ctx, []jobs.EnqueueParams{
		{Job: jobs.Job{Type: "test.v1.Batch", IdempotencyKey: "k", Payload: []byte("a"), Labels: map[string]string{"n": "0"}}},
		{Job: jobs.Job{Type: "test.v1.Batch", Payload: []byte("b"), OrderingKey: "ok"}},
		{Job: jobs.Job{Type: "test.v1.Batch", IdempotencyKey: "k", Payload: []byte("c")}},
		{Job: jobs.Job{Type: "test.v1.Batch", IdempotencyKey: "old"}},
		{Job: jobs.Job{Type: "test.v1.Other", IdempotencyKey: "k", MaxAttempts: 2, Timeout: time.Second}},
	})
	if err != nil {
		t.Fatalf("EnqueueBatch: %v", err)
	}
	if len(res) != 5 {
		t.Fatalf("EnqueueBatch gave %d results for 5 jobs", len(res))
	}
	for i, want := range []bool{false, false, true, true, false} {
		if res[i].Job == nil || res[i].Duplicate != want {
			t.Fatalf("result %d = %+v, want duplicate %v", i, res[i], want)
		}
	}
	if string(res[0].Job.Payload) != "a" || res[0].Job.Labels["n"] != "0" || string(res[1].Job.Payload) != "b" || res[1].Job.OrderingKey != "ok" {
		t.Fatalf("results out of order or incomplete: %+v %+v", res[0].Job, res[1].Job)
	}
	sameJob(t, "in-batch duplicate", res[2].Job, res[0].Job)
	sameJob(t, "duplicate of an earlier job", res[3].Job, before)
	if j := res[4].Job; j.MaxAttempts != 2 || j.Timeout != time.Second || j.State != jobs.Queued {
		t.Fatalf("jobs[4] = %+v", j)
	}
	for _, r := range res {
		sameJob(t, "Get of a batch job", get(ctx, t, s, r.Job.ID), r.Job)
	}
	if n, _, err := s.OutboxStats(ctx); err != nil || n != 4 {
		t.Fatalf("OutboxStats = %d, %v; want 4 (one per new job)", n, err)
	}
	counts, err := s.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range counts {
		if want := map[string]int{"test.v1.Batch": 3, "test.v1.Other": 1}[c.Type]; c.States[jobs.Queued] != want {
			t.Fatalf("Counts of %s: %d queued, want %d", c.Type, c.States[jobs.Queued], want)
		}
	}

	// All or nothing: an invalid job, a taken ID, too many jobs.
	n := queuedCount(ctx, t, s)
	_, err = b.EnqueueBatch(ctx, []jobs.EnqueueParams{{Job: jobs.Job{Type: "test.v1.Batch"}}, {Job: jobs.Job{}}})
	wantErr(t, "EnqueueBatch with an invalid job", err, jobs.ErrInvalidArgument)
	if !strings.Contains(err.Error(), "jobs[1]") {
		t.Fatalf("EnqueueBatch error %q does not name jobs[1]", err)
	}
	_, err = b.EnqueueBatch(ctx, []jobs.EnqueueParams{{Job: jobs.Job{Type: "test.v1.Batch", IdempotencyKey: "fresh"}}, {Job: jobs.Job{ID: before.ID, Type: "test.v1.Batch"}}})
	wantErr(t, "EnqueueBatch with a taken ID", err, jobs.ErrConflict)
	_, err = b.EnqueueBatch(ctx, []jobs.EnqueueParams{{Job: jobs.Job{ID: "same", Type: "test.v1.Batch"}}, {Job: jobs.Job{ID: "same", Type: "test.v1.Batch"}}})
	wantErr(t, "EnqueueBatch with one ID twice", err, jobs.ErrInvalidArgument)
	big := make([]jobs.EnqueueParams, jobs.MaxEnqueueBatch+1)
	for i := range big {
		big[i] = jobs.EnqueueParams{Job: job("test.v1.Batch")}
	}
	_, err = b.EnqueueBatch(ctx, big)
	wantErr(t, "EnqueueBatch over the limit", err, jobs.ErrInvalidArgument)
	if got := queuedCount(ctx, t, s); got != n {
		t.Fatalf("failed batches recorded jobs: %d jobs, want %d", got, n)
	}
	// The key the failed batch would have taken is still free.
	enqueue(ctx, t, s, jobs.Job{Type: "test.v1.Batch", IdempotencyKey: "fresh"})

	// The largest batch goes in one call.
	full := big[:jobs.MaxEnqueueBatch]
	res, err = b.EnqueueBatch(ctx, full)
	if err != nil || len(res) != len(full) {
		t.Fatalf("EnqueueBatch of %d jobs: %d results, %v", len(full), len(res), err)
	}
}

func scopes(t *testing.T, s jobs.Store) {
	t.Helper()
	if !jobs.SupportsUniqueScopes(s) {
		t.Skipf("%T does not implement jobs.UniqueScopes", s)
	}
}

// testUniqueScopes: how long an idempotency key is held.
func testUniqueScopes(ctx context.Context, t *testing.T, s jobs.Store, clk *Clock) {
	scopes(t, s)
	enq := func(key string, uniqueFor time.Duration, whileActive bool) (*jobs.Job, bool) {
		t.Helper()
		j, dup, err := s.Enqueue(ctx, jobs.EnqueueParams{Job: jobs.Job{Type: "test.v1.Unique", IdempotencyKey: key}, UniqueFor: uniqueFor, UniqueWhileActive: whileActive})
		if err != nil {
			t.Fatalf("Enqueue key %s: %v", key, err)
		}
		return j, dup
	}
	mustDup := func(what string, got *jobs.Job, dup bool, want *jobs.Job) {
		t.Helper()
		if !dup || got.ID != want.ID {
			t.Fatalf("%s: got job %s (duplicate %v), want the holder %s", what, got.ID, dup, want.ID)
		}
	}
	mustNew := func(what string, got *jobs.Job, dup bool, old *jobs.Job) {
		t.Helper()
		if dup || got.ID == old.ID {
			t.Fatalf("%s: got job %s (duplicate %v), want a new job", what, got.ID, dup)
		}
	}

	// A window: held for UniqueFor after the enqueue, whatever the state.
	a, _ := enq("window", time.Minute, false)
	clk.Add(59 * time.Second)
	j, dup := enq("window", time.Minute, false)
	mustDup("within the window", j, dup, a)
	clk.Add(time.Second)
	b, dup := enq("window", time.Minute, false)
	mustNew("once the window ended", b, dup, a)
	j, dup = enq("window", 0, false)
	mustDup("the new holder", j, dup, b)
	if got := get(ctx, t, s, a.ID); got.State != jobs.Queued || got.IdempotencyKey != "window" {
		t.Fatalf("the first holder changed: %+v", got)
	}

	// While active: held while Queued or Running.
	c, _ := enq("active", 0, true)
	if _, err := s.Start(ctx, sp(c.ID, 1)); err != nil {
		t.Fatal(err)
	}
	j, dup = enq("active", 0, true)
	mustDup("while running", j, dup, c)
	if _, err := s.Succeed(ctx, jobs.SucceedParams{ID: c.ID}); err != nil {
		t.Fatal(err)
	}
	d, dup := enq("active", 0, true)
	mustNew("once it ended", d, dup, c)
	if _, err := s.Cancel(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	e, dup := enq("active", 0, false)
	mustNew("once the next one was cancelled", e, dup, d)

	// The default: held for as long as the job is kept, ended or not; the
	// holder's scope decides, not the caller's.
	if _, err := s.Cancel(ctx, e.ID); err != nil {
		t.Fatal(err)
	}
	clk.Add(24 * time.Hour)
	j, dup = enq("active", time.Second, true)
	mustDup("default scope, ended job", j, dup, e)
	clk.Add(time.Hour)
	if _, err := s.DeleteFinished(ctx, clk.Now()); err != nil {
		t.Fatal(err)
	}
	f, dup := enq("active", 0, false)
	mustNew("once the holder was deleted", f, dup, e)

	// Both: the first to end releases the key.
	g, _ := enq("both", time.Hour, true)
	if _, err := s.Cancel(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	h, dup := enq("both", time.Hour, true)
	mustNew("ended within the window", h, dup, g)
	clk.Add(time.Hour)
	i, dup := enq("both", time.Hour, true)
	mustNew("active past the window", i, dup, h)

	// Ensure sees the holder too.
	got, err := s.Ensure(ctx, jobs.EnsureParams{Job: jobs.Job{ID: "ensured", Type: "test.v1.Unique", IdempotencyKey: "both"}})
	if err != nil || got.ID != i.ID {
		t.Fatalf("Ensure with a held key = %v, %v; want the holder %s", got, err, i.ID)
	}

	for what, p := range map[string]jobs.EnqueueParams{
		"negative UniqueFor":        {Job: jobs.Job{Type: "test.v1.Unique", IdempotencyKey: "x"}, UniqueFor: -time.Second},
		"UniqueFor without a key":   {Job: jobs.Job{Type: "test.v1.Unique"}, UniqueFor: time.Second},
		"WhileActive without a key": {Job: jobs.Job{Type: "test.v1.Unique"}, UniqueWhileActive: true},
	} {
		_, _, err := s.Enqueue(ctx, p)
		wantErr(t, fmt.Sprintf("Enqueue with %s", what), err, jobs.ErrInvalidArgument)
	}
}

// testConcurrentBatches: batches that share idempotency keys, in opposite
// orders, all succeed, and each key has one holder.
func testConcurrentBatches(ctx context.Context, t *testing.T, s jobs.Store) {
	b := batcher(t, s)
	const batches, keys = 8, 10
	results := make([][]jobs.EnqueueResult, batches)
	errs := make(chan error, batches)
	for g := range batches {
		go func() {
			ps := make([]jobs.EnqueueParams, keys)
			for i := range ps {
				k := i
				if g%2 == 1 {
					k = keys - 1 - i
				}
				ps[i] = jobs.EnqueueParams{Job: jobs.Job{Type: "test.v1.Batch", IdempotencyKey: fmt.Sprint("k", k)}}
			}
			res, err := b.EnqueueBatch(ctx, ps)
			results[g] = res
			errs <- err
		}()
	}
	for range batches {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent EnqueueBatch: %v", err)
		}
	}
	holders := map[string]string{}
	for _, res := range results {
		for _, r := range res {
			if !r.Duplicate {
				if h, ok := holders[r.Job.IdempotencyKey]; ok {
					t.Fatalf("key %s has two holders: %s and %s", r.Job.IdempotencyKey, h, r.Job.ID)
				}
				holders[r.Job.IdempotencyKey] = r.Job.ID
			}
		}
	}
	for _, res := range results {
		for _, r := range res {
			if holders[r.Job.IdempotencyKey] != r.Job.ID {
				t.Fatalf("key %s: a result names job %s, the holder is %s", r.Job.IdempotencyKey, r.Job.ID, holders[r.Job.IdempotencyKey])
			}
		}
	}
	if len(holders) != keys || queuedCount(ctx, t, s) != keys {
		t.Fatalf("%d holders, %d jobs; want %d of each", len(holders), queuedCount(ctx, t, s), keys)
	}
}
