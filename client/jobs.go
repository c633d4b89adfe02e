package client

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

// Jobs is a typed client of courier.v1.JobService: enqueue a protobuf
// message, wait for its job to end with the result decoded into your own
// message type. It is safe for concurrent use.
type Jobs struct {
	c courierv1.JobServiceClient
}

// NewJobs returns a Jobs on conn (from Dial).
func NewJobs(conn grpc.ClientConnInterface) *Jobs {
	return &Jobs{c: courierv1.NewJobServiceClient(conn)}
}

// Service is the generated JobService client underneath, for the calls Jobs
// does not wrap (ListJobs, ...).
func (j *Jobs) Service() courierv1.JobServiceClient { return j.c }

// EnqueueOptions are the optional parts of an enqueue. The zero value
// enqueues at once with no key and no labels.
type EnqueueOptions struct {
	// IdempotencyKey makes a second enqueue of the same type with the same
	// key return the first job's ID instead of recording another job.
	IdempotencyKey string
	// RunAfter delays the job until then. Zero: at once.
	RunAfter time.Time
	// Labels are stored with the job; ListJobs filters on them.
	Labels map[string]string
	// UniqueFor and UniqueWhileActive (with IdempotencyKey) say how long
	// the key is held: for UniqueFor after the enqueue, only while the job
	// is queued or running, or (both) until the first of the two ends.
	// Zero: for as long as the job is kept.
	UniqueFor         time.Duration
	UniqueWhileActive bool
	// MaxAttempts and Timeout override the type's, up to the type's own;
	// zero means the type's.
	MaxAttempts int
	Timeout     time.Duration
	// OrderingKey: jobs with one key run one at a time, in enqueue order.
	OrderingKey string
}

// Request returns the EnqueueJobRequest of msg with these options.
func (o EnqueueOptions) Request(msg proto.Message) (*courierv1.EnqueueJobRequest, error) {
	payload, err := anypb.New(msg)
	if err != nil {
		return nil, fmt.Errorf("client: encoding the payload: %w", err)
	}
	req := &courierv1.EnqueueJobRequest{Payload: payload, IdempotencyKey: o.IdempotencyKey, Labels: o.Labels,
		UniqueWhileActive: o.UniqueWhileActive, MaxAttempts: int32(o.MaxAttempts), OrderingKey: o.OrderingKey}
	if !o.RunAfter.IsZero() {
		req.RunAfter = timestamppb.New(o.RunAfter)
	}
	if o.UniqueFor != 0 {
		req.UniqueFor = durationpb.New(o.UniqueFor)
	}
	if o.Timeout != 0 {
		req.Timeout = durationpb.New(o.Timeout)
	}
	return req, nil
}

// BatchJob is one job of EnqueueBatch.
type BatchJob struct {
	Payload proto.Message
	Options EnqueueOptions
}

// EnqueueBatch records up to 1,000 jobs in one transaction (EnqueueJobs):
// all or none. It returns their IDs in order; a duplicate's ID is the
// holder's.
func (j *Jobs) EnqueueBatch(ctx context.Context, batch []BatchJob) ([]string, error) {
	req := &courierv1.EnqueueJobsRequest{Jobs: make([]*courierv1.EnqueueJobRequest, len(batch))}
	for i, b := range batch {
		r, err := b.Options.Request(b.Payload)
		if err != nil {
			return nil, fmt.Errorf("client: jobs[%d]: %w", i, err)
		}
		req.Jobs[i] = r
	}
	resp, err := j.c.EnqueueJobs(ctx, req)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(resp.GetJobs()))
	for i, r := range resp.GetJobs() {
		ids[i] = r.GetJobId()
	}
	return ids, nil
}

// Enqueue records a job whose payload is msg (its full protobuf name picks
// the job type) and returns its ID. A duplicate (an IdempotencyKey seen
// before for the type) returns the first job's ID.
func (j *Jobs) Enqueue(ctx context.Context, msg proto.Message, opts EnqueueOptions) (string, error) {
	req, err := opts.Request(msg)
	if err != nil {
		return "", err
	}
	resp, err := j.c.EnqueueJob(ctx, req)
	if err != nil {
		return "", err
	}
	return resp.GetJobId(), nil
}

// Get returns the job's current state.
func (j *Jobs) Get(ctx context.Context, id string) (*courierv1.Job, error) {
	return j.c.GetJob(ctx, &courierv1.GetJobRequest{Id: id})
}

// Cancel cancels the job (a running handler's context is cancelled).
func (j *Jobs) Cancel(ctx context.Context, id string) (*courierv1.Job, error) {
	return j.c.CancelJob(ctx, &courierv1.CancelJobRequest{Id: id})
}

// JobError is Wait's error for a job that ended without succeeding.
type JobError struct {
	Job *courierv1.Job // the job as it ended: FAILED or CANCELLED
}

func (e *JobError) Error() string {
	if e.Job.GetState() == courierv1.State_CANCELLED {
		return fmt.Sprintf("client: job %s (%s) was cancelled", e.Job.GetId(), e.Job.GetType())
	}
	return fmt.Sprintf("client: job %s (%s) failed on attempt %d of %d: %s", e.Job.GetId(), e.Job.GetType(),
		e.Job.GetAttempt(), e.Job.GetMaxAttempts(), e.Job.GetError().GetMessage())
}

// Wait follows the job (WatchJob) until it ends and returns it. When it
// SUCCEEDED and result is not nil, the job's result is decoded into result
// (which must be of the result's type). A job that ended FAILED or
// CANCELLED is returned with a *JobError. A watch cut by the server
// (shutting down, a restart) is resumed until ctx ends.
func (j *Jobs) Wait(ctx context.Context, id string, result proto.Message) (*courierv1.Job, error) {
	backoff := 50 * time.Millisecond
	for {
		job, err := j.watch(ctx, id)
		if err == nil {
			return job, decodeResult(job, result)
		}
		// Unavailable: the server shut down or restarted (or the connection
		// dropped); the watch is resumed and starts with the current state.
		if status.Code(err) != codes.Unavailable || ctx.Err() != nil {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("client: waiting for job %s: %w (last: %v)", id, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// watch follows one WatchJob stream to the job's end.
func (j *Jobs) watch(ctx context.Context, id string) (*courierv1.Job, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := j.c.WatchJob(ctx, &courierv1.WatchJobRequest{Id: id})
	if err != nil {
		return nil, err
	}
	for {
		job, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		if terminal(job.GetState()) {
			return job, nil
		}
	}
}

func terminal(s courierv1.State) bool {
	return s == courierv1.State_SUCCEEDED || s == courierv1.State_FAILED || s == courierv1.State_CANCELLED
}

func decodeResult(job *courierv1.Job, result proto.Message) error {
	if job.GetState() != courierv1.State_SUCCEEDED {
		return &JobError{Job: job}
	}
	if result == nil || job.GetResult() == nil {
		return nil
	}
	if err := job.GetResult().UnmarshalTo(result); err != nil {
		return fmt.Errorf("client: job %s succeeded with a %s result, which does not decode into %T: %w",
			job.GetId(), job.GetResult().MessageName(), result, err)
	}
	return nil
}
