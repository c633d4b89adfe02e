// Package jobs is courier's job model and the seam to its job stores: the
// Job record, its states, the Store interface that every store implements,
// and the errors they share. Each store lives in a subpackage (jobs/sqlite,
// jobs/postgres, jobs/spanner) and is checked by the one conformance suite in
// jobs/jobstest.
// Optional capabilities sit beside Store, as interfaces of their own so
// that a store need not have them: Limits (rate-limit buckets and
// concurrency slots shared by every replica: jobs/postgres), Deferrer
// (putting a queued job's message off through the outbox: SQLite and
// PostgreSQL), and those of the job controls (below).
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
	"fmt"
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

	// TraceParent and TraceState are the W3C trace context of the enqueue
	// ("" when none), kept so that the trace enqueue → publish → handler
	// survives a restart.
	TraceParent, TraceState string
	// OrderingKey is the Pub/Sub ordering key of the job's message; "" for
	// none. The outbox publishes the entries of one key in enqueue order.
	OrderingKey string
	// Timeout overrides the handler's timeout for each attempt of this
	// job; 0 means the handler's. Stores keep it in whole microseconds.
	Timeout time.Duration

	// Lease is the token of the current run's lease and LeaseExpiry when it
	// lapses: set by Start while Running, extended by Heartbeat, cleared
	// ("" and zero) in every other state.
	Lease       string
	LeaseExpiry time.Time

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

	TraceParent, TraceState string // the job's trace context ("" when none)
	OrderingKey             string // the job's Pub/Sub ordering key ("" when none)

	Due       time.Time // when the entry is (or was) due to publish
	Attempts  int       // failed publish tries so far (RetryOutbox)
	LastError string    // the error of the last failed try; "" when none
}

// TypeCounts is how many jobs of one type are in each state (Store.Counts).
type TypeCounts struct {
	Type   string
	States map[State]int // every state of States(), 0 when none
	// OldestQueued is the CreateTime of the oldest Queued job of the type;
	// zero when none is Queued.
	OldestQueued time.Time
}

// ThroughputPoint is how many jobs of one type ended in one bucket
// (Store.Throughput).
type ThroughputPoint struct {
	Time      time.Time // the bucket's start
	Type      string
	Succeeded int
	Failed    int
}

// LeaseRef names the lease of one running job (Store.Heartbeat).
type LeaseRef struct {
	ID    string
	Lease string
}

// RescueResult lists the jobs one Store.Rescue put back on their way.
type RescueResult struct {
	// Requeued: Queued jobs with no outbox entry and no activity since
	// RescueParams.QueuedBefore, given an outbox entry due now.
	Requeued []string
	// Released: Running jobs whose lease lapsed before
	// RescueParams.LapsedBefore, put back to Queued with an outbox entry.
	Released []string
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
	// MaxTraceParentBytes and MaxTraceStateBytes bound a job's trace
	// context (a W3C traceparent is 55 bytes; a tracestate at most 512).
	MaxTraceParentBytes, MaxTraceStateBytes = 128, 512
	// MaxOrderingKeyBytes bounds an ordering key (Pub/Sub's limit).
	MaxOrderingKeyBytes = 1024
	// MaxLeaseBytes bounds a lease token.
	MaxLeaseBytes = 256
	// MaxBatchIDs bounds the job IDs of one MarkSent, MarkSeen or Cancelled.
	MaxBatchIDs = 5000
	// MaxHeartbeatLeases bounds the leases of one Heartbeat.
	MaxHeartbeatLeases = 1000
	// MaxClaim bounds the Limit of ClaimOutbox and Rescue.
	MaxClaim = 1000
)

// Errors shared by every store. Stores wrap them with %w and add the job ID.
var (
	// ErrNotFound: no job has that ID.
	ErrNotFound = errors.New("jobs: job not found")
	// ErrConflict: the conditional update did not apply because the job is not
	// in a state that allows it (e.g. Succeed on a job that is not Running,
	// or not under the caller's lease; Start on a terminal job; Cancel on a
	// finished job).
	ErrConflict = errors.New("jobs: job is not in a state that allows this change")
	// ErrLeased: Start found the job Running under another worker's lease
	// that has not lapsed. It does not wrap ErrConflict: the caller should
	// try again later (e.g. nack the delivery), not drop it, since the other
	// run may still fail and need another attempt.
	ErrLeased = errors.New("jobs: job is running under another worker's lease")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("jobs: store closed")
	// ErrInvalidArgument: the call's arguments are wrong (empty ID or Type,
	// Attempt < 1, Fraction outside 0..1, a page token the store did not
	// return, ...); the message says which and what to pass instead.
	ErrInvalidArgument = errors.New("jobs: invalid argument")
	// ErrUnsupported: the store does not have an optional capability
	// (BatchEnqueuer, UniqueScopes).
	ErrUnsupported = errors.New("jobs: not supported by this store")
)

// EnqueueParams are the arguments of Store.Enqueue.
type EnqueueParams struct {
	// Job: ID, Type, Payload, MaxAttempts, Labels, IdempotencyKey,
	// RunAfter, TraceParent, TraceState, OrderingKey and Timeout are used;
	// the store sets State, times and the lease.
	Job Job

	// UniqueFor and UniqueWhileActive narrow how long the job holds its
	// IdempotencyKey (they need one). By default (both zero) the key is
	// held for as long as the job is kept (until DeleteFinished deletes
	// it). With UniqueFor > 0 it is held until CreateTime + UniqueFor;
	// with UniqueWhileActive only while the job is Queued or Running; with
	// both, until the first of the two ends. An Enqueue with a key that is
	// no longer held records a new job, which holds the key from then on.
	// Only stores that implement UniqueScopes honour them; the API refuses
	// them on other stores.
	UniqueFor         time.Duration
	UniqueWhileActive bool
}

// UniqueScopes is implemented by stores that honour
// EnqueueParams.UniqueFor and UniqueWhileActive. (A store that does not
// would hold every key for as long as its job is kept.) Decorators of a
// Store implement it by asking the store they wrap.
type UniqueScopes interface {
	Store
	// SupportsUniqueScopes reports whether the store honours them.
	SupportsUniqueScopes() bool
}

// SupportsUniqueScopes reports whether s honours EnqueueParams.UniqueFor
// and UniqueWhileActive.
func SupportsUniqueScopes(s Store) bool {
	u, ok := s.(UniqueScopes)
	return ok && u.SupportsUniqueScopes()
}

// EnqueueBatch calls s.EnqueueBatch when s is a BatchEnqueuer, and
// otherwise returns an error wrapping ErrUnsupported. Decorators of a Store
// implement BatchEnqueuer with it.
func EnqueueBatch(ctx context.Context, s Store, ps []EnqueueParams) ([]EnqueueResult, error) {
	b, ok := s.(BatchEnqueuer)
	if !ok {
		return nil, fmt.Errorf("jobs: EnqueueBatch: %T: %w", s, ErrUnsupported)
	}
	return b.EnqueueBatch(ctx, ps)
}

// MaxEnqueueBatch bounds the jobs of one EnqueueBatch.
const MaxEnqueueBatch = 1000

// EnqueueResult is the outcome of one job of an EnqueueBatch: as Enqueue's
// results.
type EnqueueResult struct {
	Job       *Job
	Duplicate bool
}

// BatchEnqueuer is a Store that records several jobs in one transaction.
// It is optional: courier.v1.JobService/EnqueueJobs answers Unimplemented
// on a store without it, or whose EnqueueBatch returns ErrUnsupported (a
// decorator of a store without it); a fallback of one Enqueue per job would
// not be all-or-nothing.
type BatchEnqueuer interface {
	Store
	// EnqueueBatch records each job of ps as Enqueue would (its outbox
	// entry, its idempotency key), all in one transaction: every job is
	// recorded or none is. A job whose key is held (by an existing job, or
	// by an earlier job of the batch) records nothing and gives the holder
	// with Duplicate set. Results are in the order of ps. At most
	// MaxEnqueueBatch jobs; an invalid one fails the call with an error
	// wrapping ErrInvalidArgument that names its index (jobs[i]), and
	// nothing is recorded.
	EnqueueBatch(ctx context.Context, ps []EnqueueParams) ([]EnqueueResult, error)
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
	ID string
	// Attempt is the delivery attempt, from 1. The job's new attempt is
	// the larger of it and one more than the stored attempt.
	Attempt int
	// Lease is the run's lease token: opaque, made by the caller, unique
	// per delivery (e.g. a UUID). Required.
	Lease string
	// LeaseFor is how long the lease lasts without a Heartbeat. Required,
	// positive.
	LeaseFor time.Duration
}

// HeartbeatParams are the arguments of Store.Heartbeat.
type HeartbeatParams struct {
	Leases   []LeaseRef    // at most MaxHeartbeatLeases
	LeaseFor time.Duration // each lease now lasts this long; positive
}

// ProgressParams are the arguments of Store.Progress.
type ProgressParams struct {
	ID       string
	Fraction float64
	Message  string
	// Lease, when set, makes the change apply only while the job runs
	// under this lease.
	Lease string
}

// SucceedParams are the arguments of Store.Succeed.
type SucceedParams struct {
	ID         string
	ResultType string
	Result     []byte
	// Lease, when set, makes the change apply only while the job runs
	// under this lease.
	Lease string
}

// FailParams are the arguments of Store.Fail.
type FailParams struct {
	ID      string
	Code    int32
	Message string
	// Retry puts the job back to Queued (another attempt will come); false
	// makes it Failed.
	Retry bool
	// Lease, when set, makes the change apply only while the job runs
	// under this lease. Leave it empty to fail a Queued job.
	Lease string
}

// ClaimOutboxParams are the arguments of Store.ClaimOutbox.
type ClaimOutboxParams struct {
	Limit    int           // at most this many entries, 1..MaxClaim
	Owner    string        // who claims (a relay's ID); required
	LeaseFor time.Duration // the claim lasts this long; positive
}

// RetryOutboxParams are the arguments of Store.RetryOutbox.
type RetryOutboxParams struct {
	ID    string    // the job whose entry failed to publish
	Due   time.Time // when to try again
	Error string    // what went wrong, recorded as the entry's LastError
}

// ThroughputParams are the arguments of Store.Throughput.
type ThroughputParams struct {
	Since time.Time     // the first bucket is the one holding Since
	Step  time.Duration // bucket width: a whole number of minutes, at least 1
}

// RescueParams are the arguments of Store.Rescue.
type RescueParams struct {
	// QueuedBefore: a Queued job with no outbox entry whose last activity
	// is before this is requeued. Its last activity is the latest of: when
	// it became Queued (its UpdateTime then), its RunAfter, its last
	// MarkSeen, and its last Rescue.
	QueuedBefore time.Time
	// LapsedBefore: a Running job whose lease lapsed before this is
	// released.
	LapsedBefore time.Time
	// Limit bounds each of the two lists, 1..MaxClaim.
	Limit int
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

	// Start moves a job to Running under the lease p.Lease until now +
	// p.LeaseFor, sets Attempt to max(p.Attempt, stored Attempt + 1) and,
	// on the first start, StartTime. It applies to a Queued job, and to a
	// Running one whose lease has lapsed (a takeover: the previous run's
	// worker is gone). On a job Running under p.Lease it changes nothing and
	// returns the job (a repeated call). On a job Running under another
	// live lease it changes nothing and returns the job and an error
	// wrapping ErrLeased (not ErrConflict); on a terminal job, the job and
	// an error wrapping ErrConflict.
	Start(ctx context.Context, p StartParams) (*Job, error)
	// Heartbeat extends to now + p.LeaseFor the lease of each job that is
	// Running under the given token, in one write, and returns the IDs of
	// the others (cancelled, finished, taken over, deleted): their runs
	// should stop.
	Heartbeat(ctx context.Context, p HeartbeatParams) (lost []string, err error)
	// Progress records progress of a Running job.
	Progress(ctx context.Context, p ProgressParams) error
	// Succeed moves Running to Succeeded with its result and clears the
	// lease.
	Succeed(ctx context.Context, p SucceedParams) (*Job, error)
	// Fail moves Running to Queued (Retry) or Failed, recording the error
	// and clearing the lease. A Failed with no Running (e.g. an undecodable
	// message for a Queued job) is also allowed from Queued (with no
	// Lease). A final Fail drops the job's outbox entry, if any.
	Fail(ctx context.Context, p FailParams) (*Job, error)
	// Cancel moves Queued or Running to Cancelled, clears the lease and
	// drops the job's outbox entry, if any. On a terminal job it returns the
	// job and an error wrapping ErrConflict.
	Cancel(ctx context.Context, id string) (*Job, error)
	// Cancelled returns which of ids (at most MaxBatchIDs) are Cancelled,
	// in one indexed read: a worker polls it for the jobs it runs.
	Cancelled(ctx context.Context, ids []string) ([]string, error)

	// Events returns the job's timeline, oldest first: one Event per change
	// of state or attempt since it was recorded. A job with no events (or no
	// such job) gives none and no error; DeleteFinished deletes a job's
	// events with it.
	Events(ctx context.Context, id string) ([]Event, error)

	// ClaimOutbox claims up to p.Limit due outbox entries (Due not after
	// now) that no one holds (never claimed, or the claim lapsed), oldest
	// due first, then in enqueue order: each is held by p.Owner until now +
	// p.LeaseFor, so that relays sharing the store never get an entry
	// another one holds. An entry with an OrderingKey is claimable only when
	// every entry of that key enqueued before it is in the outbox no more
	// (published or dropped) or is claimed in the same call, so the entries
	// of a key go out in enqueue order.
	ClaimOutbox(ctx context.Context, p ClaimOutboxParams) ([]OutboxEntry, error)
	// MarkSent removes the outbox entries of these jobs (at most
	// MaxBatchIDs).
	MarkSent(ctx context.Context, jobIDs []string) error
	// RetryOutbox records that the entry of job p.ID failed to publish: it
	// releases the claim, makes the entry due at p.Due, counts the attempt
	// and keeps p.Error as LastError. ErrNotFound when the job has no entry.
	RetryOutbox(ctx context.Context, p RetryOutboxParams) error
	// OutboxStats returns how many entries wait and the oldest one's Created.
	OutboxStats(ctx context.Context) (count int, oldest time.Time, err error)

	// MarkSeen records that a worker received a delivery of these Queued
	// jobs (at most MaxBatchIDs) and holds it (e.g. waiting for a rate-limit
	// token), so that Rescue leaves them alone. It records no event and
	// leaves UpdateTime as it is.
	MarkSeen(ctx context.Context, ids []string) error
	// Rescue, in one transaction, gives each Queued job with no outbox entry
	// and no activity since p.QueuedBefore an outbox entry due now, and puts
	// each Running job whose lease lapsed before p.LapsedBefore back to
	// Queued (same attempt, lease cleared, error code 14 UNAVAILABLE and a
	// message saying so) with an outbox entry due now; oldest first, at most
	// p.Limit of each. It keeps "an enqueued job is never lost" true
	// whatever lost its message.
	Rescue(ctx context.Context, p RescueParams) (RescueResult, error)

	// Counts returns how many jobs of each type are in each state, and the
	// oldest Queued job of each type, sorted by type, from counters the
	// store keeps with each change (cheap on any store size). Types with no
	// jobs left are omitted.
	Counts(ctx context.Context) ([]TypeCounts, error)
	// Throughput returns how many jobs of each type succeeded and failed in
	// each bucket of p.Step since p.Since, fleet-wide, by bucket then type;
	// buckets in which no job of a type ended are omitted. Buckets start at
	// whole multiples of p.Step since the Unix epoch; DeleteFinished drops
	// those older than its cutoff.
	Throughput(ctx context.Context, p ThroughputParams) ([]ThroughputPoint, error)

	// DeleteFinished deletes terminal jobs whose EndTime is before cutoff,
	// with their outbox entries and events, and the Throughput buckets that
	// ended before cutoff, and returns how many jobs it deleted.
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
