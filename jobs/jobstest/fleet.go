package jobstest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/courierq/courier/jobs"
)

// The tests of fleet semantics: new job fields, run leases, outbox claims,
// counters, rescue and bounds. Each runs on a store whose clock it sets.

func start(ctx context.Context, t *testing.T, s jobs.Store, p jobs.StartParams) *jobs.Job {
	t.Helper()
	j, err := s.Start(ctx, p)
	if err != nil {
		t.Fatalf("Start(%+v): %v", p, err)
	}
	return j
}

func claim(ctx context.Context, t *testing.T, s jobs.Store, owner string, limit int, leaseFor time.Duration) []string {
	t.Helper()
	es, err := s.ClaimOutbox(ctx, jobs.ClaimOutboxParams{Limit: limit, Owner: owner, LeaseFor: leaseFor})
	if err != nil {
		t.Fatalf("ClaimOutbox(%s, %d): %v", owner, limit, err)
	}
	return entryIDs(es)
}

func entryIDs(es []jobs.OutboxEntry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.JobID
	}
	return out
}

func wantIDs(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

func testNewFields(ctx context.Context, t *testing.T, s jobs.Store, clk *Clock) {
	in := jobs.Job{
		ID:          "nf-1",
		Type:        "test.v1.New",
		TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		TraceState:  "congo=t61rcWkgMzE",
		OrderingKey: "customer-7",
		Timeout:     90*time.Second + 1500*time.Nanosecond,
	}
	j := enqueue(ctx, t, s, in)
	if j.TraceParent != in.TraceParent || j.TraceState != in.TraceState || j.OrderingKey != in.OrderingKey ||
		j.Timeout != 90*time.Second+time.Microsecond || j.Lease != "" || !j.LeaseExpiry.IsZero() {
		t.Fatalf("Enqueue returned %+v for %+v (Timeout kept in whole microseconds, no lease)", j, in)
	}
	sameJob(t, "Get after Enqueue", get(ctx, t, s, j.ID), j)
	in.ID = "nf-2"
	e, err := s.Ensure(ctx, jobs.EnsureParams{Job: in})
	if err != nil {
		t.Fatal(err)
	}
	if e.TraceParent != in.TraceParent || e.TraceState != in.TraceState || e.OrderingKey != in.OrderingKey || e.Timeout != j.Timeout {
		t.Fatalf("Ensure returned %+v for %+v", e, in)
	}
	sameJob(t, "Get after Ensure", get(ctx, t, s, e.ID), e)

	es, err := s.ClaimOutbox(ctx, jobs.ClaimOutboxParams{Limit: 10, Owner: "r", LeaseFor: time.Minute})
	if err != nil || len(es) != 1 {
		t.Fatalf("ClaimOutbox = %+v, %v; want the Enqueued job's entry", es, err)
	}
	if o := es[0]; o.JobID != j.ID || o.TraceParent != in.TraceParent || o.TraceState != in.TraceState ||
		o.OrderingKey != in.OrderingKey || !o.Due.Equal(clk.Now()) || !o.Created.Equal(clk.Now()) {
		t.Fatalf("outbox entry %+v: want the job's trace context and ordering key, due and created at %v", o, clk.Now())
	}

	r := start(ctx, t, s, jobs.StartParams{ID: j.ID, Attempt: 1, Lease: "L", LeaseFor: 45 * time.Second})
	if r.Lease != "L" || !r.LeaseExpiry.Equal(clk.Now().Add(45*time.Second)) {
		t.Fatalf("after Start: Lease %q, LeaseExpiry %v; want L, %v", r.Lease, r.LeaseExpiry, clk.Now().Add(45*time.Second))
	}
	sameJob(t, "Get after Start", get(ctx, t, s, j.ID), r)
	done, err := s.Succeed(ctx, jobs.SucceedParams{ID: j.ID, Lease: "L"})
	if err != nil {
		t.Fatal(err)
	}
	if done.Lease != "" || !done.LeaseExpiry.IsZero() || done.TraceParent != in.TraceParent {
		t.Fatalf("after Succeed: %+v; want the lease cleared and the trace context kept", done)
	}
	_, _, err = s.Enqueue(ctx, jobs.EnqueueParams{Job: jobs.Job{Type: "test.v1.New", Timeout: -time.Second}})
	wantErr(t, "Enqueue with a negative Timeout", err, jobs.ErrInvalidArgument)
}

func testStartLeases(ctx context.Context, t *testing.T, s jobs.Store, clk *Clock) {
	j := enqueue(ctx, t, s, job("test.v1.Lease"))
	a := start(ctx, t, s, jobs.StartParams{ID: j.ID, Attempt: 1, Lease: "a", LeaseFor: time.Minute})
	if a.State != jobs.Running || a.Attempt != 1 || a.Lease != "a" || !a.LeaseExpiry.Equal(clk.Now().Add(time.Minute)) {
		t.Fatalf("after Start: %+v", a)
	}
	// A duplicate delivery while a runs: refused with ErrLeased, not
	// ErrConflict, and the job as it is.
	clk.Add(10 * time.Second)
	got, err := s.Start(ctx, jobs.StartParams{ID: j.ID, Attempt: 2, Lease: "b", LeaseFor: time.Minute})
	wantErr(t, "Start under another live lease", err, jobs.ErrLeased)
	if errors.Is(err, jobs.ErrConflict) {
		t.Fatalf("Start under another live lease: %v wraps ErrConflict; it must not", err)
	}
	sameJob(t, "Start under another live lease returns the job", got, a)
	sameJob(t, "job after a refused Start", get(ctx, t, s, j.ID), a)
	// The same lease again (a repeated call): the job, unchanged, no event.
	for _, attempt := range []int{1, 5} {
		again, err := s.Start(ctx, jobs.StartParams{ID: j.ID, Attempt: attempt, Lease: "a", LeaseFor: time.Hour})
		if err != nil {
			t.Fatalf("Start repeated under its own lease (attempt %d): %v", attempt, err)
		}
		sameJob(t, "repeated Start", again, a)
	}
	wantEvents(ctx, t, s, a, []jobs.Event{{State: jobs.Queued}, {State: jobs.Running, Attempt: 1}})
	// A terminal job: ErrConflict, not ErrLeased.
	if _, err := s.Succeed(ctx, jobs.SucceedParams{ID: j.ID, Lease: "a"}); err != nil {
		t.Fatal(err)
	}
	_, err = s.Start(ctx, jobs.StartParams{ID: j.ID, Attempt: 2, Lease: "c", LeaseFor: time.Minute})
	wantErr(t, "Start of a succeeded job", err, jobs.ErrConflict)
	if errors.Is(err, jobs.ErrLeased) {
		t.Fatalf("Start of a succeeded job: %v wraps ErrLeased", err)
	}
	// The attempt is max(Attempt, stored + 1).
	q := enqueue(ctx, t, s, job("test.v1.Lease"))
	if r := start(ctx, t, s, jobs.StartParams{ID: q.ID, Attempt: 4, Lease: "x", LeaseFor: time.Minute}); r.Attempt != 4 {
		t.Fatalf("Start with Attempt 4 of a new job: attempt %d, want 4", r.Attempt)
	}
	if _, err := s.Fail(ctx, jobs.FailParams{ID: q.ID, Code: 14, Message: "again", Retry: true, Lease: "x"}); err != nil {
		t.Fatal(err)
	}
	if r := start(ctx, t, s, jobs.StartParams{ID: q.ID, Attempt: 2, Lease: "y", LeaseFor: time.Minute}); r.Attempt != 5 {
		t.Fatalf("Start with Attempt 2 after attempt 4: attempt %d, want 5", r.Attempt)
	}
}

func testTakeover(ctx context.Context, t *testing.T, s jobs.Store, clk *Clock) {
	j := enqueue(ctx, t, s, job("test.v1.Takeover"))
	a := start(ctx, t, s, jobs.StartParams{ID: j.ID, Attempt: 1, Lease: "a", LeaseFor: 30 * time.Second})
	clk.Add(29 * time.Second)
	_, err := s.Start(ctx, jobs.StartParams{ID: j.ID, Attempt: 1, Lease: "b", LeaseFor: 30 * time.Second})
	wantErr(t, "Start 1s before the lease lapses", err, jobs.ErrLeased)
	// At the lease's expiry the job can be taken over: a new attempt.
	now := clk.Add(time.Second)
	b, err := s.Start(ctx, jobs.StartParams{ID: j.ID, Attempt: 1, Lease: "b", LeaseFor: 30 * time.Second})
	if err != nil {
		t.Fatalf("Start once the lease lapsed: %v", err)
	}
	if b.State != jobs.Running || b.Attempt != 2 || b.Lease != "b" || !b.LeaseExpiry.Equal(now.Add(30*time.Second)) ||
		!b.StartTime.Equal(a.StartTime) || !b.UpdateTime.Equal(now) {
		t.Fatalf("after the takeover: %+v; want RUNNING, attempt 2, lease b until %v, the first StartTime", b, now.Add(30*time.Second))
	}
	wantEvents(ctx, t, s, b, []jobs.Event{{State: jobs.Queued}, {State: jobs.Running, Attempt: 1}, {State: jobs.Running, Attempt: 2}})
	// The first worker comes back: its changes are refused.
	if err := s.Progress(ctx, jobs.ProgressParams{ID: j.ID, Fraction: 0.5, Lease: "a"}); !errors.Is(err, jobs.ErrConflict) {
		t.Fatalf("Progress under the lost lease: %v, want ErrConflict", err)
	}
	_, err = s.Succeed(ctx, jobs.SucceedParams{ID: j.ID, Lease: "a"})
	wantErr(t, "Succeed under the lost lease", err, jobs.ErrConflict)
	_, err = s.Fail(ctx, jobs.FailParams{ID: j.ID, Code: 2, Message: "x", Retry: true, Lease: "a"})
	wantErr(t, "Fail under the lost lease", err, jobs.ErrConflict)
	_, err = s.Start(ctx, jobs.StartParams{ID: j.ID, Attempt: 1, Lease: "a", LeaseFor: time.Minute})
	wantErr(t, "Start under the lost lease", err, jobs.ErrLeased)
	sameJob(t, "job after the lost lease's changes", get(ctx, t, s, j.ID), b)
	if _, err := s.Succeed(ctx, jobs.SucceedParams{ID: j.ID, Lease: "b"}); err != nil {
		t.Fatalf("Succeed under the new lease: %v", err)
	}
}

// testConcurrentStarts races Starts with different leases on each job: one
// applies, the others get ErrLeased.
func testConcurrentStarts(ctx context.Context, t *testing.T, s jobs.Store, clk *Clock) {
	const jobsN, racers = 20, 6
	ids := make([]string, jobsN)
	for i := range ids {
		ids[i] = enqueue(ctx, t, s, job("test.v1.Race")).ID
	}
	errs := make([][racers]error, jobsN)
	var wg sync.WaitGroup
	for i, id := range ids {
		for r := range racers {
			wg.Go(func() {
				_, errs[i][r] = s.Start(ctx, jobs.StartParams{ID: id, Attempt: 1, Lease: fmt.Sprint("lease-", r), LeaseFor: time.Minute})
			})
		}
	}
	wg.Wait()
	for i, id := range ids {
		winner := -1
		for r, err := range errs[i] {
			switch {
			case err == nil && winner < 0:
				winner = r
			case err == nil:
				t.Fatalf("job %s: Starts under leases %d and %d both applied", id, winner, r)
			case !errors.Is(err, jobs.ErrLeased):
				t.Fatalf("job %s: losing Start: %v, want ErrLeased", id, err)
			}
		}
		if winner < 0 {
			t.Fatalf("job %s: no Start applied", id)
		}
		j := get(ctx, t, s, id)
		if j.Lease != fmt.Sprint("lease-", winner) || j.Attempt != 1 {
			t.Fatalf("job %s: lease %q attempt %d, want the winner's (lease-%d) and 1", id, j.Lease, j.Attempt, winner)
		}
		wantEvents(ctx, t, s, j, []jobs.Event{{State: jobs.Queued}, {State: jobs.Running, Attempt: 1}})
	}
}

func testEndsUnderLease(ctx context.Context, t *testing.T, s jobs.Store, clk *Clock) {
	j := enqueue(ctx, t, s, job("test.v1.Ends"))
	start(ctx, t, s, jobs.StartParams{ID: j.ID, Attempt: 1, Lease: "a", LeaseFor: time.Minute})
	if err := s.Progress(ctx, jobs.ProgressParams{ID: j.ID, Fraction: 0.1, Lease: "x"}); !errors.Is(err, jobs.ErrConflict) {
		t.Fatalf("Progress under another lease: %v, want ErrConflict", err)
	}
	for _, lease := range []string{"a", ""} {
		if err := s.Progress(ctx, jobs.ProgressParams{ID: j.ID, Fraction: 0.2, Lease: lease}); err != nil {
			t.Fatalf("Progress with lease %q: %v", lease, err)
		}
	}
	_, err := s.Fail(ctx, jobs.FailParams{ID: j.ID, Code: 14, Message: "x", Retry: true, Lease: "x"})
	wantErr(t, "Fail(Retry) under another lease", err, jobs.ErrConflict)
	r, err := s.Fail(ctx, jobs.FailParams{ID: j.ID, Code: 14, Message: "again", Retry: true, Lease: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if r.State != jobs.Queued || r.Lease != "" || !r.LeaseExpiry.IsZero() || r.Attempt != 1 {
		t.Fatalf("after Fail(Retry): %+v; want QUEUED, lease cleared, attempt 1", r)
	}
	start(ctx, t, s, jobs.StartParams{ID: j.ID, Attempt: 2, Lease: "b", LeaseFor: time.Minute})
	_, err = s.Succeed(ctx, jobs.SucceedParams{ID: j.ID, Lease: "a"})
	wantErr(t, "Succeed under the previous attempt's lease", err, jobs.ErrConflict)
	done, err := s.Succeed(ctx, jobs.SucceedParams{ID: j.ID}) // no lease: an admin path
	if err != nil || done.Lease != "" || !done.LeaseExpiry.IsZero() {
		t.Fatalf("Succeed with no lease = %+v, %v; want the lease cleared", done, err)
	}

	f := enqueue(ctx, t, s, job("test.v1.Ends"))
	start(ctx, t, s, jobs.StartParams{ID: f.ID, Attempt: 1, Lease: "c", LeaseFor: time.Minute})
	failed, err := s.Fail(ctx, jobs.FailParams{ID: f.ID, Code: 3, Message: "bad", Lease: "c"})
	if err != nil || failed.State != jobs.Failed || failed.Lease != "" || !failed.LeaseExpiry.IsZero() {
		t.Fatalf("Fail(final) under its lease = %+v, %v", failed, err)
	}
	c := enqueue(ctx, t, s, job("test.v1.Ends"))
	start(ctx, t, s, jobs.StartParams{ID: c.ID, Attempt: 1, Lease: "d", LeaseFor: time.Minute})
	cancelled, err := s.Cancel(ctx, c.ID)
	if err != nil || cancelled.Lease != "" || !cancelled.LeaseExpiry.IsZero() {
		t.Fatalf("Cancel of a running job = %+v, %v; want the lease cleared", cancelled, err)
	}
	// A Queued job fails with no lease; with a lease it is refused.
	q := enqueue(ctx, t, s, job("test.v1.Ends"))
	_, err = s.Fail(ctx, jobs.FailParams{ID: q.ID, Code: 3, Message: "x", Lease: "e"})
	wantErr(t, "Fail of a queued job under a lease", err, jobs.ErrConflict)
	if _, err := s.Fail(ctx, jobs.FailParams{ID: q.ID, Code: 3, Message: "undecodable"}); err != nil {
		t.Fatalf("Fail of a queued job with no lease: %v", err)
	}
}

func testHeartbeat(ctx context.Context, t *testing.T, s jobs.Store, clk *Clock) {
	run := func(lease string) *jobs.Job {
		j := enqueue(ctx, t, s, job("test.v1.Beat"))
		return start(ctx, t, s, jobs.StartParams{ID: j.ID, Attempt: 1, Lease: lease, LeaseFor: time.Minute})
	}
	r1, r2 := run("l1"), run("l2")
	done := run("l3")
	if _, err := s.Succeed(ctx, jobs.SucceedParams{ID: done.ID, Lease: "l3"}); err != nil {
		t.Fatal(err)
	}
	c := run("l4")
	if _, err := s.Cancel(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	now := clk.Add(30 * time.Second)
	lost, err := s.Heartbeat(ctx, jobs.HeartbeatParams{LeaseFor: 2 * time.Minute, Leases: []jobs.LeaseRef{
		{ID: r1.ID, Lease: "l1"}, {ID: r2.ID, Lease: "wrong"}, {ID: done.ID, Lease: "l3"}, {ID: c.ID, Lease: "l4"}, {ID: "missing", Lease: "l5"},
	}})
	if err != nil {
		t.Fatalf("Heartbeat: %v", err)
	}
	wantIDs(t, "Heartbeat's lost leases", lost, []string{r2.ID, done.ID, c.ID, "missing"})
	got := get(ctx, t, s, r1.ID)
	if !got.LeaseExpiry.Equal(now.Add(2*time.Minute)) || !got.UpdateTime.Equal(r1.UpdateTime) {
		t.Fatalf("after Heartbeat: LeaseExpiry %v UpdateTime %v; want %v and unchanged %v", got.LeaseExpiry, got.UpdateTime, now.Add(2*time.Minute), r1.UpdateTime)
	}
	wantEvents(ctx, t, s, got, []jobs.Event{{State: jobs.Queued}, {State: jobs.Running, Attempt: 1}})
	sameJob(t, "job whose lease was not named", get(ctx, t, s, r2.ID), r2)
	if lost, err := s.Heartbeat(ctx, jobs.HeartbeatParams{LeaseFor: time.Minute}); err != nil || len(lost) != 0 {
		t.Fatalf("Heartbeat of no leases = %v, %v", lost, err)
	}
	// r2's lease lapses without a heartbeat and another worker takes it over:
	// its old worker learns from its next heartbeat. r1's, extended, holds.
	clk.Add(time.Minute)
	start(ctx, t, s, jobs.StartParams{ID: r2.ID, Attempt: 1, Lease: "l6", LeaseFor: time.Minute})
	_, err = s.Start(ctx, jobs.StartParams{ID: r1.ID, Attempt: 1, Lease: "l7", LeaseFor: time.Minute})
	wantErr(t, "Start of a job whose lease a heartbeat extended", err, jobs.ErrLeased)
	lost, err = s.Heartbeat(ctx, jobs.HeartbeatParams{LeaseFor: time.Minute, Leases: []jobs.LeaseRef{{ID: r1.ID, Lease: "l1"}, {ID: r2.ID, Lease: "l2"}}})
	if err != nil {
		t.Fatal(err)
	}
	wantIDs(t, "Heartbeat after a takeover", lost, []string{r2.ID})
}

func testLeaseBadInput(ctx context.Context, t *testing.T, s jobs.Store, clk *Clock) {
	j := enqueue(ctx, t, s, job("test.v1.Bad"))
	for name, p := range map[string]jobs.StartParams{
		"no lease":       {ID: j.ID, Attempt: 1, LeaseFor: time.Minute},
		"no LeaseFor":    {ID: j.ID, Attempt: 1, Lease: "a"},
		"long lease":     {ID: j.ID, Attempt: 1, Lease: strings.Repeat("x", jobs.MaxLeaseBytes+1), LeaseFor: time.Minute},
		"negative lease": {ID: j.ID, Attempt: 1, Lease: "a", LeaseFor: -time.Second},
	} {
		_, err := s.Start(ctx, p)
		wantErr(t, "Start with "+name, err, jobs.ErrInvalidArgument)
	}
	sameJob(t, "job after refused Starts", get(ctx, t, s, j.ID), j)
	refs := make([]jobs.LeaseRef, jobs.MaxHeartbeatLeases+1)
	for i := range refs {
		refs[i] = jobs.LeaseRef{ID: fmt.Sprint("j", i), Lease: "l"}
	}
	for name, p := range map[string]jobs.HeartbeatParams{
		"too many leases": {Leases: refs, LeaseFor: time.Minute},
		"no LeaseFor":     {Leases: refs[:1]},
		"empty lease":     {Leases: []jobs.LeaseRef{{ID: "j"}}, LeaseFor: time.Minute},
		"empty ID":        {Leases: []jobs.LeaseRef{{Lease: "l"}}, LeaseFor: time.Minute},
	} {
		_, err := s.Heartbeat(ctx, p)
		wantErr(t, "Heartbeat with "+name, err, jobs.ErrInvalidArgument)
	}
	if _, err := s.Heartbeat(ctx, jobs.HeartbeatParams{Leases: refs[:jobs.MaxHeartbeatLeases], LeaseFor: time.Minute}); err != nil {
		t.Fatalf("Heartbeat of %d leases: %v", jobs.MaxHeartbeatLeases, err)
	}
}

func testClaimLeases(ctx context.Context, t *testing.T, s jobs.Store, clk *Clock) {
	t0 := clk.Now()
	a := enqueue(ctx, t, s, jobs.Job{Type: "test.v1.Later", RunAfter: t0.Add(time.Hour), Payload: []byte("a")})
	b := enqueue(ctx, t, s, jobs.Job{Type: "test.v1.Now", Payload: []byte("b")})
	c := enqueue(ctx, t, s, jobs.Job{Type: "test.v1.Now", Payload: []byte("c")})
	wantIDs(t, "ClaimOutbox(limit 1)", claim(ctx, t, s, "r1", 1, 30*time.Second), []string{b.ID})
	wantIDs(t, "ClaimOutbox by r1", claim(ctx, t, s, "r1", 10, 30*time.Second), []string{c.ID})
	wantIDs(t, "ClaimOutbox by r2 while r1 holds them", claim(ctx, t, s, "r2", 10, 30*time.Second), nil)
	if n, _, err := s.OutboxStats(ctx); err != nil || n != 3 {
		t.Fatalf("OutboxStats with claimed entries = %d, %v; want 3", n, err)
	}
	clk.Add(29 * time.Second)
	wantIDs(t, "ClaimOutbox 1s before the claims lapse", claim(ctx, t, s, "r2", 10, 30*time.Second), nil)
	clk.Add(time.Second)
	wantIDs(t, "ClaimOutbox once the claims lapsed", claim(ctx, t, s, "r2", 10, 30*time.Second), []string{b.ID, c.ID})
	if err := s.MarkSent(ctx, []string{b.ID, "not-in-outbox"}); err != nil {
		t.Fatalf("MarkSent: %v", err)
	}
	clk.Add(time.Hour)
	es, err := s.ClaimOutbox(ctx, jobs.ClaimOutboxParams{Limit: 10, Owner: "r1", LeaseFor: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	wantIDs(t, "ClaimOutbox after RunAfter", entryIDs(es), []string{c.ID, a.ID})
	if e := es[1]; !e.RunAfter.Equal(a.RunAfter) || !e.Due.Equal(a.RunAfter) || string(e.Payload) != "a" || e.Type != "test.v1.Later" {
		t.Fatalf("outbox entry of the RunAfter job: %+v, job RunAfter %v", e, a.RunAfter)
	}
	if err := s.MarkSent(ctx, nil); err != nil {
		t.Fatalf("MarkSent(nil): %v", err)
	}
	sameJob(t, "job after MarkSent", get(ctx, t, s, b.ID), b)
	for name, p := range map[string]jobs.ClaimOutboxParams{
		"limit 0":     {Owner: "r", LeaseFor: time.Minute},
		"limit 1001":  {Limit: jobs.MaxClaim + 1, Owner: "r", LeaseFor: time.Minute},
		"no owner":    {Limit: 1, LeaseFor: time.Minute},
		"no LeaseFor": {Limit: 1, Owner: "r"},
	} {
		_, err := s.ClaimOutbox(ctx, p)
		wantErr(t, "ClaimOutbox with "+name, err, jobs.ErrInvalidArgument)
	}
}

// testClaimOrdering: the entries of an ordering key are claimed in enqueue
// order, several in one claim, and one held back (claimed by another relay,
// or retried later) holds back the later ones of its key only.
func testClaimOrdering(ctx context.Context, t *testing.T, s jobs.Store, clk *Clock) {
	mk := func(key string) string {
		return enqueue(ctx, t, s, jobs.Job{Type: "test.v1.Ordered", OrderingKey: key}).ID
	}
	k1, x1, k2, l1, k3 := mk("K"), mk(""), mk("K"), mk("L"), mk("K")
	wantIDs(t, "first claim", claim(ctx, t, s, "r1", 2, time.Minute), []string{k1, x1})
	// k2 and k3 wait while r1 holds k1; L and unkeyed entries do not.
	x2 := mk("")
	wantIDs(t, "claim while k1 is held", claim(ctx, t, s, "r2", 10, time.Minute), []string{l1, x2})
	// k1 failed to publish: retried in a minute. Its key waits for it.
	if err := s.RetryOutbox(ctx, jobs.RetryOutboxParams{ID: k1, Due: clk.Now().Add(time.Minute), Error: "unavailable"}); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkSent(ctx, []string{x1, x2, l1}); err != nil {
		t.Fatal(err)
	}
	wantIDs(t, "claim while k1 waits to be retried", claim(ctx, t, s, "r2", 10, time.Minute), nil)
	clk.Add(time.Minute)
	k4 := mk("K")
	es, err := s.ClaimOutbox(ctx, jobs.ClaimOutboxParams{Limit: 10, Owner: "r1", LeaseFor: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	wantIDs(t, "claim once k1 is due", entryIDs(es), []string{k1, k2, k3, k4})
	if es[0].Attempts != 1 || es[0].LastError != "unavailable" {
		t.Fatalf("retried entry: Attempts %d LastError %q; want 1, unavailable", es[0].Attempts, es[0].LastError)
	}
	// k1 and k2 published; k3 failed (and k4 with it): k4 waits for k3.
	if err := s.MarkSent(ctx, []string{k1, k2}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{k4, k3} {
		if err := s.RetryOutbox(ctx, jobs.RetryOutboxParams{ID: id, Due: clk.Now().Add(10 * time.Second), Error: "paused"}); err != nil {
			t.Fatal(err)
		}
	}
	clk.Add(10 * time.Second)
	wantIDs(t, "claim of the retried entries, limit 1", claim(ctx, t, s, "r2", 1, time.Minute), []string{k3})
	wantIDs(t, "claim while k3 is held", claim(ctx, t, s, "r1", 10, time.Minute), nil)
	// A job that fails for good drops its entry: the key moves on.
	if _, err := s.Fail(ctx, jobs.FailParams{ID: k3, Code: 3, Message: "too large"}); err != nil {
		t.Fatal(err)
	}
	wantIDs(t, "claim after k3's job failed", claim(ctx, t, s, "r1", 10, time.Minute), []string{k4})
}

// testConcurrentClaims: relays claiming at once (on one store, and on a peer
// replica when the store is shared) never get the same entry.
func testConcurrentClaims(ctx context.Context, t *testing.T, s jobs.Store, clk *Clock, f Features) {
	stores := []jobs.Store{s, s}
	if f.NewPeer != nil {
		stores = append(stores, f.NewPeer(t, s), f.NewPeer(t, s))
	}
	const n = 300
	want := map[string]bool{}
	for i := range n {
		key := ""
		if i%10 == 0 {
			key = fmt.Sprint("key-", i%3)
		}
		want[enqueue(ctx, t, s, jobs.Job{Type: "test.v1.Claims", OrderingKey: key}).ID] = true
	}
	var (
		mu   sync.Mutex
		got  = map[string]string{}
		errs []error
		wg   sync.WaitGroup
	)
	for r, st := range stores {
		owner := fmt.Sprint("relay-", r)
		wg.Go(func() {
			for range 100000 {
				es, err := st.ClaimOutbox(ctx, jobs.ClaimOutboxParams{Limit: 7, Owner: owner, LeaseFor: time.Hour})
				if err == nil && len(es) > 0 {
					err = st.MarkSent(ctx, entryIDs(es))
				}
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				}
				for _, e := range es {
					if prev, dup := got[e.JobID]; dup {
						errs = append(errs, fmt.Errorf("entry %s claimed by %s and %s", e.JobID, prev, owner))
					}
					got[e.JobID] = owner
				}
				done := len(got) >= n || len(errs) > 0
				mu.Unlock()
				if done || (err == nil && len(es) == 0 && outboxEmpty(ctx, st)) {
					return
				}
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatal(errors.Join(errs...))
	}
	if len(got) != n || !maps.EqualFunc(want, got, func(bool, string) bool { return true }) {
		t.Fatalf("%d relays claimed %d distinct entries of %d", len(stores), len(got), n)
	}
}

func outboxEmpty(ctx context.Context, s jobs.Store) bool {
	n, _, err := s.OutboxStats(ctx)
	return err == nil && n == 0
}

func testRetryOutbox(ctx context.Context, t *testing.T, s jobs.Store, clk *Clock) {
	j := enqueue(ctx, t, s, job("test.v1.Retry"))
	wantIDs(t, "claim", claim(ctx, t, s, "r", 10, time.Hour), []string{j.ID})
	due := clk.Now().Add(5 * time.Second)
	if err := s.RetryOutbox(ctx, jobs.RetryOutboxParams{ID: j.ID, Due: due, Error: "topic not found"}); err != nil {
		t.Fatalf("RetryOutbox: %v", err)
	}
	// The claim is released; the entry waits for its due time.
	wantIDs(t, "claim before the retry is due", claim(ctx, t, s, "r", 10, time.Hour), nil)
	clk.Add(5 * time.Second)
	es, err := s.ClaimOutbox(ctx, jobs.ClaimOutboxParams{Limit: 10, Owner: "r2", LeaseFor: time.Hour})
	if err != nil || len(es) != 1 {
		t.Fatalf("claim at the retry's due time = %+v, %v", es, err)
	}
	if e := es[0]; e.Attempts != 1 || e.LastError != "topic not found" || !e.Due.Equal(due) {
		t.Fatalf("retried entry %+v: want Attempts 1, LastError, Due %v", e, due)
	}
	if err := s.RetryOutbox(ctx, jobs.RetryOutboxParams{ID: j.ID, Due: clk.Now(), Error: "again\x00"}); err != nil {
		t.Fatal(err)
	}
	es, _ = s.ClaimOutbox(ctx, jobs.ClaimOutboxParams{Limit: 10, Owner: "r2", LeaseFor: time.Hour})
	if len(es) != 1 || es[0].Attempts != 2 || es[0].LastError != "again\uFFFD" {
		t.Fatalf("second retry: %+v; want Attempts 2 and the error made text", es)
	}
	err = s.RetryOutbox(ctx, jobs.RetryOutboxParams{ID: "no-entry", Due: clk.Now()})
	wantErr(t, "RetryOutbox of a job with no entry", err, jobs.ErrNotFound)
	err = s.RetryOutbox(ctx, jobs.RetryOutboxParams{ID: j.ID})
	wantErr(t, "RetryOutbox with no Due", err, jobs.ErrInvalidArgument)
}

func testFailDropsOutbox(ctx context.Context, t *testing.T, s jobs.Store, clk *Clock) {
	j := enqueue(ctx, t, s, job("test.v1.Poison"))
	keep := enqueue(ctx, t, s, job("test.v1.Poison"))
	// A retry keeps the entry (a Running job has none; here a queued one
	// cannot be retried), a final failure drops it.
	f, err := s.Fail(ctx, jobs.FailParams{ID: j.ID, Code: 3, Message: "message is 10000187 bytes; Pub/Sub takes at most 10000000"})
	if err != nil || f.State != jobs.Failed {
		t.Fatalf("Fail(final) of a queued job = %+v, %v", f, err)
	}
	wantIDs(t, "claim after the final failure", claim(ctx, t, s, "r", 10, time.Minute), []string{keep.ID})
	if n, _, err := s.OutboxStats(ctx); err != nil || n != 1 {
		t.Fatalf("OutboxStats = %d, %v; want 1", n, err)
	}
}

func counts(ctx context.Context, t *testing.T, s jobs.Store) map[string]jobs.TypeCounts {
	t.Helper()
	cs, err := s.Counts(ctx)
	if err != nil {
		t.Fatalf("Counts: %v", err)
	}
	if !slices.IsSortedFunc(cs, func(a, b jobs.TypeCounts) int { return strings.Compare(a.Type, b.Type) }) {
		t.Fatalf("Counts not sorted by type: %+v", cs)
	}
	out := map[string]jobs.TypeCounts{}
	for _, c := range cs {
		if len(c.States) != len(jobs.States()) {
			t.Fatalf("Counts of %s: %v; want every state", c.Type, c.States)
		}
		out[c.Type] = c
	}
	return out
}

func wantCounts(ctx context.Context, t *testing.T, s jobs.Store, want map[string][5]int, oldest map[string]time.Time) {
	t.Helper()
	got := counts(ctx, t, s)
	if len(got) != len(want) {
		t.Fatalf("Counts has types %v, want %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
	for typ, w := range want {
		c := got[typ]
		for i, st := range jobs.States() {
			if c.States[st] != w[i] {
				t.Fatalf("Counts[%s] = %v, want %v (in the order %v)", typ, c.States, w, jobs.States())
			}
		}
		if !c.OldestQueued.Equal(oldest[typ]) {
			t.Fatalf("Counts[%s].OldestQueued = %v, want %v", typ, c.OldestQueued, oldest[typ])
		}
	}
}

func testCounts(ctx context.Context, t *testing.T, s jobs.Store, clk *Clock) {
	if cs, err := s.Counts(ctx); err != nil || len(cs) != 0 {
		t.Fatalf("Counts of an empty store = %+v, %v", cs, err)
	}
	t0 := clk.Now()
	a := make([]*jobs.Job, 6)
	for i := range a {
		a[i] = enqueue(ctx, t, s, job("test.v1.B"))
		clk.Add(time.Second)
	}
	e, err := s.Ensure(ctx, jobs.EnsureParams{Job: jobs.Job{ID: "counted", Type: "test.v1.A"}})
	if err != nil {
		t.Fatal(err)
	}
	// Duplicates count once.
	if _, err := s.Ensure(ctx, jobs.EnsureParams{Job: jobs.Job{ID: "counted", Type: "test.v1.A"}}); err != nil {
		t.Fatal(err)
	}
	wantCounts(ctx, t, s, map[string][5]int{"test.v1.A": {1, 0, 0, 0, 0}, "test.v1.B": {6, 0, 0, 0, 0}},
		map[string]time.Time{"test.v1.A": e.CreateTime, "test.v1.B": t0})

	for _, j := range a[:5] {
		start(ctx, t, s, jobs.StartParams{ID: j.ID, Attempt: 1, Lease: "l", LeaseFor: time.Minute})
	}
	start(ctx, t, s, jobs.StartParams{ID: a[0].ID, Attempt: 1, Lease: "l", LeaseFor: time.Minute}) // repeated: no change
	if _, err := s.Succeed(ctx, jobs.SucceedParams{ID: a[0].ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Fail(ctx, jobs.FailParams{ID: a[1].ID, Code: 2, Message: "x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Fail(ctx, jobs.FailParams{ID: a[2].ID, Code: 14, Message: "x", Retry: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Cancel(ctx, a[3].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Cancel(ctx, a[0].ID); !errors.Is(err, jobs.ErrConflict) { // refused: no change
		t.Fatalf("Cancel of a succeeded job: %v", err)
	}
	if _, err := s.Fail(ctx, jobs.FailParams{ID: e.ID, Code: 3, Message: "undecodable"}); err != nil {
		t.Fatal(err)
	}
	// B: a[2] and a[5] queued (a[2] is the older), a[4] running, one of each end.
	wantCounts(ctx, t, s, map[string][5]int{"test.v1.A": {0, 0, 0, 1, 0}, "test.v1.B": {2, 1, 1, 1, 1}},
		map[string]time.Time{"test.v1.B": a[2].CreateTime})
	// A takeover moves no counter; a rescued job is Queued again.
	clk.Add(2 * time.Minute)
	start(ctx, t, s, jobs.StartParams{ID: a[4].ID, Attempt: 1, Lease: "m", LeaseFor: time.Minute})
	clk.Add(2 * time.Minute)
	res, err := s.Rescue(ctx, jobs.RescueParams{QueuedBefore: t0, LapsedBefore: clk.Now(), Limit: 10})
	if err != nil || !slices.Equal(res.Released, []string{a[4].ID}) {
		t.Fatalf("Rescue = %+v, %v; want a[4] released", res, err)
	}
	wantCounts(ctx, t, s, map[string][5]int{"test.v1.A": {0, 0, 0, 1, 0}, "test.v1.B": {3, 0, 1, 1, 1}},
		map[string]time.Time{"test.v1.B": a[2].CreateTime})
	// Deleted jobs leave the counts; a type with none left leaves the list.
	if n, err := s.DeleteFinished(ctx, clk.Now().Add(time.Second)); err != nil || n != 4 {
		t.Fatalf("DeleteFinished = %d, %v; want 4", n, err)
	}
	wantCounts(ctx, t, s, map[string][5]int{"test.v1.B": {3, 0, 0, 0, 0}}, map[string]time.Time{"test.v1.B": a[2].CreateTime})
}

func testThroughput(ctx context.Context, t *testing.T, s jobs.Store, clk *Clock) {
	// 05:06:07 on the clock: minute buckets 05:06, 05:07, ...
	t0 := clk.Now()
	m := func(min int) time.Time { return time.Date(2026, 3, 4, 5, min, 0, 0, time.UTC) }
	end := func(typ string, ok bool) {
		j := enqueue(ctx, t, s, job(typ))
		start(ctx, t, s, jobs.StartParams{ID: j.ID, Attempt: 1, Lease: "l", LeaseFor: time.Hour})
		var err error
		if ok {
			_, err = s.Succeed(ctx, jobs.SucceedParams{ID: j.ID})
		} else {
			_, err = s.Fail(ctx, jobs.FailParams{ID: j.ID, Code: 2, Message: "x"})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	end("test.v1.A", true)
	end("test.v1.A", true)
	end("test.v1.A", false)
	end("test.v1.B", true)
	// Retries and cancels are not endings that count.
	r := enqueue(ctx, t, s, job("test.v1.A"))
	start(ctx, t, s, jobs.StartParams{ID: r.ID, Attempt: 1, Lease: "l", LeaseFor: time.Hour})
	if _, err := s.Fail(ctx, jobs.FailParams{ID: r.ID, Code: 14, Message: "again", Retry: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Cancel(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Minute) // 05:07:07
	end("test.v1.A", true)
	clk.Add(5 * time.Minute) // 05:12:07
	end("test.v1.B", false)

	tp := func(since time.Time, step time.Duration) []jobs.ThroughputPoint {
		t.Helper()
		pts, err := s.Throughput(ctx, jobs.ThroughputParams{Since: since, Step: step})
		if err != nil {
			t.Fatalf("Throughput(%v, %v): %v", since, step, err)
		}
		for _, p := range pts {
			if p.Time.Location() != time.UTC {
				t.Fatalf("point time %v not in UTC", p.Time)
			}
		}
		return pts
	}
	want := []jobs.ThroughputPoint{
		{Time: m(6), Type: "test.v1.A", Succeeded: 2, Failed: 1},
		{Time: m(6), Type: "test.v1.B", Succeeded: 1},
		{Time: m(7), Type: "test.v1.A", Succeeded: 1},
		{Time: m(12), Type: "test.v1.B", Failed: 1},
	}
	if got := tp(t0, time.Minute); !slices.Equal(got, want) {
		t.Fatalf("Throughput per minute = %+v\nwant %+v", got, want)
	}
	if got := tp(m(7).Add(30*time.Second), time.Minute); !slices.Equal(got, want[2:]) {
		t.Fatalf("Throughput since 05:07:30 = %+v, want %+v", got, want[2:])
	}
	want5 := []jobs.ThroughputPoint{
		{Time: m(5), Type: "test.v1.A", Succeeded: 3, Failed: 1},
		{Time: m(5), Type: "test.v1.B", Succeeded: 1},
		{Time: m(10), Type: "test.v1.B", Failed: 1},
	}
	if got := tp(t0, 5*time.Minute); !slices.Equal(got, want5) {
		t.Fatalf("Throughput per 5 minutes = %+v\nwant %+v", got, want5)
	}
	for _, step := range []time.Duration{0, 30 * time.Second, 90 * time.Second} {
		_, err := s.Throughput(ctx, jobs.ThroughputParams{Since: t0, Step: step})
		wantErr(t, fmt.Sprintf("Throughput with Step %v", step), err, jobs.ErrInvalidArgument)
	}
	// Retention: buckets before DeleteFinished's cutoff go.
	if _, err := s.DeleteFinished(ctx, m(10)); err != nil {
		t.Fatal(err)
	}
	if got := tp(t0, time.Minute); !slices.Equal(got, want[3:]) {
		t.Fatalf("Throughput after DeleteFinished(05:10) = %+v, want %+v", got, want[3:])
	}
}

func testRescueQueued(ctx context.Context, t *testing.T, s jobs.Store, clk *Clock) {
	t0 := clk.Now()
	// Lost: recorded with no outbox entry (its message went missing), or
	// retried and never redelivered.
	lost1, err := s.Ensure(ctx, jobs.EnsureParams{Job: jobs.Job{ID: "lost-1", Type: "test.v1.Lost", OrderingKey: "K"}})
	if err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Second)
	lost2 := enqueue(ctx, t, s, job("test.v1.Lost"))
	if err := s.MarkSent(ctx, []string{lost2.ID}); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Second)
	lost3 := enqueue(ctx, t, s, job("test.v1.Lost"))
	if err := s.MarkSent(ctx, []string{lost3.ID}); err != nil {
		t.Fatal(err)
	}
	start(ctx, t, s, jobs.StartParams{ID: lost3.ID, Attempt: 1, Lease: "l", LeaseFor: time.Hour})
	if _, err := s.Fail(ctx, jobs.FailParams{ID: lost3.ID, Code: 14, Message: "again", Retry: true}); err != nil {
		t.Fatal(err)
	}
	// Not lost: its entry waits in the outbox; one held by a worker
	// (MarkSeen); one scheduled for later; one running; one finished.
	waiting := enqueue(ctx, t, s, job("test.v1.Lost"))
	held := enqueue(ctx, t, s, job("test.v1.Lost"))
	later := enqueue(ctx, t, s, jobs.Job{Type: "test.v1.Lost", RunAfter: t0.Add(time.Hour)})
	running := enqueue(ctx, t, s, job("test.v1.Lost"))
	start(ctx, t, s, jobs.StartParams{ID: running.ID, Attempt: 1, Lease: "l", LeaseFor: time.Hour})
	done := inState(ctx, t, s, jobs.Succeeded)
	if err := s.MarkSent(ctx, []string{held.ID, later.ID, running.ID, done.ID}); err != nil {
		t.Fatal(err)
	}
	clk.Add(10 * time.Minute)
	if err := s.MarkSeen(ctx, []string{held.ID, done.ID, "missing"}); err != nil {
		t.Fatalf("MarkSeen: %v", err)
	}
	if got := get(ctx, t, s, held.ID); !got.UpdateTime.Equal(held.UpdateTime) {
		t.Fatalf("MarkSeen changed UpdateTime from %v to %v", held.UpdateTime, got.UpdateTime)
	}
	wantEvents(ctx, t, s, held, []jobs.Event{{State: jobs.Queued}})
	clk.Add(time.Minute)
	// Lost for 5 minutes or more, the two oldest first.
	before := clk.Now().Add(-5 * time.Minute)
	res, err := s.Rescue(ctx, jobs.RescueParams{QueuedBefore: before, LapsedBefore: before, Limit: 2})
	if err != nil {
		t.Fatalf("Rescue: %v", err)
	}
	wantIDs(t, "Requeued (limit 2)", res.Requeued, []string{lost1.ID, lost2.ID})
	wantIDs(t, "Released", res.Released, nil)
	res, err = s.Rescue(ctx, jobs.RescueParams{QueuedBefore: before, LapsedBefore: before, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	wantIDs(t, "Requeued by the second Rescue", res.Requeued, []string{lost3.ID})
	// Republished: their entries are due now, with the jobs unchanged.
	es, err := s.ClaimOutbox(ctx, jobs.ClaimOutboxParams{Limit: 10, Owner: "r", LeaseFor: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	wantIDs(t, "outbox after Rescue", entryIDs(es), []string{waiting.ID, lost1.ID, lost2.ID, lost3.ID})
	if e := es[1]; !e.Due.Equal(clk.Now()) || e.OrderingKey != "K" {
		t.Fatalf("rescued entry %+v: want due now (%v) with the job's ordering key", e, clk.Now())
	}
	sameJob(t, "rescued job", get(ctx, t, s, lost2.ID), lost2)
	// Not picked again at once, even once published again.
	if err := s.MarkSent(ctx, entryIDs(es)[1:]); err != nil {
		t.Fatal(err)
	}
	res, err = s.Rescue(ctx, jobs.RescueParams{QueuedBefore: before, LapsedBefore: before, Limit: 10})
	if err != nil || len(res.Requeued)+len(res.Released) != 0 {
		t.Fatalf("Rescue right after = %+v, %v; want nothing", res, err)
	}
	// ... but again once they stay lost long enough; the scheduled job once
	// its RunAfter is old enough.
	clk.Add(2 * time.Hour)
	now := clk.Now()
	res, err = s.Rescue(ctx, jobs.RescueParams{QueuedBefore: now.Add(-5 * time.Minute), LapsedBefore: now.Add(-5 * time.Minute), Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	// Oldest first: held was seen before the others were rescued, the
	// scheduled job's RunAfter is the latest (the rescued three tie).
	if len(res.Requeued) != 5 || res.Requeued[0] != held.ID || res.Requeued[4] != later.ID {
		t.Fatalf("Requeued two hours later = %v, want %s first and %s last", res.Requeued, held.ID, later.ID)
	}
	mid := slices.Sorted(slices.Values(res.Requeued[1:4]))
	wantIDs(t, "Requeued two hours later", mid, slices.Sorted(slices.Values([]string{lost1.ID, lost2.ID, lost3.ID})))
	err = s.MarkSeen(ctx, make([]string, jobs.MaxBatchIDs+1))
	wantErr(t, "MarkSeen of too many IDs", err, jobs.ErrInvalidArgument)
	_, err = s.Rescue(ctx, jobs.RescueParams{QueuedBefore: now, LapsedBefore: now})
	wantErr(t, "Rescue with Limit 0", err, jobs.ErrInvalidArgument)
}

func testRescueLapsed(ctx context.Context, t *testing.T, s jobs.Store, clk *Clock) {
	run := func(attempt int, leaseFor time.Duration) *jobs.Job {
		j := enqueue(ctx, t, s, jobs.Job{Type: "test.v1.Lapsed", OrderingKey: "K"})
		if err := s.MarkSent(ctx, []string{j.ID}); err != nil {
			t.Fatal(err)
		}
		return start(ctx, t, s, jobs.StartParams{ID: j.ID, Attempt: attempt, Lease: "l", LeaseFor: leaseFor})
	}
	a := run(2, time.Minute)
	b := run(1, 2*time.Minute)
	c := run(1, 10*time.Minute) // still live
	clk.Add(5 * time.Minute)
	res, err := s.Rescue(ctx, jobs.RescueParams{QueuedBefore: clk.Now().Add(-time.Hour), LapsedBefore: clk.Now().Add(-2 * time.Minute), Limit: 1})
	if err != nil {
		t.Fatalf("Rescue: %v", err)
	}
	wantIDs(t, "Released (limit 1: the oldest lapse)", res.Released, []string{a.ID})
	r := get(ctx, t, s, a.ID)
	msg := "jobs: lease of attempt 2 lapsed at " + a.LeaseExpiry.Format(time.RFC3339Nano) + " without a heartbeat: the worker stopped; republished"
	if r.State != jobs.Queued || r.Attempt != 2 || r.Lease != "" || !r.LeaseExpiry.IsZero() || r.ErrorCode != 14 ||
		r.ErrorMessage != msg || !r.UpdateTime.Equal(clk.Now()) {
		t.Fatalf("released job %+v\nwant QUEUED, attempt 2, no lease, code 14, message %q", r, msg)
	}
	wantEvents(ctx, t, s, r, []jobs.Event{{State: jobs.Queued}, {State: jobs.Running, Attempt: 2}, {State: jobs.Queued, Attempt: 2, Message: msg}})
	res, err = s.Rescue(ctx, jobs.RescueParams{QueuedBefore: clk.Now().Add(-time.Hour), LapsedBefore: clk.Now(), Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	wantIDs(t, "Released by the second Rescue", res.Released, []string{b.ID})
	sameJob(t, "job whose lease is live", get(ctx, t, s, c.ID), c)
	es, err := s.ClaimOutbox(ctx, jobs.ClaimOutboxParams{Limit: 10, Owner: "r", LeaseFor: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	wantIDs(t, "outbox after Rescue", entryIDs(es), []string{a.ID, b.ID})
	if !es[0].Due.Equal(clk.Now()) {
		t.Fatalf("released job's entry is due %v, want now %v", es[0].Due, clk.Now())
	}
	// The next delivery starts the next attempt; the old worker is refused.
	n := start(ctx, t, s, jobs.StartParams{ID: a.ID, Attempt: 1, Lease: "n", LeaseFor: time.Minute})
	if n.Attempt != 3 {
		t.Fatalf("Start after the release: attempt %d, want 3", n.Attempt)
	}
	_, err = s.Succeed(ctx, jobs.SucceedParams{ID: a.ID, Lease: "l"})
	wantErr(t, "Succeed by the worker whose lease lapsed", err, jobs.ErrConflict)
}

func testCancelled(ctx context.Context, t *testing.T, s jobs.Store, clk *Clock) {
	q := inState(ctx, t, s, jobs.Queued)
	r := inState(ctx, t, s, jobs.Running)
	c1 := inState(ctx, t, s, jobs.Cancelled)
	c2 := inState(ctx, t, s, jobs.Running)
	if _, err := s.Cancel(ctx, c2.ID); err != nil {
		t.Fatal(err)
	}
	got, err := s.Cancelled(ctx, []string{q.ID, r.ID, c1.ID, c2.ID, "missing"})
	if err != nil {
		t.Fatalf("Cancelled: %v", err)
	}
	slices.Sort(got)
	want := []string{c1.ID, c2.ID}
	slices.Sort(want)
	wantIDs(t, "Cancelled", got, want)
	if got, err := s.Cancelled(ctx, nil); err != nil || len(got) != 0 {
		t.Fatalf("Cancelled(nil) = %v, %v", got, err)
	}
	many := make([]string, jobs.MaxBatchIDs)
	for i := range many {
		many[i] = fmt.Sprint("id-", i)
	}
	many[len(many)-1] = c1.ID
	if got, err := s.Cancelled(ctx, many); err != nil || !slices.Equal(got, []string{c1.ID}) {
		t.Fatalf("Cancelled of %d IDs = %v, %v", len(many), got, err)
	}
	_, err = s.Cancelled(ctx, append(many, "one-more"))
	wantErr(t, "Cancelled of too many IDs", err, jobs.ErrInvalidArgument)
}

// testBounds: oversized IDs, keys, labels and filters get ErrInvalidArgument
// naming the limit, with the value cut short in the message.
func testBounds(ctx context.Context, t *testing.T, s jobs.Store, clk *Clock) {
	huge := strings.Repeat("x", 1<<20)
	check := func(what string, err error, limit int) {
		t.Helper()
		wantErr(t, what, err, jobs.ErrInvalidArgument)
		if msg := err.Error(); len(msg) > 1000 || !strings.Contains(msg, fmt.Sprint(limit)) {
			t.Fatalf("%s: error of %d bytes %.300q: want a short message naming the limit %d", what, len(msg), msg, limit)
		}
	}
	_, err := s.Get(ctx, huge)
	check("Get of a 1 MB ID", err, jobs.MaxIDBytes)
	_, err = s.Cancel(ctx, huge)
	check("Cancel of a 1 MB ID", err, jobs.MaxIDBytes)
	_, err = s.Start(ctx, jobs.StartParams{ID: huge, Attempt: 1, Lease: "l", LeaseFor: time.Minute})
	check("Start of a 1 MB ID", err, jobs.MaxIDBytes)
	_, err = s.Events(ctx, huge)
	check("Events of a 1 MB ID", err, jobs.MaxIDBytes)
	_, err = s.Cancelled(ctx, []string{"ok", huge})
	check("Cancelled with a 1 MB ID", err, jobs.MaxIDBytes)
	err = s.MarkSent(ctx, []string{huge})
	check("MarkSent of a 1 MB ID", err, jobs.MaxIDBytes)
	_, _, err = s.Enqueue(ctx, jobs.EnqueueParams{Job: jobs.Job{Type: "test.v1.Bounds", IdempotencyKey: huge}})
	check("Enqueue with a 1 MB idempotency key", err, jobs.MaxIdempotencyKeyBytes)
	_, _, err = s.Enqueue(ctx, jobs.EnqueueParams{Job: jobs.Job{ID: huge, Type: "test.v1.Bounds"}})
	check("Enqueue with a 1 MB ID", err, jobs.MaxIDBytes)
	_, err = s.Ensure(ctx, jobs.EnsureParams{Job: jobs.Job{ID: "b", Type: huge}})
	check("Ensure with a 1 MB type", err, jobs.MaxTypeBytes)
	_, _, err = s.Enqueue(ctx, jobs.EnqueueParams{Job: jobs.Job{Type: "test.v1.Bounds", OrderingKey: huge}})
	check("Enqueue with a 1 MB ordering key", err, jobs.MaxOrderingKeyBytes)
	_, _, err = s.Enqueue(ctx, jobs.EnqueueParams{Job: jobs.Job{Type: "test.v1.Bounds", Labels: map[string]string{"k": huge}}})
	check("Enqueue with a 1 MB label value", err, jobs.MaxLabelValueBytes)
	_, _, err = s.Enqueue(ctx, jobs.EnqueueParams{Job: jobs.Job{Type: "test.v1.Bounds", Labels: map[string]string{huge: "v"}}})
	check("Enqueue with a 1 MB label key", err, jobs.MaxLabelKeyBytes)
	many := map[string]string{}
	for i := range 1000 {
		many[fmt.Sprint("k", i)] = "v"
	}
	_, _, err = s.List(ctx, jobs.ListParams{Labels: many})
	check("List with 1000 label filters", err, jobs.MaxLabels)
	_, _, err = s.Enqueue(ctx, jobs.EnqueueParams{Job: jobs.Job{Type: "test.v1.Bounds", Labels: many}})
	check("Enqueue with 1000 labels", err, jobs.MaxLabels)
	_, _, err = s.List(ctx, jobs.ListParams{Type: huge})
	check("List with a 1 MB type", err, jobs.MaxTypeBytes)

	// At the limits, everything is stored and found.
	at := map[string]string{}
	for i := range jobs.MaxLabels {
		at[fmt.Sprintf("%063d", i)] = strings.Repeat("v", jobs.MaxLabelValueBytes)
	}
	big := jobs.Job{
		ID:             strings.Repeat("i", jobs.MaxIDBytes),
		Type:           strings.Repeat("t", jobs.MaxTypeBytes),
		IdempotencyKey: strings.Repeat("k", jobs.MaxIdempotencyKeyBytes),
		OrderingKey:    strings.Repeat("o", jobs.MaxOrderingKeyBytes),
		Labels:         at,
	}
	j := enqueue(ctx, t, s, big)
	sameJob(t, "Get of a job at every limit", get(ctx, t, s, big.ID), j)
	list, _, err := s.List(ctx, jobs.ListParams{Type: big.Type, Labels: at})
	if err != nil || len(list) != 1 {
		t.Fatalf("List by %d label filters = %d jobs, %v; want 1", len(at), len(list), err)
	}
	if _, err := s.Cancel(ctx, big.ID); err != nil {
		t.Fatalf("Cancel of a %d-byte ID: %v", jobs.MaxIDBytes, err)
	}
}
