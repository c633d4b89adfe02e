// Package jobstest is the conformance suite of jobs.Store: every store's
// tests call Exercise, and its benchmarks call BenchmarkStore, so that all
// stores keep one contract and are measured the same way. It is for the
// tests of store packages only, never for production code.
package jobstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/courierq/courier/jobs"
)

// Features declares what a store can do beyond the interface; the suite
// skips, with a reason, the tests of what a store lacks.
type Features struct {
	// NewPeer opens a second store on the same database as s, as another
	// replica would. nil when the store cannot be shared (SQLite: one
	// process); the cross-replica Subscribe test then skips.
	NewPeer func(t *testing.T, s jobs.Store) jobs.Store
}

// wait bounds every await of an event: generous, since it is only reached
// when the store is broken.
const wait = 10 * time.Second

// Exercise runs the conformance suite, each subtest on its own store from
// newStore (which must register its cleanup with t.Cleanup). newStore's now
// is the store's clock (Config.Now); nil means its default. At most one
// Features value is used.
func Exercise(ctx context.Context, t *testing.T, newStore func(t *testing.T, now func() time.Time) jobs.Store, features ...Features) {
	t.Helper()
	var f Features
	if len(features) > 0 {
		f = features[0]
	}
	tests := []struct {
		name string
		fn   func(ctx context.Context, t *testing.T, s jobs.Store)
	}{
		{"EnqueueWritesJobAndOutbox", testEnqueue},
		{"EnqueueRejectsBadInput", testEnqueueBadInput},
		{"IdempotencyKey", testIdempotency},
		{"ConcurrentIdempotentEnqueue", testConcurrentIdempotency},
		{"EnqueueBatch", testEnqueueBatch},
		{"ConcurrentEnqueueBatches", testConcurrentBatches},
		{"Ensure", testEnsure},
		{"GetNotFound", testGetNotFound},
		{"Transitions", testTransitions},
		{"ConcurrentTransitionsOneWinner", testRace},
		{"StartAfterCrash", testStartAfterCrash},
		{"Cancel", testCancel},
		{"Progress", testProgress},
		{"Succeed", testSucceed},
		{"FailRetryThenFinal", testFail},
		{"MessagesAreText", testMessages},
		{"List", testList},
		{"ListPaging", testListPaging},
		{"ListRejectsBadInput", testListBadInput},
		{"OutboxStats", testOutboxStats},
		{"DeleteFinished", testDeleteFinished},
		{"EventsOfARetriedJob", testEventsRetried},
		{"EventsOfACancelledJob", testEventsCancelled},
		{"Subscribe", testSubscribe},
		{"SubscribeOtherReplica", func(ctx context.Context, t *testing.T, s jobs.Store) { testPeer(ctx, t, s, f) }},
		{"Times", testTimes},
		{"Limits", testLimits},
		{"PingAndClose", testClose},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(ctx, t, newStore(t, nil))
		})
	}
	// Tests of time-dependent behaviour run on a store whose clock they set.
	clocked := []struct {
		name string
		fn   func(ctx context.Context, t *testing.T, s jobs.Store, clk *Clock)
	}{
		{"NewFields", testNewFields},
		{"StartLeases", testStartLeases},
		{"StartTakeover", testTakeover},
		{"ConcurrentStartsOneLease", testConcurrentStarts},
		{"EndsUnderLease", testEndsUnderLease},
		{"Heartbeat", testHeartbeat},
		{"LeaseBadInput", testLeaseBadInput},
		{"ClaimOutboxLeases", testClaimLeases},
		{"ClaimOutboxOrderingKeys", testClaimOrdering},
		{"ConcurrentClaims", func(ctx context.Context, t *testing.T, s jobs.Store, clk *Clock) {
			testConcurrentClaims(ctx, t, s, clk, f)
		}},
		{"RetryOutbox", testRetryOutbox},
		{"FailFinalDropsOutbox", testFailDropsOutbox},
		{"Counts", testCounts},
		{"Throughput", testThroughput},
		{"RescueLostQueued", testRescueQueued},
		{"RescueLapsedLeases", testRescueLapsed},
		{"Cancelled", testCancelled},
		{"Bounds", testBounds},
		{"Defer", testDefer},
		{"UniqueScopes", testUniqueScopes},
	}
	for _, tt := range clocked {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clk := NewClock(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC))
			tt.fn(ctx, t, newStore(t, clk.Now), clk)
		})
	}
	exerciseControls(ctx, t, newStore, f)
}

// Clock is a clock a test sets, for stores whose Config.Now is its Now. It
// is safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Add moves the clock by d and returns the new time.
func (c *Clock) Add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

// sp returns the StartParams of attempt of job id, under the lease
// "lease-<attempt>" for an hour.
func sp(id string, attempt int) jobs.StartParams {
	return jobs.StartParams{ID: id, Attempt: attempt, Lease: fmt.Sprintf("lease-%d", attempt), LeaseFor: time.Hour}
}

// --- helpers ---

func enqueue(ctx context.Context, t *testing.T, s jobs.Store, j jobs.Job) *jobs.Job {
	t.Helper()
	got, dup, err := s.Enqueue(ctx, jobs.EnqueueParams{Job: j})
	if err != nil {
		t.Fatalf("Enqueue(%+v): %v", j, err)
	}
	if dup {
		t.Fatalf("Enqueue(%+v): duplicate = true for a new job", j)
	}
	return got
}

func get(ctx context.Context, t *testing.T, s jobs.Store, id string) *jobs.Job {
	t.Helper()
	j, err := s.Get(ctx, id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return j
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: err = %v, want one wrapping %v", what, err, target)
	}
}

func sameJob(t *testing.T, what string, got, want *jobs.Job) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

// await waits for a notification on ch.
func await(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case _, ok := <-ch:
		if !ok {
			t.Fatalf("%s: Subscribe channel closed while the store is open", what)
		}
	case <-time.After(wait):
		t.Fatalf("%s: no notification within %v", what, wait)
	}
}

func job(typ string) jobs.Job {
	return jobs.Job{Type: typ, Payload: []byte("payload of " + typ)}
}

// inState returns a new job brought to state.
func inState(ctx context.Context, t *testing.T, s jobs.Store, state jobs.State) *jobs.Job {
	t.Helper()
	j := enqueue(ctx, t, s, job("test.v1.State"))
	var err error
	switch state {
	case jobs.Queued:
		return j
	case jobs.Running:
		j, err = s.Start(ctx, sp(j.ID, 1))
	case jobs.Succeeded:
		if _, err = s.Start(ctx, sp(j.ID, 1)); err == nil {
			j, err = s.Succeed(ctx, jobs.SucceedParams{ID: j.ID, ResultType: "test.v1.Result", Result: []byte{1}})
		}
	case jobs.Failed:
		j, err = s.Fail(ctx, jobs.FailParams{ID: j.ID, Code: 9, Message: "broken"})
	case jobs.Cancelled:
		j, err = s.Cancel(ctx, j.ID)
	}
	if err != nil {
		t.Fatalf("bring job to %s: %v", state, err)
	}
	if j.State != state {
		t.Fatalf("bring job to %s: state is %s", state, j.State)
	}
	return j
}

// --- tests ---

func testEnqueue(ctx context.Context, t *testing.T, s jobs.Store) {
	in := jobs.Job{
		ID:          "job-1",
		Type:        "test.v1.Echo",
		Payload:     []byte{0x0a, 0x00, 0xff, 0x10},
		MaxAttempts: 3,
		Labels:      map[string]string{"team": "a", "env": "dev"},
	}
	before := time.Now()
	j := enqueue(ctx, t, s, in)
	if j.ID != "job-1" || j.Type != in.Type || j.State != jobs.Queued || j.Attempt != 0 || j.MaxAttempts != 3 ||
		!bytes.Equal(j.Payload, in.Payload) || !maps.Equal(j.Labels, in.Labels) {
		t.Fatalf("Enqueue returned %+v for %+v", j, in)
	}
	if j.CreateTime.IsZero() || !j.UpdateTime.Equal(j.CreateTime) || !j.StartTime.IsZero() || !j.EndTime.IsZero() {
		t.Fatalf("Enqueue times: create %v update %v start %v end %v", j.CreateTime, j.UpdateTime, j.StartTime, j.EndTime)
	}
	if j.CreateTime.Before(before.Add(-time.Minute)) || j.CreateTime.After(time.Now().Add(time.Minute)) {
		t.Fatalf("CreateTime %v is far from now %v", j.CreateTime, before)
	}
	sameJob(t, "Get after Enqueue", get(ctx, t, s, j.ID), j)

	due, err := s.ClaimOutbox(ctx, jobs.ClaimOutboxParams{Limit: 10, Owner: "test", LeaseFor: time.Minute})
	if err != nil {
		t.Fatalf("ClaimOutbox: %v", err)
	}
	if len(due) != 1 {
		t.Fatalf("ClaimOutbox = %d entries, want the 1 written with the job", len(due))
	}
	e := due[0]
	if e.JobID != j.ID || e.Type != j.Type || !bytes.Equal(e.Payload, in.Payload) || !maps.Equal(e.Labels, in.Labels) ||
		!e.RunAfter.IsZero() || !e.Created.Equal(j.CreateTime) || !e.Due.Equal(j.CreateTime) || e.Attempts != 0 || e.LastError != "" {
		t.Fatalf("outbox entry %+v does not match job %+v", e, j)
	}

	// An empty ID gets a fresh one.
	a := enqueue(ctx, t, s, job("test.v1.Echo"))
	b := enqueue(ctx, t, s, job("test.v1.Echo"))
	if a.ID == "" || b.ID == "" || a.ID == b.ID {
		t.Fatalf("generated IDs %q and %q: want two distinct non-empty IDs", a.ID, b.ID)
	}
}

func testEnqueueBadInput(ctx context.Context, t *testing.T, s jobs.Store) {
	for name, j := range map[string]jobs.Job{
		"no type":           {ID: "x"},
		"negative attempts": {Type: "test.v1.Echo", MaxAttempts: -1},
		"empty label key":   {Type: "test.v1.Echo", Labels: map[string]string{"": "v"}},
		"NUL in type":       {Type: "test.v1.Echo\x00"},
		"bad UTF-8 in ID":   {ID: "a\xff", Type: "test.v1.Echo"},
		"NUL in label":      {Type: "test.v1.Echo", Labels: map[string]string{"k": "v\x00"}},
		"NUL in key":        {Type: "test.v1.Echo", IdempotencyKey: "\x00"},
	} {
		_, _, err := s.Enqueue(ctx, jobs.EnqueueParams{Job: j})
		wantErr(t, "Enqueue with "+name, err, jobs.ErrInvalidArgument)
	}
	n, _, err := s.OutboxStats(ctx)
	if err != nil || n != 0 {
		t.Fatalf("OutboxStats after refused Enqueues = %d, %v; want 0", n, err)
	}
}

func testIdempotency(ctx context.Context, t *testing.T, s jobs.Store) {
	first := enqueue(ctx, t, s, jobs.Job{Type: "test.v1.A", IdempotencyKey: "k1", Payload: []byte("first")})
	again, dup, err := s.Enqueue(ctx, jobs.EnqueueParams{Job: jobs.Job{Type: "test.v1.A", IdempotencyKey: "k1", Payload: []byte("second")}})
	if err != nil {
		t.Fatalf("second Enqueue with the same key: %v", err)
	}
	if !dup {
		t.Fatalf("second Enqueue with the same key and type: duplicate = false")
	}
	sameJob(t, "duplicate Enqueue", again, first)

	other := enqueue(ctx, t, s, jobs.Job{Type: "test.v1.B", IdempotencyKey: "k1"})
	if other.ID == first.ID {
		t.Fatalf("same key, other type gave the same job %s", other.ID)
	}
	if other.IdempotencyKey != "k1" {
		t.Fatalf("IdempotencyKey = %q, want k1", other.IdempotencyKey)
	}
	n, _, err := s.OutboxStats(ctx)
	if err != nil || n != 2 {
		t.Fatalf("OutboxStats = %d, %v; want 2 (no entry for the duplicate)", n, err)
	}
	// Without a key, each Enqueue is a new job.
	a := enqueue(ctx, t, s, job("test.v1.A"))
	b := enqueue(ctx, t, s, job("test.v1.A"))
	if a.ID == b.ID {
		t.Fatalf("two Enqueues without a key gave one job")
	}
	// A taken ID without a key match is a conflict, and changes nothing.
	_, _, err = s.Enqueue(ctx, jobs.EnqueueParams{Job: jobs.Job{ID: a.ID, Type: "test.v1.A", Payload: []byte("other")}})
	wantErr(t, "Enqueue with a taken ID", err, jobs.ErrConflict)
	sameJob(t, "job after refused Enqueue", get(ctx, t, s, a.ID), a)
}

func testConcurrentIdempotency(ctx context.Context, t *testing.T, s jobs.Store) {
	const n = 32
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		ids     = map[string]int{}
		created int
		errs    []error
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j, dup, err := s.Enqueue(ctx, jobs.EnqueueParams{Job: jobs.Job{
				Type: "test.v1.Concurrent", IdempotencyKey: "same", Payload: fmt.Appendf(nil, "%d", i)}})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			ids[j.ID]++
			if !dup {
				created++
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("concurrent Enqueue: %v", errors.Join(errs...))
	}
	if len(ids) != 1 || created != 1 {
		t.Fatalf("%d concurrent Enqueues with one key: %d jobs (%v), %d not duplicate; want 1 and 1", n, len(ids), ids, created)
	}
	list, _, err := s.List(ctx, jobs.ListParams{Type: "test.v1.Concurrent"})
	if err != nil || len(list) != 1 {
		t.Fatalf("List = %d jobs, %v; want 1", len(list), err)
	}
	c, _, err := s.OutboxStats(ctx)
	if err != nil || c != 1 {
		t.Fatalf("OutboxStats = %d, %v; want 1", c, err)
	}
}

func testEnsure(ctx context.Context, t *testing.T, s jobs.Store) {
	in := jobs.Job{ID: "msg-1", Type: "test.v1.Echo", Payload: []byte("p"), Labels: map[string]string{"a": "b"}}
	j, err := s.Ensure(ctx, jobs.EnsureParams{Job: in})
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if j.ID != in.ID || j.State != jobs.Queued || !bytes.Equal(j.Payload, in.Payload) || !maps.Equal(j.Labels, in.Labels) || j.CreateTime.IsZero() {
		t.Fatalf("Ensure returned %+v for %+v", j, in)
	}
	sameJob(t, "Get after Ensure", get(ctx, t, s, in.ID), j)
	if n, _, err := s.OutboxStats(ctx); err != nil || n != 0 {
		t.Fatalf("OutboxStats after Ensure = %d, %v; want 0 (Ensure writes no outbox entry)", n, err)
	}
	// Ensure of an existing job returns it as stored, whatever else is passed.
	started, err := s.Start(ctx, sp(in.ID, 1))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	again, err := s.Ensure(ctx, jobs.EnsureParams{Job: jobs.Job{ID: in.ID, Type: "test.v1.Echo", Payload: []byte("other")}})
	if err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	sameJob(t, "second Ensure", again, started)
	// An enqueued job is found too.
	e := enqueue(ctx, t, s, job("test.v1.Echo"))
	got, err := s.Ensure(ctx, jobs.EnsureParams{Job: jobs.Job{ID: e.ID, Type: e.Type}})
	if err != nil {
		t.Fatalf("Ensure of an enqueued job: %v", err)
	}
	sameJob(t, "Ensure of an enqueued job", got, e)

	_, err = s.Ensure(ctx, jobs.EnsureParams{Job: jobs.Job{Type: "test.v1.Echo"}})
	wantErr(t, "Ensure without ID", err, jobs.ErrInvalidArgument)
}

func testGetNotFound(ctx context.Context, t *testing.T, s jobs.Store) {
	_, err := s.Get(ctx, "no-such-job")
	wantErr(t, "Get of a missing job", err, jobs.ErrNotFound)
	_, err = s.Get(ctx, "")
	wantErr(t, "Get with an empty ID", err, jobs.ErrInvalidArgument)
}

// op is a conditional change and the states it applies from.
type op struct {
	name  string
	from  []jobs.State
	to    jobs.State
	apply func(ctx context.Context, s jobs.Store, id string) (*jobs.Job, error)
}

var ops = []op{
	// From Running: a repeated Start under the lease of inState's Start.
	{"Start", []jobs.State{jobs.Queued, jobs.Running}, jobs.Running, func(ctx context.Context, s jobs.Store, id string) (*jobs.Job, error) {
		return s.Start(ctx, sp(id, 1))
	}},
	{"Progress", []jobs.State{jobs.Running}, jobs.Running, func(ctx context.Context, s jobs.Store, id string) (*jobs.Job, error) {
		if err := s.Progress(ctx, jobs.ProgressParams{ID: id, Fraction: 0.5, Message: "half"}); err != nil {
			return nil, err
		}
		return s.Get(ctx, id)
	}},
	{"Succeed", []jobs.State{jobs.Running}, jobs.Succeeded, func(ctx context.Context, s jobs.Store, id string) (*jobs.Job, error) {
		return s.Succeed(ctx, jobs.SucceedParams{ID: id, ResultType: "test.v1.Result", Result: []byte("r")})
	}},
	{"FailRetry", []jobs.State{jobs.Running}, jobs.Queued, func(ctx context.Context, s jobs.Store, id string) (*jobs.Job, error) {
		return s.Fail(ctx, jobs.FailParams{ID: id, Code: 14, Message: "unavailable", Retry: true})
	}},
	{"FailFinal", []jobs.State{jobs.Queued, jobs.Running}, jobs.Failed, func(ctx context.Context, s jobs.Store, id string) (*jobs.Job, error) {
		return s.Fail(ctx, jobs.FailParams{ID: id, Code: 3, Message: "bad payload"})
	}},
	{"Cancel", []jobs.State{jobs.Queued, jobs.Running}, jobs.Cancelled, func(ctx context.Context, s jobs.Store, id string) (*jobs.Job, error) {
		return s.Cancel(ctx, id)
	}},
}

func testTransitions(ctx context.Context, t *testing.T, s jobs.Store) {
	for _, o := range ops {
		for _, from := range jobs.States() {
			t.Run(fmt.Sprintf("%s_from_%s", o.name, from), func(t *testing.T) {
				j := inState(ctx, t, s, from)
				got, err := o.apply(ctx, s, j.ID)
				if slices.Contains(o.from, from) {
					if err != nil {
						t.Fatalf("%s from %s: %v", o.name, from, err)
					}
					if got.State != o.to {
						t.Fatalf("%s from %s: state %s, want %s", o.name, from, got.State, o.to)
					}
					if got.UpdateTime.Before(j.UpdateTime) {
						t.Fatalf("%s: UpdateTime went back from %v to %v", o.name, j.UpdateTime, got.UpdateTime)
					}
					sameJob(t, "Get after "+o.name, get(ctx, t, s, j.ID), got)
					return
				}
				wantErr(t, fmt.Sprintf("%s from %s", o.name, from), err, jobs.ErrConflict)
				sameJob(t, "job after refused "+o.name, get(ctx, t, s, j.ID), j)
			})
		}
		t.Run(o.name+"_missing", func(t *testing.T) {
			_, err := o.apply(ctx, s, "missing-"+o.name)
			wantErr(t, o.name+" of a missing job", err, jobs.ErrNotFound)
		})
	}
}

func testStartAfterCrash(ctx context.Context, t *testing.T, s jobs.Store) {
	j := enqueue(ctx, t, s, job("test.v1.Crash"))
	first, err := s.Start(ctx, jobs.StartParams{ID: j.ID, Attempt: 1, Lease: "a", LeaseFor: time.Millisecond})
	if err != nil {
		t.Fatalf("Start 1: %v", err)
	}
	if first.State != jobs.Running || first.Attempt != 1 || first.StartTime.IsZero() || first.Lease != "a" ||
		!first.LeaseExpiry.Equal(first.UpdateTime.Add(time.Millisecond)) {
		t.Fatalf("after Start 1: %+v", first)
	}
	// The first worker is gone: once its lease lapsed (wait for the clock,
	// without sleeping), a redelivery takes the job over.
	for !time.Now().After(first.LeaseExpiry.Add(time.Millisecond)) {
	}
	second, err := s.Start(ctx, jobs.StartParams{ID: j.ID, Attempt: 1, Lease: "b", LeaseFor: time.Hour})
	if err != nil {
		t.Fatalf("Start of a Running job whose lease lapsed (redelivery after a crash): %v", err)
	}
	if second.State != jobs.Running || second.Attempt != 2 || !second.StartTime.Equal(first.StartTime) || second.Lease != "b" {
		t.Fatalf("after the takeover: state %s attempt %d start %v lease %q; want RUNNING, 2 (a new attempt), first start %v, b",
			second.State, second.Attempt, second.StartTime, second.Lease, first.StartTime)
	}
	_, err = s.Start(ctx, jobs.StartParams{ID: j.ID, Attempt: 0, Lease: "c", LeaseFor: time.Hour})
	wantErr(t, "Start with attempt 0", err, jobs.ErrInvalidArgument)
}

func testCancel(ctx context.Context, t *testing.T, s jobs.Store) {
	q := enqueue(ctx, t, s, job("test.v1.Cancel"))
	c, err := s.Cancel(ctx, q.ID)
	if err != nil {
		t.Fatalf("Cancel of a queued job: %v", err)
	}
	if c.State != jobs.Cancelled || c.EndTime.IsZero() {
		t.Fatalf("cancelled queued job: %+v", c)
	}
	if n, _, err := s.OutboxStats(ctx); err != nil || n != 0 {
		t.Fatalf("OutboxStats after Cancel = %d, %v; want 0 (the entry is dropped)", n, err)
	}
	r := inState(ctx, t, s, jobs.Running)
	c, err = s.Cancel(ctx, r.ID)
	if err != nil || c.State != jobs.Cancelled || c.EndTime.IsZero() {
		t.Fatalf("Cancel of a running job = %+v, %v", c, err)
	}
	done := inState(ctx, t, s, jobs.Succeeded)
	got, err := s.Cancel(ctx, done.ID)
	wantErr(t, "Cancel of a finished job", err, jobs.ErrConflict)
	sameJob(t, "Cancel of a finished job returns it", got, done)
	// Cancel twice: the second is refused, the job stays as the first left it.
	again, err := s.Cancel(ctx, c.ID)
	wantErr(t, "second Cancel", err, jobs.ErrConflict)
	sameJob(t, "second Cancel returns the job", again, c)
}

func testProgress(ctx context.Context, t *testing.T, s jobs.Store) {
	j := inState(ctx, t, s, jobs.Running)
	for _, f := range []float64{0, 0.25, 1} {
		if err := s.Progress(ctx, jobs.ProgressParams{ID: j.ID, Fraction: f, Message: fmt.Sprint("at ", f)}); err != nil {
			t.Fatalf("Progress(%v): %v", f, err)
		}
		got := get(ctx, t, s, j.ID)
		if got.ProgressFraction != f || got.ProgressMessage != fmt.Sprint("at ", f) || got.State != jobs.Running {
			t.Fatalf("after Progress(%v): fraction %v message %q state %s", f, got.ProgressFraction, got.ProgressMessage, got.State)
		}
	}
	for _, f := range []float64{-0.1, 1.5} {
		err := s.Progress(ctx, jobs.ProgressParams{ID: j.ID, Fraction: f})
		wantErr(t, fmt.Sprintf("Progress(%v)", f), err, jobs.ErrInvalidArgument)
	}
}

func testSucceed(ctx context.Context, t *testing.T, s jobs.Store) {
	j := inState(ctx, t, s, jobs.Running)
	result := []byte{0, 1, 2, 0xfe, 0xff, 0}
	got, err := s.Succeed(ctx, jobs.SucceedParams{ID: j.ID, ResultType: "test.v1.Out", Result: result})
	if err != nil {
		t.Fatalf("Succeed: %v", err)
	}
	if got.State != jobs.Succeeded || got.ResultType != "test.v1.Out" || !bytes.Equal(got.Result, result) ||
		got.EndTime.IsZero() || got.EndTime.Before(got.StartTime) || !got.UpdateTime.Equal(got.EndTime) {
		t.Fatalf("after Succeed: %+v", got)
	}
	sameJob(t, "Get after Succeed", get(ctx, t, s, j.ID), got)
	// A redelivered message for a finished job: Start is refused.
	_, err = s.Start(ctx, sp(j.ID, 2))
	wantErr(t, "Start of a succeeded job", err, jobs.ErrConflict)
}

func testFail(ctx context.Context, t *testing.T, s jobs.Store) {
	j := inState(ctx, t, s, jobs.Running)
	r, err := s.Fail(ctx, jobs.FailParams{ID: j.ID, Code: 14, Message: "try again", Retry: true})
	if err != nil {
		t.Fatalf("Fail(Retry): %v", err)
	}
	if r.State != jobs.Queued || r.ErrorCode != 14 || r.ErrorMessage != "try again" || !r.EndTime.IsZero() ||
		r.Attempt != 1 || !r.StartTime.Equal(j.StartTime) {
		t.Fatalf("after Fail(Retry): %+v", r)
	}
	if _, err := s.Start(ctx, sp(j.ID, 2)); err != nil {
		t.Fatalf("Start 2: %v", err)
	}
	f, err := s.Fail(ctx, jobs.FailParams{ID: j.ID, Code: 13, Message: "gave up"})
	if err != nil {
		t.Fatalf("Fail(final): %v", err)
	}
	if f.State != jobs.Failed || f.ErrorCode != 13 || f.ErrorMessage != "gave up" || f.EndTime.IsZero() || f.Attempt != 2 {
		t.Fatalf("after Fail(final): %+v", f)
	}
	// Retry from Queued is refused: nothing was running.
	q := enqueue(ctx, t, s, job("test.v1.Fail"))
	_, err = s.Fail(ctx, jobs.FailParams{ID: q.ID, Code: 14, Message: "x", Retry: true})
	wantErr(t, "Fail(Retry) of a queued job", err, jobs.ErrConflict)
}

// checkOrder fails unless list is newest first (CreateTime, then ID).
func checkOrder(t *testing.T, list []*jobs.Job) {
	t.Helper()
	for i := 1; i < len(list); i++ {
		a, b := list[i-1], list[i]
		if a.CreateTime.Before(b.CreateTime) || (a.CreateTime.Equal(b.CreateTime) && a.ID < b.ID) {
			t.Fatalf("List order: %s (%v) before %s (%v); want newest first, then ID descending",
				a.ID, a.CreateTime, b.ID, b.CreateTime)
		}
	}
}

func ids(list []*jobs.Job) []string {
	out := make([]string, len(list))
	for i, j := range list {
		out[i] = j.ID
	}
	return out
}

func testList(ctx context.Context, t *testing.T, s jobs.Store) {
	mk := func(typ string, labels map[string]string) *jobs.Job {
		return enqueue(ctx, t, s, jobs.Job{Type: typ, Labels: labels})
	}
	a1 := mk("test.v1.A", map[string]string{"team": "red", "env": "prod"})
	a2 := mk("test.v1.A", map[string]string{"team": "blue", "env": "prod"})
	b1 := mk("test.v1.B", map[string]string{"team": "red"})
	b2 := mk("test.v1.B", nil)
	if _, err := s.Start(ctx, sp(a2.ID, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(ctx, sp(b2.ID, 1)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		p    jobs.ListParams
		want []*jobs.Job
	}{
		{"all", jobs.ListParams{}, []*jobs.Job{a1, a2, b1, b2}},
		{"type", jobs.ListParams{Type: "test.v1.A"}, []*jobs.Job{a1, a2}},
		{"state", jobs.ListParams{State: jobs.Running}, []*jobs.Job{a2, b2}},
		{"type and state", jobs.ListParams{Type: "test.v1.B", State: jobs.Queued}, []*jobs.Job{b1}},
		{"one label", jobs.ListParams{Labels: map[string]string{"team": "red"}}, []*jobs.Job{a1, b1}},
		{"two labels", jobs.ListParams{Labels: map[string]string{"team": "red", "env": "prod"}}, []*jobs.Job{a1}},
		{"label value mismatch", jobs.ListParams{Labels: map[string]string{"team": "green"}}, nil},
		{"label and state", jobs.ListParams{Labels: map[string]string{"env": "prod"}, State: jobs.Running}, []*jobs.Job{a2}},
		{"no match", jobs.ListParams{Type: "test.v1.C"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, next, err := s.List(ctx, tc.p)
			if err != nil {
				t.Fatalf("List(%+v): %v", tc.p, err)
			}
			if next != "" {
				t.Fatalf("List(%+v): next page token %q on the only page", tc.p, next)
			}
			checkOrder(t, got)
			gotIDs, wantIDs := ids(got), ids(tc.want)
			slices.Sort(gotIDs)
			slices.Sort(wantIDs)
			if !slices.Equal(gotIDs, wantIDs) {
				t.Fatalf("List(%+v) = %v, want %v", tc.p, gotIDs, wantIDs)
			}
			for _, j := range got {
				sameJob(t, "listed job", j, get(ctx, t, s, j.ID))
			}
		})
	}
}

func testListPaging(ctx context.Context, t *testing.T, s jobs.Store) {
	const n = 23
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		want []string
	)
	// Concurrent enqueues, so that some share a CreateTime and the ID breaks ties.
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j := enqueue(ctx, t, s, jobs.Job{Type: "test.v1.Page", Labels: map[string]string{"k": "v"}})
			mu.Lock()
			want = append(want, j.ID)
			mu.Unlock()
		}()
	}
	wg.Wait()
	enqueue(ctx, t, s, jobs.Job{Type: "test.v1.Page"}) // filtered out by the label
	var (
		got   []*jobs.Job
		token string
		pages int
	)
	for {
		page, next, err := s.List(ctx, jobs.ListParams{Labels: map[string]string{"k": "v"}, PageSize: 5, PageToken: token})
		if err != nil {
			t.Fatalf("List page %d: %v", pages+1, err)
		}
		pages++
		if len(page) > 5 {
			t.Fatalf("page %d has %d jobs, PageSize is 5", pages, len(page))
		}
		got = append(got, page...)
		if next == "" {
			break
		}
		if pages > n {
			t.Fatalf("List does not end: %d pages", pages)
		}
		token = next
	}
	if pages != 5 {
		t.Fatalf("%d jobs in pages of 5 took %d pages, want 5", n, pages)
	}
	checkOrder(t, got)
	gotIDs := ids(got)
	slices.Sort(gotIDs)
	slices.Sort(want)
	if !slices.Equal(gotIDs, want) {
		t.Fatalf("paged List = %v (%d), want %v (%d): duplicates or gaps", gotIDs, len(gotIDs), want, len(want))
	}
	// The default page size applies to PageSize 0.
	all, next, err := s.List(ctx, jobs.ListParams{})
	if err != nil || len(all) != n+1 || next != "" {
		t.Fatalf("List with default page size = %d jobs, next %q, %v; want %d, \"\"", len(all), next, err, n+1)
	}
}

func testListBadInput(ctx context.Context, t *testing.T, s jobs.Store) {
	enqueue(ctx, t, s, job("test.v1.X"))
	for _, tok := range []string{"garbage!", "AAAA", "bm90IGEgdG9rZW4"} {
		_, _, err := s.List(ctx, jobs.ListParams{PageToken: tok})
		wantErr(t, fmt.Sprintf("List with page token %q", tok), err, jobs.ErrInvalidArgument)
	}
	_, _, err := s.List(ctx, jobs.ListParams{State: "DONE"})
	wantErr(t, "List with an unknown state", err, jobs.ErrInvalidArgument)
	_, _, err = s.List(ctx, jobs.ListParams{PageSize: -1})
	wantErr(t, "List with a negative page size", err, jobs.ErrInvalidArgument)
}

func testOutboxStats(ctx context.Context, t *testing.T, s jobs.Store) {
	n, oldest, err := s.OutboxStats(ctx)
	if err != nil || n != 0 || !oldest.IsZero() {
		t.Fatalf("OutboxStats of an empty store = %d, %v, %v; want 0, zero time", n, oldest, err)
	}
	a := enqueue(ctx, t, s, job("test.v1.S"))
	b := enqueue(ctx, t, s, job("test.v1.S"))
	n, oldest, err = s.OutboxStats(ctx)
	if err != nil || n != 2 || !oldest.Equal(a.CreateTime) {
		t.Fatalf("OutboxStats = %d, %v, %v; want 2, %v", n, oldest, err, a.CreateTime)
	}
	if err := s.MarkSent(ctx, []string{a.ID}); err != nil {
		t.Fatal(err)
	}
	n, oldest, err = s.OutboxStats(ctx)
	if err != nil || n != 1 || !oldest.Equal(b.CreateTime) {
		t.Fatalf("OutboxStats after MarkSent = %d, %v, %v; want 1, %v", n, oldest, err, b.CreateTime)
	}
}

func testDeleteFinished(ctx context.Context, t *testing.T, s jobs.Store) {
	queued := inState(ctx, t, s, jobs.Queued)
	running := inState(ctx, t, s, jobs.Running)
	old := inState(ctx, t, s, jobs.Succeeded)
	// Wait (without sleeping) until the clock is past old's EndTime, so that
	// the next jobs end strictly later.
	for !time.Now().After(old.EndTime.Add(2 * time.Microsecond)) {
	}
	failed := inState(ctx, t, s, jobs.Failed)
	cancelled := inState(ctx, t, s, jobs.Cancelled)
	if !old.EndTime.Before(failed.EndTime) {
		t.Fatalf("EndTimes %v and %v: want the first earlier", old.EndTime, failed.EndTime)
	}
	outboxBefore, _, err := s.OutboxStats(ctx)
	if err != nil {
		t.Fatal(err)
	}

	n, err := s.DeleteFinished(ctx, failed.EndTime)
	if err != nil || n != 1 {
		t.Fatalf("DeleteFinished(EndTime of the second finished job) = %d, %v; want 1", n, err)
	}
	_, err = s.Get(ctx, old.ID)
	wantErr(t, "Get of a deleted job", err, jobs.ErrNotFound)
	outboxAfter, _, err := s.OutboxStats(ctx)
	if err != nil || outboxAfter != outboxBefore-1 {
		t.Fatalf("OutboxStats after deleting a job whose entry was never sent = %d, %v; want %d", outboxAfter, err, outboxBefore-1)
	}
	for _, j := range []*jobs.Job{queued, running, failed, cancelled} {
		get(ctx, t, s, j.ID)
	}

	n, err = s.DeleteFinished(ctx, time.Now().Add(time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("DeleteFinished(future) = %d, %v; want 2 (failed and cancelled)", n, err)
	}
	for _, j := range []*jobs.Job{old, failed, cancelled} {
		if ev := events(ctx, t, s, j.ID); len(ev) != 0 {
			t.Errorf("Events of deleted job %s = %+v; want none", j.ID, ev)
		}
	}
	if ev := events(ctx, t, s, running.ID); len(ev) != 2 {
		t.Errorf("Events of running job %s after DeleteFinished = %+v; want its 2 (QUEUED, RUNNING)", running.ID, ev)
	}
	for _, j := range []*jobs.Job{queued, running} {
		sameJob(t, "unfinished job after DeleteFinished", get(ctx, t, s, j.ID), j)
	}
	list, _, err := s.List(ctx, jobs.ListParams{})
	if err != nil || len(list) != 2 {
		t.Fatalf("List after DeleteFinished = %d jobs, %v; want 2", len(list), err)
	}
	n, err = s.DeleteFinished(ctx, time.Now().Add(time.Hour))
	if err != nil || n != 0 {
		t.Fatalf("second DeleteFinished = %d, %v; want 0", n, err)
	}
}

func events(ctx context.Context, t *testing.T, s jobs.Store, id string) []jobs.Event {
	t.Helper()
	ev, err := s.Events(ctx, id)
	if err != nil {
		t.Fatalf("Events(%s): %v", id, err)
	}
	return ev
}

// wantEvents checks the timeline of j: states, attempts and messages in
// order, each time in UTC and not before the previous one, the last one at
// the job's UpdateTime.
func wantEvents(ctx context.Context, t *testing.T, s jobs.Store, j *jobs.Job, want []jobs.Event) {
	t.Helper()
	got := events(ctx, t, s, j.ID)
	strip := func(es []jobs.Event) []jobs.Event {
		out := make([]jobs.Event, len(es))
		for i, e := range es {
			out[i] = jobs.Event{State: e.State, Attempt: e.Attempt, Message: e.Message}
		}
		return out
	}
	if !slices.Equal(strip(got), want) {
		t.Fatalf("Events(%s) = %+v; want (ignoring Time) %+v", j.ID, got, want)
	}
	for i, e := range got {
		if e.Time.Location() != time.UTC {
			t.Errorf("event %d time %v is not in UTC", i, e.Time)
		}
		if i > 0 && e.Time.Before(got[i-1].Time) {
			t.Errorf("event %d at %v is before event %d at %v", i, e.Time, i-1, got[i-1].Time)
		}
	}
	if last := got[len(got)-1]; !last.Time.Equal(j.UpdateTime) {
		t.Errorf("last event at %v; want the job's UpdateTime %v", last.Time, j.UpdateTime)
	}
}

func testEventsRetried(ctx context.Context, t *testing.T, s jobs.Store) {
	j := enqueue(ctx, t, s, job("test.v1.Events"))
	wantEvents(ctx, t, s, j, []jobs.Event{{State: jobs.Queued}})
	steps := []func() (*jobs.Job, error){
		func() (*jobs.Job, error) { return s.Start(ctx, sp(j.ID, 1)) },
		// Progress and a redelivered Start of the same attempt change
		// neither state nor attempt: no events.
		func() (*jobs.Job, error) {
			return nil, s.Progress(ctx, jobs.ProgressParams{ID: j.ID, Fraction: 0.5, Message: "half"})
		},
		func() (*jobs.Job, error) { return s.Start(ctx, sp(j.ID, 1)) },
		func() (*jobs.Job, error) {
			return s.Fail(ctx, jobs.FailParams{ID: j.ID, Code: 14, Message: "backend down", Retry: true})
		},
		func() (*jobs.Job, error) { return s.Start(ctx, sp(j.ID, 2)) },
		func() (*jobs.Job, error) {
			return s.Succeed(ctx, jobs.SucceedParams{ID: j.ID, ResultType: "test.v1.Result", Result: []byte{1}})
		},
	}
	for i, step := range steps {
		got, err := step()
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got != nil {
			j = got
		}
	}
	wantEvents(ctx, t, s, j, []jobs.Event{
		{State: jobs.Queued},
		{State: jobs.Running, Attempt: 1},
		{State: jobs.Queued, Attempt: 1, Message: "backend down"},
		{State: jobs.Running, Attempt: 2},
		{State: jobs.Succeeded, Attempt: 2},
	})

	// A failed transition records nothing.
	if _, err := s.Cancel(ctx, j.ID); !errors.Is(err, jobs.ErrConflict) {
		t.Fatalf("Cancel of a succeeded job: err = %v, want ErrConflict", err)
	}
	if ev := events(ctx, t, s, j.ID); len(ev) != 5 {
		t.Fatalf("Events after a refused Cancel = %+v; want the same 5", ev)
	}
	if ev := events(ctx, t, s, "no-such-job"); len(ev) != 0 {
		t.Fatalf("Events of a missing job = %+v; want none", ev)
	}
	_, err := s.Events(ctx, "")
	wantErr(t, "Events with an empty ID", err, jobs.ErrInvalidArgument)
}

func testEventsCancelled(ctx context.Context, t *testing.T, s jobs.Store) {
	j := inState(ctx, t, s, jobs.Running)
	j, err := s.Cancel(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantEvents(ctx, t, s, j, []jobs.Event{{State: jobs.Queued}, {State: jobs.Running, Attempt: 1}, {State: jobs.Cancelled, Attempt: 1}})

	// A final failure from Queued carries its error; Ensure records Queued.
	e, err := s.Ensure(ctx, jobs.EnsureParams{Job: jobs.Job{ID: "events-ensured", Type: "test.v1.Events"}})
	if err != nil {
		t.Fatal(err)
	}
	if e, err = s.Fail(ctx, jobs.FailParams{ID: e.ID, Code: 3, Message: "undecodable"}); err != nil {
		t.Fatal(err)
	}
	wantEvents(ctx, t, s, e, []jobs.Event{{State: jobs.Queued}, {State: jobs.Failed, Message: "undecodable"}})
}

func testSubscribe(ctx context.Context, t *testing.T, s jobs.Store) {
	j := enqueue(ctx, t, s, job("test.v1.Watch"))
	changed, cancel := s.Subscribe(j.ID)
	defer cancel()
	other, cancelOther := s.Subscribe("some-other-job")
	defer cancelOther()

	steps := []struct {
		name string
		do   func() error
	}{
		{"Start", func() error { _, err := s.Start(ctx, sp(j.ID, 1)); return err }},
		{"Progress", func() error { return s.Progress(ctx, jobs.ProgressParams{ID: j.ID, Fraction: 0.5}) }},
		{"Succeed", func() error { _, err := s.Succeed(ctx, jobs.SucceedParams{ID: j.ID}); return err }},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		await(t, "after "+st.name, changed)
	}
	select {
	case <-other:
		t.Fatalf("a subscriber of another job was woken")
	default:
	}

	// After cancel, a change no longer reaches the channel. A second
	// subscription of the same job tells when the change has been fanned out.
	k := enqueue(ctx, t, s, job("test.v1.Watch"))
	first, cancelFirst := s.Subscribe(k.ID)
	second, cancelSecond := s.Subscribe(k.ID)
	defer cancelSecond()
	cancelFirst()
	cancelFirst() // idempotent
	// A value sent before cancel (e.g. a late one for the Enqueue) may wait.
	select {
	case <-first:
	default:
	}
	if _, err := s.Cancel(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	await(t, "live subscription after Cancel", second)
	select {
	case <-first:
		t.Fatalf("a cancelled subscription received a notification")
	default:
	}
}

func testPeer(ctx context.Context, t *testing.T, s jobs.Store, f Features) {
	if f.NewPeer == nil {
		t.Skip("the store is not shared between replicas (Features.NewPeer is nil); same-store Subscribe is covered by Subscribe")
	}
	peer := f.NewPeer(t, s)
	// Subscribed before the job exists, so that each change is exactly one
	// notification: every await below is answered by the change before it.
	const id = "peer-job-1"
	changed, cancel := peer.Subscribe(id)
	defer cancel()
	j := enqueue(ctx, t, s, jobs.Job{ID: id, Type: "test.v1.Peer"})
	await(t, "other replica after Enqueue", changed)
	sameJob(t, "Get on the other replica", get(ctx, t, peer, j.ID), j)
	started, err := s.Start(ctx, sp(j.ID, 1))
	if err != nil {
		t.Fatal(err)
	}
	await(t, "other replica after Start", changed)
	sameJob(t, "Get on the other replica after Start", get(ctx, t, peer, j.ID), started)

	// And the other way round.
	const id2 = "peer-job-2"
	mine, cancelMine := s.Subscribe(id2)
	defer cancelMine()
	k, _, err := peer.Enqueue(ctx, jobs.EnqueueParams{Job: jobs.Job{ID: id2, Type: "test.v1.Peer"}})
	if err != nil {
		t.Fatal(err)
	}
	await(t, "first replica after the other's Enqueue", mine)
	if _, err := peer.Cancel(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	await(t, "first replica after the other's Cancel", mine)
	if got := get(ctx, t, s, k.ID); got.State != jobs.Cancelled {
		t.Fatalf("state after the other replica's Cancel: %s", got.State)
	}
}

func testTimes(ctx context.Context, t *testing.T, s jobs.Store) {
	runAfter := time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.FixedZone("X", 3600))
	j := enqueue(ctx, t, s, jobs.Job{Type: "test.v1.T", RunAfter: runAfter})
	want := time.Date(2030, 1, 2, 2, 4, 5, 123456000, time.UTC)
	if !j.RunAfter.Equal(want) || j.RunAfter.Location() != time.UTC {
		t.Fatalf("RunAfter = %v, want %v (UTC, microseconds)", j.RunAfter, want)
	}
	r, err := s.Start(ctx, sp(j.ID, 1))
	if err != nil {
		t.Fatal(err)
	}
	r, err = s.Succeed(ctx, jobs.SucceedParams{ID: r.ID})
	if err != nil {
		t.Fatal(err)
	}
	for name, tm := range map[string]time.Time{"RunAfter": r.RunAfter, "CreateTime": r.CreateTime,
		"StartTime": r.StartTime, "EndTime": r.EndTime, "UpdateTime": r.UpdateTime} {
		if tm.IsZero() || tm.Location() != time.UTC || tm.Nanosecond()%1000 != 0 {
			t.Fatalf("%s = %v: want a UTC time in whole microseconds", name, tm)
		}
	}
	sameJob(t, "Get", get(ctx, t, s, j.ID), r)
}

func testClose(ctx context.Context, t *testing.T, s jobs.Store) {
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	j := enqueue(ctx, t, s, job("test.v1.Close"))
	changed, cancel := s.Subscribe(j.ID)
	defer cancel()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// A notification may still be pending (e.g. the Enqueue's, delivered
	// late); after it the channel must read as closed.
	timeout := time.After(wait)
	for open := true; open; {
		select {
		case _, open = <-changed:
		case <-timeout:
			t.Fatalf("Subscribe channel not closed by Close")
		}
	}
	wantErr(t, "Ping after Close", s.Ping(ctx), jobs.ErrClosed)
	_, err := s.Get(ctx, j.ID)
	wantErr(t, "Get after Close", err, jobs.ErrClosed)
	_, _, err = s.Enqueue(ctx, jobs.EnqueueParams{Job: job("test.v1.Close")})
	wantErr(t, "Enqueue after Close", err, jobs.ErrClosed)
	_, err = s.Start(ctx, sp(j.ID, 1))
	wantErr(t, "Start after Close", err, jobs.ErrClosed)
	_, _, err = s.List(ctx, jobs.ListParams{})
	wantErr(t, "List after Close", err, jobs.ErrClosed)
	_, err = s.ClaimOutbox(ctx, jobs.ClaimOutboxParams{Limit: 10, Owner: "test", LeaseFor: time.Minute})
	wantErr(t, "ClaimOutbox after Close", err, jobs.ErrClosed)
	_, err = s.Counts(ctx)
	wantErr(t, "Counts after Close", err, jobs.ErrClosed)
	_, err = s.Heartbeat(ctx, jobs.HeartbeatParams{Leases: []jobs.LeaseRef{{ID: j.ID, Lease: "x"}}, LeaseFor: time.Minute})
	wantErr(t, "Heartbeat after Close", err, jobs.ErrClosed)
	_, err = s.Rescue(ctx, jobs.RescueParams{QueuedBefore: time.Now(), LapsedBefore: time.Now(), Limit: 10})
	wantErr(t, "Rescue after Close", err, jobs.ErrClosed)
	_, err = s.DeleteFinished(ctx, time.Now())
	wantErr(t, "DeleteFinished after Close", err, jobs.ErrClosed)
}

func testMessages(ctx context.Context, t *testing.T, s jobs.Store) {
	j := inState(ctx, t, s, jobs.Running)
	if err := s.Progress(ctx, jobs.ProgressParams{ID: j.ID, Fraction: 0.1, Message: "a\x00b\xffc"}); err != nil {
		t.Fatalf("Progress with a NUL byte and bad UTF-8 in the message: %v", err)
	}
	got := get(ctx, t, s, j.ID)
	if want := "a\uFFFDb\uFFFDc"; got.ProgressMessage != want {
		t.Fatalf("ProgressMessage = %q, want %q (NUL and bad UTF-8 replaced)", got.ProgressMessage, want)
	}
	f, err := s.Fail(ctx, jobs.FailParams{ID: j.ID, Code: 2, Message: "boom\x00"})
	if err != nil {
		t.Fatalf("Fail with a NUL byte in the message: %v", err)
	}
	if want := "boom\uFFFD"; f.ErrorMessage != want {
		t.Fatalf("ErrorMessage = %q, want %q", f.ErrorMessage, want)
	}
	_, err = s.Get(ctx, "x\x00")
	wantErr(t, "Get with a NUL byte in the ID", err, jobs.ErrInvalidArgument)
	_, _, err = s.List(ctx, jobs.ListParams{Type: "\xff"})
	wantErr(t, "List with bad UTF-8 in Type", err, jobs.ErrInvalidArgument)
}

// testRace races Succeed against Cancel on many running jobs at once: for
// each job exactly one wins, the other gets ErrConflict, and the job ends in
// the winner's state.
func testRace(ctx context.Context, t *testing.T, s jobs.Store) {
	const n = 40
	running := make([]*jobs.Job, n)
	for i := range running {
		running[i] = inState(ctx, t, s, jobs.Running)
	}
	type outcome struct{ succeedErr, cancelErr error }
	results := make([]outcome, n)
	var wg sync.WaitGroup
	for i, j := range running {
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, results[i].succeedErr = s.Succeed(ctx, jobs.SucceedParams{ID: j.ID})
		}()
		go func() {
			defer wg.Done()
			_, results[i].cancelErr = s.Cancel(ctx, j.ID)
		}()
	}
	wg.Wait()
	for i, r := range results {
		final := get(ctx, t, s, running[i].ID)
		switch {
		case r.succeedErr == nil && errors.Is(r.cancelErr, jobs.ErrConflict):
			if final.State != jobs.Succeeded {
				t.Fatalf("job %d: Succeed won but state is %s", i, final.State)
			}
		case r.cancelErr == nil && errors.Is(r.succeedErr, jobs.ErrConflict):
			if final.State != jobs.Cancelled {
				t.Fatalf("job %d: Cancel won but state is %s", i, final.State)
			}
		default:
			t.Fatalf("job %d: Succeed err %v, Cancel err %v; want exactly one to win and the other ErrConflict", i, r.succeedErr, r.cancelErr)
		}
	}
}
