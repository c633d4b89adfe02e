// Package workflows runs long courier jobs as Temporal workflows behind the
// same enqueue-and-poll API as every other job. Register makes a job type's
// handler start a Temporal workflow (workflow ID = job ID) on a task queue
// and follow it to its end: the workflow's progress (its ProgressQuery)
// becomes the job's progress, its result the job's result, its failure or
// timeout a permanent job failure, and cancelling the job (CancelJob)
// cancels the workflow. Worker runs the workflows and activities; EnqueueLimit
// and RequireTemporal are jobservice.TypeInfo.Check hooks for the edge.
//
// It is for courierd and for code that defines workflow job types (see
// workflows/demo). It is not a Temporal wrapper for workflow code, which uses
// the SDK (go.temporal.io/sdk/workflow) directly apart from TrackProgress,
// and it knows nothing of Pub/Sub, the job store or gRPC serving.
//
// The handler holds the job's Pub/Sub message for as long as the workflow
// runs (the subscriber client extends its lease), so a workflow job takes
// one slot of the subscription's flow control until it ends. That is fine for
// minutes to hours; if the worker stops meanwhile, the message is nacked, the
// workflow keeps running in Temporal, and the redelivery attaches to it
// (WorkflowIDConflictPolicy USE_EXISTING) instead of starting a second one.
// After the workflow closed, a redelivery gets its outcome again
// (WorkflowIDReusePolicy REJECT_DUPLICATE): a job ID runs at most one
// workflow. The Pub/Sub client stops extending a lease after its
// ReceiveSettings.MaxExtension (60 minutes by default): a workflow that runs
// longer is redelivered each time the lease lapses, and each redelivery
// attaches to it too, but counts as a delivery attempt toward the
// subscription's dead-letter policy; raise MaxExtension (and the dead-letter
// attempts) for workflows of many hours.
package workflows

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/proto"

	"github.com/courierq/courier/handlers"
)

// ProgressQuery is the query a workflow job's workflow answers with its
// Progress (see TrackProgress). A workflow without it runs fine; its job
// just reports no progress.
const ProgressQuery = "progress"

// Defaults of Spec fields left zero.
const (
	DefaultProgressInterval = time.Second
	DefaultCancelTimeout    = time.Minute
)

// Progress is how far a workflow is, as its ProgressQuery answers it.
type Progress struct {
	// Fraction done, 0..1.
	Fraction float64 `json:"fraction"`
	// Message says what the workflow is doing, in a few words.
	Message string `json:"message"`
}

// TrackProgress registers the ProgressQuery handler on a workflow's ctx and
// returns the Progress it answers with: the workflow updates its fields as it
// goes (query handlers run between workflow steps, so no lock is needed).
func TrackProgress(ctx workflow.Context) (*Progress, error) {
	p := &Progress{}
	if err := workflow.SetQueryHandler(ctx, ProgressQuery, func() (Progress, error) { return *p, nil }); err != nil {
		return nil, fmt.Errorf("workflows: registering the %q query: %w", ProgressQuery, err)
	}
	return p, nil
}

// Spec describes a workflow job type: jobs whose payload is a T run the
// workflow Workflow, whose result R becomes the job's result.
type Spec[T, R proto.Message] struct {
	// Workflow is the workflow function. Required. It runs on a Worker of
	// TaskQueue, registered there with RegisterWorkflow(registry, spec).
	Workflow func(ctx workflow.Context, payload T) (R, error)
	// TaskQueue is the Temporal task queue the workflow is started on.
	// Required.
	TaskQueue string
	// Handler configures the job type's handler (rate limit, concurrency,
	// attempts). Leave its Timeout 0: a timeout stops following the workflow
	// (it keeps running and the retry attaches to it); bound the workflow
	// with ExecutionTimeout instead.
	Handler handlers.Config
	// ExecutionTimeout bounds the workflow (WorkflowExecutionTimeout, which
	// includes retries and continue-as-new); a workflow that runs past it
	// ends and its job FAILED. 0 means no limit.
	ExecutionTimeout time.Duration
	// ProgressInterval is how often the handler queries the workflow's
	// progress. 0 means DefaultProgressInterval; negative means never.
	ProgressInterval time.Duration
	// CancelTimeout bounds how long a cancelled job waits for its workflow
	// to end after asking Temporal to cancel it. 0 means
	// DefaultCancelTimeout.
	CancelTimeout time.Duration
	// Logger receives what the handler cannot return (a cancel that failed).
	// nil means slog.Default().
	Logger *slog.Logger
}

// Name is the Temporal workflow type name of jobs whose payload is a T: the
// payload's full protobuf name, e.g. "courier.demo.v1.Bisect".
func Name[T proto.Message]() string {
	var zero T
	return string(zero.ProtoReflect().Descriptor().FullName())
}

// RegisterWorkflow registers spec's workflow function under Name[T]() in r
// (a worker.Worker, or the SDK's test environment), which is the name
// Register's handler starts it by.
func RegisterWorkflow[T, R proto.Message](r worker.WorkflowRegistry, spec Spec[T, R]) {
	r.RegisterWorkflowWithOptions(spec.Workflow, workflow.RegisterOptions{Name: Name[T]()})
}

// Register registers the job type T in reg with a handler that runs each job
// as the workflow of spec through the Temporal client c. It returns an error
// naming what is missing from spec, or handlers.Register's error.
func Register[T, R proto.Message](reg *handlers.Registry, c client.Client, spec Spec[T, R]) error {
	name := Name[T]()
	switch {
	case c == nil:
		return fmt.Errorf("workflows: Register %s: the Temporal client is nil; dial one with client.Dial", name)
	case spec.Workflow == nil:
		return fmt.Errorf("workflows: Register %s: Spec.Workflow is nil; set the workflow function", name)
	case spec.TaskQueue == "":
		return fmt.Errorf("workflows: Register %s: Spec.TaskQueue is empty; set the task queue its Worker polls", name)
	case spec.ExecutionTimeout < 0:
		return fmt.Errorf("workflows: Register %s: Spec.ExecutionTimeout is %v; use a positive duration, or 0 for no limit", name, spec.ExecutionTimeout)
	case spec.CancelTimeout < 0:
		return fmt.Errorf("workflows: Register %s: Spec.CancelTimeout is %v; use a positive duration, or 0 for %v", name, spec.CancelTimeout, DefaultCancelTimeout)
	}
	if spec.ProgressInterval == 0 {
		spec.ProgressInterval = DefaultProgressInterval
	}
	if spec.CancelTimeout == 0 {
		spec.CancelTimeout = DefaultCancelTimeout
	}
	if spec.Logger == nil {
		spec.Logger = slog.Default()
	}
	r := &runner[T, R]{c: c, spec: spec, name: name}
	return handlers.Register(reg, r.run, spec.Handler)
}

type runner[T, R proto.Message] struct {
	c    client.Client
	spec Spec[T, R]
	name string
}

// StartOptions are the options the handler starts a job's workflow with.
// The ID policies make a job ID run at most one workflow: a running one is
// joined, a closed one is not started again (its outcome is read instead).
func StartOptions(jobID, taskQueue string, executionTimeout time.Duration) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID:                       jobID,
		TaskQueue:                taskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowExecutionTimeout: executionTimeout,
	}
}

func (r *runner[T, R]) run(ctx context.Context, job *handlers.Job[T]) (R, error) {
	var zero R
	log := r.spec.Logger.With("job_id", job.ID, "workflow", r.name)
	run, err := r.c.ExecuteWorkflow(ctx, StartOptions(job.ID, r.spec.TaskQueue, r.spec.ExecutionTimeout), r.name, job.Payload)
	if err != nil {
		if jobCancelled(ctx) {
			// It may have started before ctx ended: cancel whatever runs.
			return zero, r.cancel(ctx, log, job.ID)
		}
		return zero, fmt.Errorf("workflows: starting workflow %s (ID %s) on task queue %s: %w", r.name, job.ID, r.spec.TaskQueue, err)
	}

	pctx, stopProgress := context.WithCancel(ctx)
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		r.followProgress(pctx, job)
	}()
	var res R
	err = run.Get(ctx, &res)
	stopProgress()
	<-progressDone

	switch {
	case err == nil:
		return res, nil
	case ctx.Err() != nil && jobCancelled(ctx):
		return zero, r.cancel(ctx, log, job.ID)
	case ctx.Err() != nil:
		return zero, fmt.Errorf("workflows: stopped following workflow %s (ID %s), which keeps running; a redelivery of the job attaches to it: %w", r.name, job.ID, context.Cause(ctx))
	}
	var wee *temporal.WorkflowExecutionError
	if !errors.As(err, &wee) {
		// Not an outcome of the workflow: Temporal unreachable, say. Retry.
		return zero, fmt.Errorf("workflows: following workflow %s (ID %s): %w", r.name, job.ID, err)
	}
	return zero, handlers.Permanent(fmt.Errorf("workflows: workflow %s (ID %s) %s", r.name, job.ID, outcome(wee)))
}

// outcome describes how a workflow that did not complete ended.
func outcome(wee *temporal.WorkflowExecutionError) string {
	cause := errors.Unwrap(wee)
	var (
		app      *temporal.ApplicationError
		timeout  *temporal.TimeoutError
		canceled *temporal.CanceledError
		term     *temporal.TerminatedError
	)
	switch {
	case errors.As(cause, &app):
		return "failed: " + app.Message()
	case errors.As(cause, &timeout):
		return "timed out (" + timeout.TimeoutType().String() + ")"
	case errors.As(cause, &canceled):
		return "was cancelled in Temporal, not through courier's CancelJob"
	case errors.As(cause, &term):
		return "was terminated in Temporal"
	case cause != nil:
		return "failed: " + cause.Error()
	}
	return "failed: " + wee.Error()
}

// jobCancelled reports whether ctx ended because the job was cancelled (as
// opposed to the worker stopping or a timeout).
func jobCancelled(ctx context.Context) bool {
	return errors.Is(context.Cause(ctx), handlers.ErrCancelled)
}

// cancel asks Temporal to cancel the job's workflow and waits until it has
// ended, bounded by CancelTimeout. It returns the error the handler returns
// for the cancelled job (the runner records the job CANCELLED regardless).
func (r *runner[T, R]) cancel(ctx context.Context, log *slog.Logger, id string) error {
	cctx, done := context.WithTimeout(context.WithoutCancel(ctx), r.spec.CancelTimeout)
	defer done()
	if err := r.c.CancelWorkflow(cctx, id, ""); err != nil {
		// Cancelling a workflow that never started, or that already
		// closed, fails: that is no failure here.
		desc, derr := r.c.DescribeWorkflow(cctx, id, "")
		var nf *serviceerror.NotFound
		switch {
		case errors.As(derr, &nf):
			return fmt.Errorf("workflows: job %s cancelled before its workflow started: %w", id, handlers.ErrCancelled)
		case derr == nil && desc.Status != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
			return fmt.Errorf("workflows: job %s cancelled after its workflow ended (%s): %w", id, desc.Status, handlers.ErrCancelled)
		}
		log.Error("workflows: cancelling the workflow of a cancelled job failed; it may keep running", "err", err)
		return fmt.Errorf("workflows: cancelling workflow %s (ID %s): %w", r.name, id, err)
	}
	if err := r.c.GetWorkflow(cctx, id, "").Get(cctx, nil); err != nil {
		var canceled *temporal.CanceledError
		if !errors.As(err, &canceled) && cctx.Err() != nil {
			log.Error("workflows: the workflow of a cancelled job did not end in time after its cancel request", "err", err, "timeout", r.spec.CancelTimeout)
			return fmt.Errorf("workflows: workflow %s (ID %s) did not end within %v of its cancel request: %w", r.name, id, r.spec.CancelTimeout, err)
		}
	}
	return fmt.Errorf("workflows: workflow %s (ID %s) cancelled: %w", r.name, id, handlers.ErrCancelled)
}

// followProgress queries the workflow's progress every ProgressInterval until
// ctx ends, recording each change as the job's progress. A failing query
// (the workflow has not run its first task yet, or defines no progress) is
// skipped.
func (r *runner[T, R]) followProgress(ctx context.Context, job *handlers.Job[T]) {
	if r.spec.ProgressInterval < 0 {
		return
	}
	t := time.NewTicker(r.spec.ProgressInterval)
	defer t.Stop()
	var last Progress
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		qctx, cancel := context.WithTimeout(ctx, max(r.spec.ProgressInterval, 10*time.Second))
		v, err := r.c.QueryWorkflow(qctx, job.ID, "", ProgressQuery)
		var p Progress
		if err == nil {
			err = v.Get(&p)
		}
		cancel()
		if err != nil || p == last {
			continue
		}
		last = p
		job.Progress(ctx, p.Fraction, p.Message)
	}
}
