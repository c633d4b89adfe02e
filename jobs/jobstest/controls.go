package jobstest

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/courierq/courier/jobs"
)

// The tests of the job controls: jobs.Schedules, jobs.TypePauser and
// jobs.Snoozer. A store that lacks one skips its tests, saying so.

func exerciseControls(ctx context.Context, t *testing.T, newStore func(t *testing.T, now func() time.Time) jobs.Store, f Features) {
	tests := []struct {
		name string
		fn   func(ctx context.Context, t *testing.T, s jobs.Store, clk *Clock, f Features)
	}{
		{"Schedules", testSchedules},
		{"SchedulesRejectBadInput", testSchedulesBadInput},
		{"FireSchedule", testFireSchedule},
		{"FireScheduleConcurrently", testFireConcurrently},
		{"PausedTypes", testPausedTypes},
		{"Snooze", testSnooze},
		{"StartSucceed", testStartSucceed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clk := NewClock(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC))
			tt.fn(ctx, t, newStore(t, clk.Now), clk, f)
		})
	}
}

func schedulesOf(t *testing.T, s jobs.Store) jobs.Schedules {
	t.Helper()
	sc, ok := s.(jobs.Schedules)
	if !ok {
		t.Skipf("%T does not implement jobs.Schedules", s)
	}
	return sc
}

func sched(name string, next time.Time) jobs.Schedule {
	return jobs.Schedule{Name: name, Type: "test.v1.Tick", Payload: []byte("tick"), Labels: map[string]string{"k": "v"},
		MaxAttempts: 2, Cron: "*/5 * * * *", TimeZone: "Europe/Paris", Missed: jobs.MissedCatchUp, NextTime: next}
}

func sameSchedule(t *testing.T, what string, got, want *jobs.Schedule) {
	t.Helper()
	g, w := *got, *want
	if !maps.Equal(g.Labels, w.Labels) {
		t.Fatalf("%s: labels %v, want %v", what, g.Labels, w.Labels)
	}
	g.Labels, w.Labels = nil, nil
	if fmt.Sprint(g) != fmt.Sprint(w) {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, g, w)
	}
}

func testSchedules(ctx context.Context, t *testing.T, s jobs.Store, clk *Clock, _ Features) {
	ss := schedulesOf(t, s)
	now := clk.Now()
	next := now.Add(5 * time.Minute).Truncate(time.Minute)
	in := sched("b-report", next)
	got, err := ss.CreateSchedule(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != in.Name || got.Type != in.Type || string(got.Payload) != "tick" || got.Cron != in.Cron || got.TimeZone != in.TimeZone ||
		got.Every != 0 || got.Missed != jobs.MissedCatchUp || got.MaxAttempts != 2 || got.Paused || got.FromConfig ||
		!got.NextTime.Equal(next) || !got.LastTime.IsZero() || got.LastJobID != "" || !got.CreateTime.Equal(now) || !got.UpdateTime.Equal(now) {
		t.Fatalf("CreateSchedule returned %+v for %+v", got, in)
	}
	g, err := ss.GetSchedule(ctx, in.Name)
	if err != nil {
		t.Fatal(err)
	}
	sameSchedule(t, "GetSchedule", g, got)
	_, err = ss.CreateSchedule(ctx, in)
	wantErr(t, "CreateSchedule of a taken name", err, jobs.ErrExists)

	// PutSchedule: new, then the same spec (NextTime kept), then a new spec.
	every := jobs.Schedule{Name: "a-every", Type: "test.v1.Tick", Every: 90 * time.Second, NextTime: next}
	p, err := ss.PutSchedule(ctx, every)
	if err != nil {
		t.Fatal(err)
	}
	if !p.FromConfig || p.Every != 90*time.Second || p.Missed != jobs.MissedSkip || !p.NextTime.Equal(next) {
		t.Fatalf("PutSchedule returned %+v", p)
	}
	clk.Add(time.Minute)
	every.Payload, every.NextTime = []byte("new"), next.Add(time.Hour)
	if p, err = ss.PutSchedule(ctx, every); err != nil {
		t.Fatal(err)
	}
	if string(p.Payload) != "new" || !p.NextTime.Equal(next) || !p.CreateTime.Equal(now) || !p.UpdateTime.Equal(clk.Now()) {
		t.Fatalf("PutSchedule of the same spec returned %+v: want the new payload and NextTime kept (%v)", p, next)
	}
	every.Every = time.Minute
	if p, err = ss.PutSchedule(ctx, every); err != nil {
		t.Fatal(err)
	}
	if !p.NextTime.Equal(every.NextTime) || p.Every != time.Minute {
		t.Fatalf("PutSchedule of a new spec returned %+v: want NextTime %v", p, every.NextTime)
	}

	list, err := ss.ListSchedules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "a-every" || list[1].Name != "b-report" {
		t.Fatalf("ListSchedules = %+v, want a-every, b-report", list)
	}

	// Pause keeps NextTime; resume with a new one sets it.
	ps, err := ss.PauseSchedule(ctx, in.Name, true, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if !ps.Paused || !ps.NextTime.Equal(next) {
		t.Fatalf("PauseSchedule returned %+v", ps)
	}
	later := next.Add(24 * time.Hour)
	if ps, err = ss.PauseSchedule(ctx, in.Name, false, later); err != nil {
		t.Fatal(err)
	}
	if ps.Paused || !ps.NextTime.Equal(later) {
		t.Fatalf("resumed schedule is %+v, want NextTime %v", ps, later)
	}
	_, err = ss.PauseSchedule(ctx, "nope", true, time.Time{})
	wantErr(t, "PauseSchedule of a missing schedule", err, jobs.ErrNotFound)

	if err := ss.DeleteSchedule(ctx, in.Name); err != nil {
		t.Fatal(err)
	}
	_, err = ss.GetSchedule(ctx, in.Name)
	wantErr(t, "GetSchedule after DeleteSchedule", err, jobs.ErrNotFound)
	wantErr(t, "DeleteSchedule again", ss.DeleteSchedule(ctx, in.Name), jobs.ErrNotFound)
}

func testSchedulesBadInput(ctx context.Context, t *testing.T, s jobs.Store, clk *Clock, _ Features) {
	ss := schedulesOf(t, s)
	next := clk.Now().Add(time.Minute)
	for name, sc := range map[string]jobs.Schedule{
		"no name":           {Type: "t.v1.T", Every: time.Minute, NextTime: next},
		"no type":           {Name: "x", Every: time.Minute, NextTime: next},
		"neither":           {Name: "x", Type: "t.v1.T", NextTime: next},
		"both":              {Name: "x", Type: "t.v1.T", Cron: "* * * * *", Every: time.Minute, NextTime: next},
		"negative every":    {Name: "x", Type: "t.v1.T", Every: -time.Minute, NextTime: next},
		"bad missed":        {Name: "x", Type: "t.v1.T", Every: time.Minute, Missed: "later", NextTime: next},
		"no next time":      {Name: "x", Type: "t.v1.T", Every: time.Minute},
		"negative attempts": {Name: "x", Type: "t.v1.T", Every: time.Minute, MaxAttempts: -1, NextTime: next},
		"NUL in name":       {Name: "x\x00", Type: "t.v1.T", Every: time.Minute, NextTime: next},
	} {
		_, err := ss.CreateSchedule(ctx, sc)
		wantErr(t, "CreateSchedule with "+name, err, jobs.ErrInvalidArgument)
	}
	_, _, err := ss.FireSchedule(ctx, jobs.FireParams{Name: "x", Tick: next, Next: next})
	wantErr(t, "FireSchedule with Next not after Tick", err, jobs.ErrInvalidArgument)
	list, err := ss.ListSchedules(ctx)
	if err != nil || len(list) != 0 {
		t.Fatalf("ListSchedules after refused creates = %v, %v; want none", list, err)
	}
}

func testFireSchedule(ctx context.Context, t *testing.T, s jobs.Store, clk *Clock, _ Features) {
	ss := schedulesOf(t, s)
	t0 := clk.Now().Truncate(time.Minute).Add(time.Minute)
	if _, err := ss.CreateSchedule(ctx, sched("fire", t0)); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Minute)
	j := jobs.Job{ID: "fire-1", Type: "test.v1.Tick", Payload: []byte("tick"), IdempotencyKey: "schedule:fire:1"}
	got, fired, err := ss.FireSchedule(ctx, jobs.FireParams{Name: "fire", Tick: t0, Next: t0.Add(5 * time.Minute), Job: j})
	if err != nil || !fired || got == nil || got.ID != "fire-1" || got.State != jobs.Queued || got.IdempotencyKey != j.IdempotencyKey {
		t.Fatalf("FireSchedule = %+v, %v, %v; want job fire-1 queued", got, fired, err)
	}
	sameJob(t, "Get of the fired job", get(ctx, t, s, "fire-1"), got)
	wantIDs(t, "outbox after a fire", claim(ctx, t, s, "r", 10, time.Minute), []string{"fire-1"})
	sc, err := ss.GetSchedule(ctx, "fire")
	if err != nil {
		t.Fatal(err)
	}
	if !sc.NextTime.Equal(t0.Add(5*time.Minute)) || !sc.LastTime.Equal(t0) || sc.LastJobID != "fire-1" {
		t.Fatalf("schedule after a fire: %+v", sc)
	}
	// The same tick again (another replica, late): nothing.
	j.ID = "fire-dup"
	got, fired, err = ss.FireSchedule(ctx, jobs.FireParams{Name: "fire", Tick: t0, Next: t0.Add(5 * time.Minute), Job: j})
	if err != nil || fired || got != nil {
		t.Fatalf("FireSchedule of a fired tick = %+v, %v, %v; want nothing", got, fired, err)
	}
	if _, err := s.Get(ctx, "fire-dup"); err == nil {
		t.Fatal("a refused FireSchedule recorded its job")
	}
	// A skip moves on without a job.
	t1 := t0.Add(5 * time.Minute)
	got, fired, err = ss.FireSchedule(ctx, jobs.FireParams{Name: "fire", Tick: t1, Next: t1.Add(5 * time.Minute)})
	if err != nil || !fired || got != nil {
		t.Fatalf("FireSchedule skip = %+v, %v, %v; want fired, no job", got, fired, err)
	}
	if sc, _ = ss.GetSchedule(ctx, "fire"); !sc.LastTime.Equal(t1) || sc.LastJobID != "fire-1" {
		t.Fatalf("schedule after a skip: %+v", sc)
	}
	// A tick whose job key is taken moves on, and enqueues nothing more.
	t2 := t1.Add(5 * time.Minute)
	j.ID = "fire-3"
	j.IdempotencyKey = "schedule:fire:1"
	got, fired, err = ss.FireSchedule(ctx, jobs.FireParams{Name: "fire", Tick: t2, Next: t2.Add(5 * time.Minute), Job: j})
	if err != nil || !fired || got != nil {
		t.Fatalf("FireSchedule with a taken key = %+v, %v, %v; want fired, no job", got, fired, err)
	}
	// A paused schedule does not fire.
	t3 := t2.Add(5 * time.Minute)
	if _, err := ss.PauseSchedule(ctx, "fire", true, time.Time{}); err != nil {
		t.Fatal(err)
	}
	j.ID, j.IdempotencyKey = "fire-4", "schedule:fire:4"
	if got, fired, err = ss.FireSchedule(ctx, jobs.FireParams{Name: "fire", Tick: t3, Next: t3.Add(time.Minute), Job: j}); err != nil || fired || got != nil {
		t.Fatalf("FireSchedule of a paused schedule = %+v, %v, %v; want nothing", got, fired, err)
	}
	if _, _, err := ss.FireSchedule(ctx, jobs.FireParams{Name: "missing", Tick: t3, Next: t3.Add(time.Minute), Job: j}); err != nil {
		t.Fatalf("FireSchedule of a missing schedule: %v; want no error, not fired", err)
	}
	wantCounts(ctx, t, s, map[string][5]int{"test.v1.Tick": {1, 0, 0, 0, 0}}, map[string]time.Time{"test.v1.Tick": clk.Now()})
}

func testFireConcurrently(ctx context.Context, t *testing.T, s jobs.Store, clk *Clock, f Features) {
	ss := schedulesOf(t, s)
	stores := []jobs.Schedules{ss}
	if f.NewPeer != nil {
		stores = append(stores, schedulesOf(t, f.NewPeer(t, s)))
	}
	t0 := clk.Now()
	if _, err := ss.CreateSchedule(ctx, jobs.Schedule{Name: "race", Type: "test.v1.Race", Every: time.Second, NextTime: t0}); err != nil {
		t.Fatal(err)
	}
	const ticks, racers = 20, 8
	var fires, jobsMade int
	for i := range ticks {
		tick := t0.Add(time.Duration(i) * time.Second)
		var (
			wg sync.WaitGroup
			mu sync.Mutex
		)
		for r := range racers {
			wg.Go(func() {
				j := jobs.Job{ID: fmt.Sprintf("race-%d-%d", i, r), Type: "test.v1.Race", IdempotencyKey: fmt.Sprintf("schedule:race:%d", i)}
				got, fired, err := stores[r%len(stores)].FireSchedule(ctx, jobs.FireParams{Name: "race", Tick: tick, Next: tick.Add(time.Second), Job: j})
				if err != nil {
					t.Errorf("FireSchedule: %v", err)
				}
				mu.Lock()
				defer mu.Unlock()
				if fired {
					fires++
				}
				if got != nil {
					jobsMade++
				}
			})
		}
		wg.Wait()
	}
	if fires != ticks || jobsMade != ticks {
		t.Fatalf("%d racers on each of %d ticks fired %d times and made %d jobs; want %d of each", racers, ticks, fires, jobsMade, ticks)
	}
	list, _, err := s.List(ctx, jobs.ListParams{Type: "test.v1.Race", PageSize: 100})
	if err != nil || len(list) != ticks {
		t.Fatalf("List = %d jobs, %v; want %d", len(list), err, ticks)
	}
}

func testPausedTypes(ctx context.Context, t *testing.T, s jobs.Store, clk *Clock, _ Features) {
	tp, ok := s.(jobs.TypePauser)
	if !ok {
		t.Skipf("%T does not implement jobs.TypePauser", s)
	}
	t0 := clk.Now()
	p, err := tp.PauseType(ctx, "test.v1.B")
	if err != nil || p.Type != "test.v1.B" || !p.Since.Equal(t0) {
		t.Fatalf("PauseType = %+v, %v", p, err)
	}
	clk.Add(time.Minute)
	if p, err = tp.PauseType(ctx, "test.v1.B"); err != nil || !p.Since.Equal(t0) {
		t.Fatalf("PauseType again = %+v, %v; want Since kept at %v", p, err, t0)
	}
	if _, err := tp.PauseType(ctx, "test.v1.A"); err != nil {
		t.Fatal(err)
	}
	list, err := tp.PausedTypes(ctx)
	if err != nil || len(list) != 2 || list[0].Type != "test.v1.A" || list[1].Type != "test.v1.B" || !list[0].Since.Equal(clk.Now()) {
		t.Fatalf("PausedTypes = %+v, %v", list, err)
	}
	if resumed, err := tp.ResumeType(ctx, "test.v1.A"); err != nil || !resumed {
		t.Fatalf("ResumeType = %v, %v; want resumed", resumed, err)
	}
	if resumed, err := tp.ResumeType(ctx, "test.v1.A"); err != nil || resumed {
		t.Fatalf("ResumeType again = %v, %v; want not resumed", resumed, err)
	}
	if list, err = tp.PausedTypes(ctx); err != nil || len(list) != 1 || list[0].Type != "test.v1.B" {
		t.Fatalf("PausedTypes after resume = %+v, %v", list, err)
	}
	_, err = tp.PauseType(ctx, "")
	wantErr(t, "PauseType of an empty type", err, jobs.ErrInvalidArgument)
}

func testSnooze(ctx context.Context, t *testing.T, s jobs.Store, clk *Clock, _ Features) {
	sn, ok := s.(jobs.Snoozer)
	if !ok {
		t.Skipf("%T does not implement jobs.Snoozer", s)
	}
	j := enqueue(ctx, t, s, jobs.Job{ID: "snooze-1", Type: "test.v1.Snooze", MaxAttempts: 3})
	claim(ctx, t, s, "r", 10, time.Minute)
	start(ctx, t, s, sp(j.ID, 1))
	until := clk.Now().Add(3 * time.Hour)
	// While a relay holds the entry it published (before its MarkSent),
	// Snooze refuses, changing nothing: MarkSent would remove the new entry.
	_, err := sn.Snooze(ctx, jobs.SnoozeParams{ID: j.ID, Lease: "lease-1", Until: until})
	wantErr(t, "Snooze while the outbox entry is claimed", err, jobs.ErrOutboxBusy)
	if g := get(ctx, t, s, j.ID); g.State != jobs.Running || g.Lease != "lease-1" {
		t.Fatalf("job after a refused Snooze: %+v", g)
	}
	if err := s.MarkSent(ctx, []string{j.ID}); err != nil {
		t.Fatal(err)
	}
	got, err := sn.Snooze(ctx, jobs.SnoozeParams{ID: j.ID, Lease: "lease-1", Until: until, Message: "snoozed"})
	if err != nil {
		t.Fatal(err)
	}
	if got.State != jobs.Queued || got.Attempt != 0 || !got.RunAfter.Equal(until) || got.Lease != "" || got.ErrorMessage != "snoozed" {
		t.Fatalf("Snooze returned %+v; want Queued, attempt 0, RunAfter %v, no lease", got, until)
	}
	sameJob(t, "Get after Snooze", get(ctx, t, s, j.ID), got)
	wantIDs(t, "outbox claim before the snooze ends", claim(ctx, t, s, "r", 10, time.Minute), nil)
	clk.Add(3 * time.Hour)
	wantIDs(t, "outbox claim once the snooze ended", claim(ctx, t, s, "r", 10, time.Minute), []string{j.ID})
	if err := s.MarkSent(ctx, []string{j.ID}); err != nil {
		t.Fatal(err)
	}
	// The snoozed attempt did not count: the next run is attempt 1 again.
	if r := start(ctx, t, s, jobs.StartParams{ID: j.ID, Attempt: 1, Lease: "l2", LeaseFor: time.Hour}); r.Attempt != 1 {
		t.Fatalf("Start after a snooze: attempt %d, want 1", r.Attempt)
	}
	// Retry later counts the attempt.
	got, err = sn.Snooze(ctx, jobs.SnoozeParams{ID: j.ID, Lease: "l2", Until: clk.Now().Add(time.Hour), CountAttempt: true, Code: 14, Message: "later"})
	if err != nil || got.Attempt != 1 || got.ErrorCode != 14 {
		t.Fatalf("Snooze counting the attempt = %+v, %v; want attempt 1, code 14", got, err)
	}
	_, err = sn.Snooze(ctx, jobs.SnoozeParams{ID: j.ID, Lease: "l2", Until: clk.Now().Add(time.Hour)})
	wantErr(t, "Snooze of a job not running", err, jobs.ErrConflict)
	_, err = sn.Snooze(ctx, jobs.SnoozeParams{ID: j.ID, Until: clk.Now()})
	wantErr(t, "Snooze without a lease", err, jobs.ErrInvalidArgument)
	wantCounts(ctx, t, s, map[string][5]int{"test.v1.Snooze": {1, 0, 0, 0, 0}}, map[string]time.Time{"test.v1.Snooze": j.CreateTime})
	evs, err := s.Events(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) < 4 || evs[2].State != jobs.Queued || evs[2].Message != "snoozed" {
		t.Fatalf("Events = %+v; want the snooze recorded as Queued with its message", evs)
	}
}

func testStartSucceed(ctx context.Context, t *testing.T, s jobs.Store, clk *Clock, _ Features) {
	ss, ok := s.(jobs.StartSucceeder)
	if !ok {
		t.Skipf("%T does not implement jobs.StartSucceeder", s)
	}
	j := enqueue(ctx, t, s, jobs.Job{ID: "quick-1", Type: "test.v1.Quick", MaxAttempts: 3})
	began := clk.Now().Add(time.Second)
	clk.Add(2 * time.Second)
	e, err := ss.StartSucceed(ctx, jobs.StartSucceedParams{ID: j.ID, Attempt: 2, Started: began, ResultType: "test.v1.Out", Result: []byte("out")})
	if err != nil {
		t.Fatal(err)
	}
	if want := (jobs.QuickEnd{Type: "test.v1.Quick", Attempt: 2, CreateTime: j.CreateTime, StartTime: began, EndTime: clk.Now()}); *e != want {
		t.Fatalf("StartSucceed returned %+v, want %+v", *e, want)
	}
	g := get(ctx, t, s, j.ID)
	if g.State != jobs.Succeeded || g.Attempt != 2 || !g.StartTime.Equal(began) || !g.EndTime.Equal(clk.Now()) ||
		g.ResultType != "test.v1.Out" || string(g.Result) != "out" || g.Lease != "" {
		t.Fatalf("job after StartSucceed: %+v; want Succeeded, attempt 2, started %v, ended %v, the result", g, began, clk.Now())
	}
	evs, err := s.Events(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 || evs[0].State != jobs.Queued || evs[1].State != jobs.Running || !evs[1].Time.Equal(began) || evs[1].Attempt != 2 ||
		evs[2].State != jobs.Succeeded || !evs[2].Time.Equal(clk.Now()) || evs[2].Attempt != 2 {
		t.Fatalf("Events after StartSucceed = %+v; want Queued, Running at %v (attempt 2), Succeeded at %v", evs, began, clk.Now())
	}
	// Only a Queued job: not twice, not a running or cancelled one.
	_, err = ss.StartSucceed(ctx, jobs.StartSucceedParams{ID: j.ID, Attempt: 1, Started: clk.Now()})
	wantErr(t, "StartSucceed of a succeeded job", err, jobs.ErrConflict)
	r := enqueue(ctx, t, s, jobs.Job{ID: "quick-2", Type: "test.v1.Quick"})
	start(ctx, t, s, sp(r.ID, 1))
	_, err = ss.StartSucceed(ctx, jobs.StartSucceedParams{ID: r.ID, Attempt: 1, Started: clk.Now()})
	wantErr(t, "StartSucceed of a running job", err, jobs.ErrConflict)
	if g := get(ctx, t, s, r.ID); g.State != jobs.Running || g.Lease != "lease-1" {
		t.Fatalf("running job after a refused StartSucceed: %+v", g)
	}
	c := enqueue(ctx, t, s, jobs.Job{ID: "quick-3", Type: "test.v1.Quick"})
	if _, err := s.Cancel(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	_, err = ss.StartSucceed(ctx, jobs.StartSucceedParams{ID: c.ID, Attempt: 1, Started: clk.Now()})
	wantErr(t, "StartSucceed of a cancelled job", err, jobs.ErrConflict)
	_, err = ss.StartSucceed(ctx, jobs.StartSucceedParams{ID: "quick-none", Attempt: 1, Started: clk.Now()})
	wantErr(t, "StartSucceed of an unknown job", err, jobs.ErrNotFound)
	_, err = ss.StartSucceed(ctx, jobs.StartSucceedParams{ID: "", Attempt: 1, Started: clk.Now()})
	wantErr(t, "StartSucceed without an ID", err, jobs.ErrInvalidArgument)
	// A retried job keeps its first StartTime; the counters and the
	// throughput count the ending.
	f := enqueue(ctx, t, s, jobs.Job{ID: "quick-4", Type: "test.v1.Quick", MaxAttempts: 3})
	first := start(ctx, t, s, sp(f.ID, 1)).StartTime
	if _, err := s.Fail(ctx, jobs.FailParams{ID: f.ID, Code: 14, Message: "again", Retry: true, Lease: "lease-1"}); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Second)
	e, err = ss.StartSucceed(ctx, jobs.StartSucceedParams{ID: f.ID, Attempt: 1, Started: clk.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if e.Attempt != 2 || !e.StartTime.Equal(first) {
		t.Fatalf("StartSucceed of a retried job returned %+v; want attempt 2, StartTime %v", *e, first)
	}
	if g := get(ctx, t, s, f.ID); g.State != jobs.Succeeded || g.Attempt != 2 || !g.StartTime.Equal(first) {
		t.Fatalf("retried job after StartSucceed: %+v; want Succeeded, attempt 2, StartTime %v", g, first)
	}
	wantCounts(ctx, t, s, map[string][5]int{"test.v1.Quick": {0, 1, 2, 0, 1}}, nil)
	pts, err := s.Throughput(ctx, jobs.ThroughputParams{Since: j.CreateTime, Step: time.Hour})
	if err != nil || len(pts) != 1 || pts[0].Succeeded != 2 {
		t.Fatalf("Throughput = %+v, %v; want 2 succeeded", pts, err)
	}
}
