// Package jobs is courier's job model and the seam to its job stores: the
// Job record, its states, the Store interface that every store implements,
// and the errors they share. Each store lives in a subpackage (jobs/sqlite,
// jobs/postgres) and is checked by the one conformance suite in jobs/jobstest.
//
// It is for the code that records jobs: the JobService, the outbox relay and
// the handler workers. It knows nothing of gRPC, Pub/Sub or protobuf
// registries: payloads and results are opaque bytes tagged with their type
// name, and errors are a code and a message. It is not an API for user code;
// users see jobs through courier.v1.JobService.
package jobs

import (
	"context"
	"errors"
	"time"
)

// State is where a job is in its life. The zero value is invalid.
type State string

const (
	// Queued: recorded and waiting to run. Enqueue (or Ensure, for a message
	// published without EnqueueJob) puts a job here, and a retryable failure
	// puts it back. Start moves it to Running; Cancel to Cancelled.
	Queued State = "QUEUED"
	// Running: a handler runs it. Succeed, Fail or Cancel move it on.
	Running State = "RUNNING"
	// Succeeded is terminal: the handler returned a result.
	Succeeded State = "SUCCEEDED"
	// Failed is terminal: a permanent error, or the last attempt failed.
	Failed State = "FAILED"
	// Cancelled is terminal: Cancel was called before the job ended.
	Cancelled State = "CANCELLED"
)

// States lists every valid state, in life order.
func States() []State { return []State{Queued, Running, Succeeded, Failed, Cancelled} }

// Terminal reports whether a job in state s has ended.
func (s State) Terminal() bool { return s == Succeeded || s == Failed || s == Cancelled }

// Valid reports whether s is one of States.
func (s State) Valid() bool {
	switch s {
	case Queued, Running, Succeeded, Failed, Cancelled:
		return true
	}
	return false
}

// Job is the record of one job. Stores return times in UTC truncated to the
// microsecond, and empty Payload, Result and Labels as nil.
type Job struct {
	ID   string // unique; also the ce-id of its Pub/Sub message
	Type string // full protobuf name of the payload, e.g. "courier.demo.v1.Echo"

	State       State
	Attempt     int // current or last attempt, from 1; 0 before the first
	MaxAttempts int // attempts allowed; 0 means the handler's default

	Payload []byte // binary protobuf encoding of the payload (a message of Type)

	ResultType string // full protobuf name of Result; "" when there is none
	Result     []byte // binary protobuf encoding of the result

	ErrorCode    int32  // a google.rpc.Code; 0 when there is no error
	ErrorMessage string // the last error: the final one when Failed

	ProgressFraction float64 // 0..1
	ProgressMessage  string

	Labels         map[string]string
	IdempotencyKey string    // "" when none was given
	RunAfter       time.Time // zero: publish at once

	CreateTime time.Time
	StartTime  time.Time // zero until the first Start
	EndTime    time.Time // zero until terminal
	UpdateTime time.Time
}

// Event is one entry of a job's timeline: a change of its state or of its
// attempt, recorded in the same transaction as the change. Enqueue and
// Ensure record Queued; Start records Running (a redelivered Start of the
// same attempt records nothing); Fail with Retry records Queued with the
// error as Message; Succeed, Fail and Cancel record the terminal state.
// Progress records nothing.
type Event struct {
	Time    time.Time // the job's UpdateTime after the change
	State   State
	Attempt int
	Message string // the error of a retry or a final failure; "" otherwise
}

// OutboxEntry is a job waiting to be published to Pub/Sub.
type OutboxEntry struct {
	JobID    string
	Type     string
	Payload  []byte
	Labels   map[string]string
	RunAfter time.Time // zero: due at once
	Created  time.Time
}

// Limits on what a job and a query may carry. Every store enforces them
// (ErrInvalidArgument naming the limit), and the API checks them first, so a
// caller gets the same answer from every store and never a database error.
const (
	// MaxIDBytes bounds a job ID. Courier's IDs are UUIDs (36 bytes); IDs
	// of messages from other publishers (ce-id) must fit too.
	MaxIDBytes = 256
	// MaxTypeBytes bounds a type name (a topic ID is at most 255 bytes).
	MaxTypeBytes = 255
	// MaxIdempotencyKeyBytes bounds an idempotency key.
	MaxIdempotencyKeyBytes = 256
	// MaxLabels bounds the labels of a job and the label filters of a List.
	MaxLabels = 64
	// MaxLabelKeyBytes and MaxLabelValueBytes bound each label.
	MaxLabelKeyBytes, MaxLabelValueBytes = 63, 256
)

// Errors shared by every store. Stores wrap them with %w and add the job ID.
var (
	// ErrNotFound: no job has that ID.
	ErrNotFound = errors.New("jobs: job not found")
	// ErrConflict: the conditional update did not apply because the job is not
	// in a state that allows it (e.g. Succeed on a job that is not Running,
	// Start on a terminal job, Cancel on a finished job).
	ErrConflict = errors.New("jobs: job is not in a state that allows this change")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("jobs: store closed")
	// ErrInvalidArgument: the call's arguments are wrong (empty ID or Type,
	// Attempt < 1, Fraction outside 0..1, a page token the store did not
	// return, ...); the message says which and what to pass instead.
	ErrInvalidArgument = errors.New("jobs: invalid argument")
)

// EnqueueParams are the arguments of Store.Enqueue.
type EnqueueParams struct {
	Job Job // ID, Type, Payload, MaxAttempts, Labels, IdempotencyKey, RunAfter are used; the store sets State, times
}

// EnsureParams are the arguments of Store.Ensure.
type EnsureParams struct {
	Job Job // as for Enqueue; no outbox row is written
}

// ListParams are the arguments of Store.List.
type ListParams struct {
	Type      string            // "" means any
	State     State             // "" means any
	Labels    map[string]string // every pair must match
	PageSize  int               // 0 means 50; capped at 1000
	PageToken string            // opaque, from a previous List
}

// StartParams are the arguments of Store.Start.
type StartParams struct {
	ID      string
	Attempt int // the delivery attempt, from 1
}

// ProgressParams are the arguments of Store.Progress.
type ProgressParams struct {
	ID       string
	Fraction float64
	Message  string
}

// SucceedParams are the arguments of Store.Succeed.
type SucceedParams struct {
	ID         string
	ResultType string
	Result     []byte
}

// FailParams are the arguments of Store.Fail.
type FailParams struct {
	ID      string
	Code    int32
	Message string
	// Retry puts the job back to Queued (another attempt will come); false
	// makes it Failed.
	Retry bool
}

// Store records jobs. Every method that changes a job is a conditional update:
// it applies only from the states its comment names and otherwise returns an
// error wrapping ErrConflict (or ErrNotFound), changing nothing. All methods
// are safe for concurrent use.
type Store interface {
	// Enqueue records a Queued job and its outbox entry in one transaction.
	// When IdempotencyKey is set and a job of the same Type already has it,
	// nothing is written and the existing job is returned with duplicate true.
	// An empty ID gets a fresh UUIDv7; an ID that is already taken (with no
	// idempotency match) is an error wrapping ErrConflict.
	Enqueue(ctx context.Context, p EnqueueParams) (job *Job, duplicate bool, err error)
	// Ensure records a Queued job with no outbox entry unless one with that ID
	// exists, and returns the job as stored. Workers call it for messages that
	// were published without EnqueueJob. ID is required; if another job of
	// the same Type holds the IdempotencyKey, that job is returned.
	Ensure(ctx context.Context, p EnsureParams) (*Job, error)
	// Get returns the job, or ErrNotFound.
	Get(ctx context.Context, id string) (*Job, error)
	// List returns jobs newest first (by CreateTime, then ID) and the token of
	// the next page ("" at the end).
	List(ctx context.Context, p ListParams) (jobs []*Job, nextPageToken string, err error)

	// Start moves Queued (or Running, for a redelivery after a crash) to
	// Running, sets Attempt and, on the first start, StartTime.
	Start(ctx context.Context, p StartParams) (*Job, error)
	// Progress records progress of a Running job.
	Progress(ctx context.Context, p ProgressParams) error
	// Succeed moves Running to Succeeded with its result.
	Succeed(ctx context.Context, p SucceedParams) (*Job, error)
	// Fail moves Running to Queued (Retry) or Failed, recording the error.
	// A Failed with no Running (e.g. an undecodable message for a Queued job)
	// is also allowed from Queued.
	Fail(ctx context.Context, p FailParams) (*Job, error)
	// Cancel moves Queued or Running to Cancelled and drops the job's outbox
	// entry, if any. On a terminal job it returns the job and an error
	// wrapping ErrConflict.
	Cancel(ctx context.Context, id string) (*Job, error)

	// Events returns the job's timeline, oldest first: one Event per change
	// of state or attempt since it was recorded. A job with no events (or no
	// such job) gives none and no error; DeleteFinished deletes a job's
	// events with it.
	Events(ctx context.Context, id string) ([]Event, error)

	// DueOutbox returns up to limit (at most 1000) outbox entries whose
	// RunAfter is not after now, oldest due first (due = the later of Created
	// and RunAfter), then in enqueue order.
	DueOutbox(ctx context.Context, now time.Time, limit int) ([]OutboxEntry, error)
	// MarkSent removes the outbox entries of these jobs.
	MarkSent(ctx context.Context, jobIDs []string) error
	// OutboxStats returns how many entries wait and the oldest one's Created.
	OutboxStats(ctx context.Context) (count int, oldest time.Time, err error)

	// DeleteFinished deletes terminal jobs whose EndTime is before cutoff,
	// with their outbox entries, and returns how many it deleted.
	DeleteFinished(ctx context.Context, cutoff time.Time) (int, error)

	// Subscribe returns a channel that receives a value (coalesced: at most
	// one pending) after each change to job id, made through this store or,
	// for shared stores, through any replica. cancel releases it (and does
	// not close the channel); Close closes every channel, so watchers wake and
	// then see ErrClosed. Subscribe before reading the job, so that no change
	// falls between the read and the subscription.
	Subscribe(id string) (changed <-chan struct{}, cancel func())

	// Ping reports whether the store is reachable.
	Ping(ctx context.Context) error
	// Close releases the store; later calls return ErrClosed.
	Close() error
}
