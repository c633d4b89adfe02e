package workflows_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"

	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

// These tests run the whole path of a workflow job (see newStack): enqueue
// through JobService, Pub/Sub, ingest, the workflow handler, Temporal.

func TestBisectSucceedsWithProgress(t *testing.T) {
	t.Parallel()
	// The bisection holds before its 4th test (the second halving), by when
	// it has reported an intermediate progress, until the watcher below has
	// seen that progress: so the test awaits the event, not a duration.
	sawIntermediate := make(chan struct{})
	var once sync.Once
	var calls atomic.Int64
	s := newStack(t, func(ctx context.Context, _ string, _ int64) error {
		if calls.Add(1) != 4 {
			return nil
		}
		select {
		case <-sawIntermediate:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	id := s.enqueue(t, &demov1.Bisect{Good: 0, Bad: 1000, Culprit: 737}, 1)

	var progress []float64
	final := s.watch(t, id, func(j *courierv1.Job) {
		if f := j.GetProgress().GetFraction(); len(progress) == 0 || progress[len(progress)-1] != f {
			progress = append(progress, f)
		}
		if f := j.GetProgress().GetFraction(); f > 0 && f < 1 {
			once.Do(func() { close(sawIntermediate) })
		}
	})
	if final.State != courierv1.State_SUCCEEDED {
		t.Fatalf("job ended %v (%v), want SUCCEEDED", final.State, final.Error)
	}
	var res demov1.BisectResult
	if err := final.Result.UnmarshalTo(&res); err != nil {
		t.Fatalf("result: %v", err)
	}
	if res.Culprit != 737 || int(res.Steps) != len(res.Tested) || res.Steps < 3 {
		t.Errorf("result %v, want culprit 737 after a few steps", &res)
	}
	intermediate := 0
	for i, f := range progress {
		if f > 0 && f < 1 {
			intermediate++
		}
		if i > 0 && f < progress[i-1] {
			t.Errorf("progress went back: %v", progress)
		}
	}
	if intermediate == 0 {
		t.Errorf("progress seen %v: no value between 0 and 1", progress)
	}
	// The workflow ran under the job's ID and completed.
	desc, err := s.temporal.DescribeWorkflow(s.ctx, id, "")
	if err != nil {
		t.Fatal(err)
	}
	if st := desc.Status; st != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
		t.Errorf("workflow %s is %v, want COMPLETED", id, st)
	}
}

func TestBisectDeliveredTwiceStartsOneWorkflow(t *testing.T) {
	t.Parallel()
	// The first test of the bisection waits until the message's second
	// delivery has come while the first one runs the job: it is refused
	// (the first run holds the job's lease) and asks Temporal for nothing.
	// Every commit test notes which run it belongs to.
	var (
		s       *stack
		mu      sync.Mutex
		runIDs  = map[string]bool{}
		started = make(chan struct{})
	)
	s = newStack(t, func(ctx context.Context, jobID string, _ int64) error {
		<-started // s is set
		mu.Lock()
		runIDs[activityRunID(ctx)] = true
		mu.Unlock()
		return s.deliveries.wait(ctx, jobID, 2)
	})
	close(started)
	id := s.enqueue(t, &demov1.Bisect{Good: 0, Bad: 64, Culprit: 10}, 2)

	final := s.watch(t, id, nil)
	if final.State != courierv1.State_SUCCEEDED || final.Attempt != 1 {
		t.Fatalf("job ended %v on attempt %d (%v), want SUCCEEDED on attempt 1", final.State, final.Attempt, final.Error)
	}
	runs, err := s.starts.waitStarts(s.ctx, id, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 {
		t.Errorf("the two deliveries started runs %v, want one start", runs)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(runIDs) != 1 || !runIDs[runs[0]] {
		t.Errorf("commits were tested by runs %v, want only %s", runIDs, runs[0])
	}
	var res demov1.BisectResult
	if err := final.Result.UnmarshalTo(&res); err != nil || res.Culprit != 10 {
		t.Errorf("result %v (%v), want culprit 10", &res, err)
	}
}

func TestBisectCancelled(t *testing.T) {
	t.Parallel()
	// The bisection holds at its third test (the first halving) until the
	// test ends; CancelJob comes while it holds.
	holding := make(chan string, 1)
	release := make(chan struct{})
	s := newStack(t, func(ctx context.Context, jobID string, commit int64) error {
		if commit == 0 || commit == 1000 { // the endpoints
			return nil
		}
		select {
		case holding <- jobID:
		default:
		}
		select {
		case <-release:
			return errors.New("released at the end of the test")
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	t.Cleanup(func() { close(release) }) // before the Temporal worker stops
	id := s.enqueue(t, &demov1.Bisect{Good: 0, Bad: 1000, Culprit: 737}, 1)
	select {
	case got := <-holding:
		if got != id {
			t.Fatalf("holding job %s, want %s", got, id)
		}
	case <-s.ctx.Done():
		t.Fatal("the bisection never reached its first halving")
	}
	if _, err := s.jobs.CancelJob(s.ctx, &courierv1.CancelJobRequest{Id: id}); err != nil {
		t.Fatalf("CancelJob: %v", err)
	}
	// The handler cancels the workflow: await its end.
	err := s.temporal.GetWorkflow(s.ctx, id, "").Get(s.ctx, nil)
	var canceled *temporal.CanceledError
	if !errors.As(err, &canceled) {
		t.Fatalf("workflow %s ended with %v, want cancelled", id, err)
	}
	final := s.watch(t, id, nil)
	if final.State != courierv1.State_CANCELLED {
		t.Errorf("job is %v (%v), want CANCELLED", final.State, final.Error)
	}
}

func TestBisectFailure(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	// The culprit is after "bad": bad tests good, and the workflow fails.
	id := s.enqueue(t, &demov1.Bisect{Good: 0, Bad: 100, Culprit: 500}, 1)
	final := s.watch(t, id, nil)
	if final.State != courierv1.State_FAILED {
		t.Fatalf("job ended %v, want FAILED", final.State)
	}
	mustContain(t, "error", final.GetError().GetMessage(), "commit 100 was given as bad but tests good")
	if final.Attempt != 1 {
		t.Errorf("attempt %d, want 1: a failed workflow is not retried", final.Attempt)
	}
	desc, err := s.temporal.DescribeWorkflow(s.ctx, id, "")
	if err != nil {
		t.Fatal(err)
	}
	if st := desc.Status; st != enumspb.WORKFLOW_EXECUTION_STATUS_FAILED {
		t.Errorf("workflow %s is %v, want FAILED", id, st)
	}
}
