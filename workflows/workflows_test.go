package workflows_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/proto"

	"github.com/courierq/courier/handlers"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
	"github.com/courierq/courier/workflows"
	"github.com/courierq/courier/workflows/demo"
)

func TestRegisterErrors(t *testing.T) {
	lazy, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer lazy.Close()
	wf := demo.Bisect
	type spec = workflows.Spec[*demov1.Bisect, *demov1.BisectResult]
	for _, tc := range []struct {
		name string
		c    client.Client
		spec spec
		want string
	}{
		{"nil client", nil, spec{Workflow: wf, TaskQueue: "q"}, "Temporal client is nil"},
		{"no workflow", lazy, spec{TaskQueue: "q"}, "Spec.Workflow is nil"},
		{"no task queue", lazy, spec{Workflow: wf}, "Spec.TaskQueue is empty"},
		{"negative timeout", lazy, spec{Workflow: wf, TaskQueue: "q", ExecutionTimeout: -time.Second}, "Spec.ExecutionTimeout is -1s"},
		{"bad handler config", lazy, spec{Workflow: wf, TaskQueue: "q", Handler: handlers.Config{Concurrency: -1}}, "Config.Concurrency is -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := workflows.Register(handlers.NewRegistry(), tc.c, tc.spec)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
		})
	}
	reg := handlers.NewRegistry()
	if err := workflows.Register(reg, lazy, spec{Workflow: wf, TaskQueue: "q"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := reg.Lookup("courier.demo.v1.Bisect"); !ok {
		t.Fatalf("registered types %v, want courier.demo.v1.Bisect", reg.Types())
	}
	if err := workflows.Register(reg, lazy, spec{Workflow: wf, TaskQueue: "q"}); !errors.Is(err, handlers.ErrDuplicate) {
		t.Fatalf("second Register: %v, want ErrDuplicate", err)
	}
}

func TestStartOptionsJoinOneWorkflowPerJob(t *testing.T) {
	o := workflows.StartOptions("job-1", "q", time.Minute)
	if o.ID != "job-1" || o.TaskQueue != "q" || o.WorkflowExecutionTimeout != time.Minute ||
		o.WorkflowIDConflictPolicy != enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING ||
		o.WorkflowIDReusePolicy != enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE ||
		o.WorkflowExecutionErrorWhenAlreadyStarted {
		t.Fatalf("StartOptions: %+v", o)
	}
}

func TestWorkerLifecycle(t *testing.T) {
	if _, err := workflows.NewWorker(workflows.WorkerConfig{}); err == nil || !strings.Contains(err.Error(), "WorkerConfig.Register is nil") {
		t.Fatalf("NewWorker without Register: %v", err)
	}
	w, err := workflows.NewWorker(workflows.WorkerConfig{Register: func(worker.Registry) {}})
	if err != nil {
		t.Fatal(err)
	}
	w.Stop()
	w.Stop()
	if err := w.Run(context.Background()); !errors.Is(err, workflows.ErrClosed) {
		t.Fatalf("Run after Stop: %v, want ErrClosed", err)
	}
}

func TestWorkerUnreachable(t *testing.T) {
	t.Parallel()
	w, err := workflows.NewWorker(workflows.WorkerConfig{HostPort: "127.0.0.1:1", Logger: quiet, Register: func(worker.Registry) {}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err = w.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") || !strings.Contains(err.Error(), "make run-temporal") {
		t.Fatalf("Run against nothing: %v, want an error naming the address and the fix", err)
	}
}

// runHandler runs one attempt of the Bisect job id through the registered
// handler, as ingest does, with ctx as the running attempt's context.
func runHandler(ctx context.Context, t *testing.T, reg *handlers.Registry, id string, in *demov1.Bisect) (proto.Message, error) {
	t.Helper()
	e, ok := reg.Lookup(workflows.Name[*demov1.Bisect]())
	if !ok {
		t.Fatal("Bisect is not registered")
	}
	return e.Handler(ctx, &handlers.Request{ID: id, Type: e.Type, Attempt: 1, MaxAttempts: 3, Payload: in})
}

// TestWorkerStopLeavesWorkflowRunning: when the job's runner stops (not a
// cancel), the handler returns a retryable error and the workflow keeps
// running; the retry attaches to it and gets its result.
func TestWorkerStopLeavesWorkflowRunning(t *testing.T) {
	t.Parallel()
	holding := make(chan struct{}, 1)
	release := make(chan struct{})
	env := newTemporal(t, func(ctx context.Context, _ string, commit int64) error {
		if commit == 0 || commit == 100 {
			return nil
		}
		select {
		case holding <- struct{}{}:
		default:
		}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, nil, true)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	reg := handlers.NewRegistry()
	if err := demo.Register(reg, env.handlerClient, env.cfg); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	id := "stop-" + env.cfg.TaskQueue
	in := &demov1.Bisect{Good: 0, Bad: 100, Culprit: 42}

	stopping := errors.New("runner stopping")
	actx, stop := context.WithCancelCause(ctx)
	go func() {
		select {
		case <-holding:
			stop(stopping)
		case <-ctx.Done():
		}
	}()
	_, err := runHandler(actx, t, reg, id, in)
	if err == nil || handlers.IsPermanent(err) || !errors.Is(err, stopping) {
		t.Fatalf("handler stopped by its runner returned %v, want a retryable error wrapping the cause", err)
	}
	desc, err := env.client.DescribeWorkflow(ctx, id, "")
	if err != nil {
		t.Fatal(err)
	}
	if st := desc.Status; st != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		t.Fatalf("workflow is %v after its handler stopped, want RUNNING", st)
	}

	close(release)
	res, err := runHandler(ctx, t, reg, id, in)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if got := res.(*demov1.BisectResult).GetCulprit(); got != 42 {
		t.Errorf("culprit %d, want 42", got)
	}
	runs, err := env.starts.waitStarts(ctx, id, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || runs[0] != runs[1] {
		t.Errorf("the two attempts started runs %v, want one run twice", runs)
	}
	// A third attempt, after the workflow closed, gets its result again
	// instead of starting another run.
	res, err = runHandler(ctx, t, reg, id, in)
	if err != nil || res.(*demov1.BisectResult).GetCulprit() != 42 {
		t.Fatalf("attempt after the workflow closed: %v, %v", res, err)
	}
	if runs, _ := env.starts.waitStarts(ctx, id, 3); len(runs) != 3 || runs[2] != runs[0] {
		t.Errorf("runs %v, want the first run three times", runs)
	}
}

// TestWorkflowTimeoutFailsTheJob: a workflow that runs past the job type's
// ExecutionTimeout ends the job with a permanent error.
func TestWorkflowTimeoutFailsTheJob(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	env := newTemporal(t, func(ctx context.Context, _ string, commit int64) error {
		select { // hold every test: only the timeout ends the workflow
		case <-release:
			return errors.New("released at the end of the test")
		case <-ctx.Done():
			return ctx.Err()
		}
	}, func(c *demo.Config) { c.ExecutionTimeout = time.Second }, true)
	t.Cleanup(func() { close(release) })
	reg := handlers.NewRegistry()
	if err := demo.Register(reg, env.handlerClient, env.cfg); err != nil {
		t.Fatal(err)
	}
	_, err := runHandler(testCtx(t), t, reg, "timeout-"+env.cfg.TaskQueue, &demov1.Bisect{Good: 0, Bad: 100, Culprit: 42})
	if !handlers.IsPermanent(err) || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("got %v, want a permanent error saying the workflow timed out", err)
	}
}

// TestFailingWorkflowMessage: the job's error is the workflow's own failure
// message, for any workflow job type.
func TestFailingWorkflowMessage(t *testing.T) {
	t.Parallel()
	srv := newTemporal(t, nil, nil, true)
	failing := workflows.Spec[*demov1.Echo, *demov1.EchoResult]{
		TaskQueue: srv.cfg.TaskQueue + "-echo",
		Workflow: func(ctx workflow.Context, in *demov1.Echo) (*demov1.EchoResult, error) {
			return nil, errors.New("echo workflow refuses: " + in.GetMessage())
		},
	}
	w, err := workflows.NewWorker(workflows.WorkerConfig{Client: srv.client, TaskQueue: failing.TaskQueue, Logger: quiet,
		Register: func(r worker.Registry) { workflows.RegisterWorkflow(r, failing) }})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background()) }()
	t.Cleanup(func() { w.Stop(); <-done })
	reg := handlers.NewRegistry()
	if err := workflows.Register(reg, srv.handlerClient, failing); err != nil {
		t.Fatal(err)
	}
	e, _ := reg.Lookup("courier.demo.v1.Echo")
	_, err = e.Handler(testCtx(t), &handlers.Request{ID: "echo-" + failing.TaskQueue, Type: e.Type, Attempt: 1, MaxAttempts: 1, Payload: &demov1.Echo{Message: "no"}})
	if !handlers.IsPermanent(err) || !strings.Contains(err.Error(), "failed: echo workflow refuses: no") {
		t.Fatalf("got %v, want a permanent error with the workflow's message", err)
	}
}
