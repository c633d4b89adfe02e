package ingest_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/handlers/demo"
	"github.com/courierq/courier/ingest"
	"github.com/courierq/courier/internal/testenv"
	"github.com/courierq/courier/jobs"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
	"github.com/courierq/courier/publisher"
)

// startCounter counts Store.Start calls.
type startCounter struct {
	jobs.Store
	starts atomic.Int32
}

func (s *startCounter) Start(ctx context.Context, p jobs.StartParams) (*jobs.Job, error) {
	s.starts.Add(1)
	return s.Store.Start(ctx, p)
}

// quickCounter counts StartSucceed calls.
type quickCounter struct {
	jobs.StartSucceeder
	n atomic.Int32
}

func (q *quickCounter) StartSucceed(ctx context.Context, p jobs.StartSucceedParams) (*jobs.QuickEnd, error) {
	q.n.Add(1)
	return q.StartSucceeder.StartSucceed(ctx, p)
}

// quickStack is a stack on the embedded store whose worker counts its
// Start and StartSucceed calls.
func quickStack(t *testing.T, reg *handlers.Registry, runningAfter time.Duration) (*stack, *startCounter, *quickCounter) {
	t.Helper()
	s := startStack(t, testenv.SQLite, reg, ingest.Config{}, false) // its worker never runs
	sc := &startCounter{Store: s.store}
	qc := &quickCounter{StartSucceeder: s.store.(jobs.StartSucceeder)}
	w, err := ingest.New(ingest.Config{Client: s.client, Store: sc, Registry: reg, Logger: slog.New(s.logs),
		Quick: qc, RunningAfter: runningAfter})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background()) }()
	t.Cleanup(func() {
		w.Close()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-w.Ready():
	case err := <-done:
		t.Fatalf("Run returned before ready: %v", err)
	}
	return s, sc, qc
}

func wantEvents(ctx context.Context, t *testing.T, s jobs.Store, id string, want ...jobs.State) []jobs.Event {
	t.Helper()
	evs, err := s.Events(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]jobs.State, len(evs))
	for i, e := range evs {
		got[i] = e.State
	}
	if len(got) != len(want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("events %v, want %v", got, want)
		}
	}
	return evs
}

// TestQuickRunIsOneWrite: a fast handler's start and end are recorded in
// one write (no Start), and the timeline still shows both.
func TestQuickRunIsOneWrite(t *testing.T) {
	t.Parallel()
	s, sc, qc := quickStack(t, demoRegistry(t, demo.Config{Echo: fastRetry}), time.Hour)
	ctx := testCtx(t)
	id, err := s.pub.Publish(ctx, &demov1.Echo{Message: "quick"})
	if err != nil {
		t.Fatal(err)
	}
	job := waitState(ctx, t, s.store, id, jobs.Succeeded)
	if job.State != jobs.Succeeded || job.Attempt != 1 || job.ResultType != "courier.demo.v1.EchoResult" || job.StartTime.IsZero() || job.EndTime.Before(job.StartTime) {
		t.Fatalf("job %+v; want SUCCEEDED on attempt 1 with its result, started before it ended", job)
	}
	if n, q := sc.starts.Load(), qc.n.Load(); n != 0 || q != 1 {
		t.Fatalf("%d Start and %d StartSucceed calls; want 0 and 1", n, q)
	}
	evs := wantEvents(ctx, t, s.store, id, jobs.Queued, jobs.Running, jobs.Succeeded)
	if !evs[1].Time.Equal(job.StartTime) || evs[1].Attempt != 1 {
		t.Fatalf("RUNNING event %+v; want it at the start time %v, attempt 1", evs[1], job.StartTime)
	}
}

// TestQuickRunOutlivingRunningAfterIsRecorded: a handler that runs longer
// than RunningAfter is recorded RUNNING under its lease while it runs, and
// its end then as usual.
func TestQuickRunOutlivingRunningAfterIsRecorded(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	reg := handlers.NewRegistry()
	handlers.Register(reg, func(ctx context.Context, job *handlers.Job[*demov1.Sleep]) (*demov1.SleepResult, error) {
		<-release
		return &demov1.SleepResult{}, nil
	}, fastRetry)
	s, sc, qc := quickStack(t, reg, 50*time.Millisecond)
	ctx := testCtx(t)
	id, err := s.pub.Publish(ctx, &demov1.Sleep{Duration: durationpb.New(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if job := waitState(ctx, t, s.store, id, jobs.Running); job.State != jobs.Running || job.Lease == "" {
		t.Fatalf("job %+v; want RUNNING under a lease", job)
	}
	close(release)
	if job := waitState(ctx, t, s.store, id, jobs.Succeeded); job.State != jobs.Succeeded || job.Lease != "" {
		t.Fatalf("job %+v; want SUCCEEDED, lease cleared", job)
	}
	if n, q := sc.starts.Load(), qc.n.Load(); n != 1 || q != 0 {
		t.Fatalf("%d Start and %d StartSucceed calls; want 1 and 0", n, q)
	}
	wantEvents(ctx, t, s.store, id, jobs.Queued, jobs.Running, jobs.Succeeded)
}

// TestQuickRunProgressIsRecorded: progress is recorded on a RUNNING job: a
// quick run that reports it is recorded RUNNING first.
func TestQuickRunProgressIsRecorded(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	reg := handlers.NewRegistry()
	handlers.Register(reg, func(ctx context.Context, job *handlers.Job[*demov1.Sleep]) (*demov1.SleepResult, error) {
		if err := job.Progress(ctx, 0.5, "half"); err != nil {
			return nil, err
		}
		<-release
		return &demov1.SleepResult{}, nil
	}, fastRetry)
	s, sc, _ := quickStack(t, reg, time.Hour)
	ctx := testCtx(t)
	id, err := s.pub.Publish(ctx, &demov1.Sleep{Duration: durationpb.New(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	job := waitJob(ctx, t, s.store, id, "progress 0.5", func(j *jobs.Job) bool { return j.ProgressFraction == 0.5 })
	if job.State != jobs.Running || job.ProgressFraction != 0.5 || job.ProgressMessage != "half" {
		t.Fatalf("job %+v; want RUNNING at 0.5, half", job)
	}
	close(release)
	if job := waitState(ctx, t, s.store, id, jobs.Succeeded); job.State != jobs.Succeeded {
		t.Fatalf("job %+v; want SUCCEEDED", job)
	}
	if n := sc.starts.Load(); n != 1 {
		t.Fatalf("%d Start calls; want 1", n)
	}
}

// TestQuickRunFailureIsRecordedAsUsual: a quick run whose handler fails is
// recorded RUNNING, then the failure as usual (here the last attempt: FAILED).
func TestQuickRunFailureIsRecordedAsUsual(t *testing.T) {
	t.Parallel()
	reg := handlers.NewRegistry()
	handlers.Register(reg, func(ctx context.Context, job *handlers.Job[*demov1.Sleep]) (*demov1.SleepResult, error) {
		return nil, handlers.Permanent(context.DeadlineExceeded)
	}, fastRetry)
	s, sc, qc := quickStack(t, reg, time.Hour)
	ctx := testCtx(t)
	id, err := s.pub.Publish(ctx, &demov1.Sleep{})
	if err != nil {
		t.Fatal(err)
	}
	if job := waitState(ctx, t, s.store, id, jobs.Failed); job.State != jobs.Failed || job.Attempt != 1 {
		t.Fatalf("job %+v; want FAILED on attempt 1", job)
	}
	if n, q := sc.starts.Load(), qc.n.Load(); n != 1 || q != 0 {
		t.Fatalf("%d Start and %d StartSucceed calls; want 1 and 0", n, q)
	}
	wantEvents(ctx, t, s.store, id, jobs.Queued, jobs.Running, jobs.Failed)
}

// TestDuplicateOfAQuickRunWaitsForIt: a second delivery of a job whose quick
// run is not recorded yet waits for that run in this worker, then finds the
// job ended: the handler runs once.
func TestDuplicateOfAQuickRunWaitsForIt(t *testing.T) {
	t.Parallel()
	var runs atomic.Int32
	started, release := make(chan struct{}, 2), make(chan struct{})
	reg := handlers.NewRegistry()
	handlers.Register(reg, func(ctx context.Context, job *handlers.Job[*demov1.Sleep]) (*demov1.SleepResult, error) {
		runs.Add(1)
		started <- struct{}{}
		<-release
		return &demov1.SleepResult{}, nil
	}, fastRetry)
	s, sc, _ := quickStack(t, reg, time.Hour)
	ctx := testCtx(t)
	const id = "quick-duplicate"
	for range 2 {
		if _, err := s.pub.Publish(ctx, &demov1.Sleep{}, publisher.WithID(id)); err != nil {
			t.Fatal(err)
		}
	}
	<-started
	s.logs.await(ctx, 1, "runs in this worker under another delivery", id)
	close(release)
	if job := waitState(ctx, t, s.store, id, jobs.Succeeded); job.State != jobs.Succeeded || job.Attempt != 1 {
		t.Fatalf("job %+v; want SUCCEEDED on attempt 1", job)
	}
	s.logs.await(ctx, 1, "job already ended; acked without running", id)
	if n, st := runs.Load(), sc.starts.Load(); n != 1 || st != 0 {
		t.Fatalf("the handler ran %d times, Start was called %d times; want 1 and 0", n, st)
	}
}
