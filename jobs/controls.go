package jobs

import (
	"context"
	"errors"
	"time"
)

// Job controls beyond the Store interface: periodic schedules, paused job
// types and snoozed runs. Each is an optional interface that a store may
// implement besides Store (jobs/sqlite and jobs/postgres implement all of
// them); callers find it with a type assertion on the undecorated store and,
// when the store lacks it, say so (FailedPrecondition, a config error)
// rather than fail later. They are kept out of Store so that a store can be
// written without them.

// MaxScheduleNameBytes bounds a schedule's name (its jobs' idempotency
// keys hold it and the tick).
const MaxScheduleNameBytes = 200

// ErrExists: a create found the name taken (CreateSchedule).
var ErrExists = errors.New("jobs: already exists")

// Missed says what a schedule does with the ticks it missed (the fleet was
// down, or the schedule was due while every scheduler was stopped).
type Missed string

const (
	// MissedSkip (the default): a tick seen later than the scheduler's grace
	// after its time enqueues nothing; the schedule goes on from the next
	// tick.
	MissedSkip Missed = "skip"
	// MissedCatchUp: every missed tick enqueues its job, oldest first.
	MissedCatchUp Missed = "catch_up"
)

// Valid reports whether m is MissedSkip or MissedCatchUp.
func (m Missed) Valid() bool { return m == MissedSkip || m == MissedCatchUp }

// Schedule is a periodic job: at each tick of Cron (in TimeZone) or of
// Every, one job of Type with Payload is enqueued, fleet-wide. The store
// knows nothing of cron: the scheduler computes ticks and stores NextTime.
type Schedule struct {
	Name        string // unique; 1..MaxScheduleNameBytes
	Type        string // the job type (full protobuf name of Payload)
	Payload     []byte
	Labels      map[string]string
	MaxAttempts int // recorded on each job; 0 means the handler's

	Cron     string        // a cron expression; "" when Every is set
	TimeZone string        // the IANA zone of Cron; "" means UTC
	Every    time.Duration // a fixed interval (ticks at whole multiples since the Unix epoch); 0 when Cron is set
	Missed   Missed

	Paused     bool
	FromConfig bool // defined by the config file (PutSchedule) rather than CreateSchedule

	// NextTime is the next tick to fire. LastTime is the last tick fired or
	// skipped (zero before the first) and LastJobID the job of the last
	// fired one.
	NextTime  time.Time
	LastTime  time.Time
	LastJobID string

	CreateTime, UpdateTime time.Time
}

// FireParams are the arguments of Schedules.FireSchedule.
type FireParams struct {
	Name string
	// Tick is the schedule's NextTime as the caller read it: the call
	// applies only while it still is (another replica did not fire it).
	Tick time.Time
	// Next becomes NextTime; after Tick.
	Next time.Time
	// Job, when its Type is set, is enqueued (with its outbox entry) in the
	// same transaction; its IdempotencyKey should name the schedule and the
	// tick, so that even a replayed tick enqueues nothing twice. Type "" skips
	// the tick: NextTime moves on, nothing is enqueued.
	Job Job
}

// Schedules stores schedules and claims their ticks.
type Schedules interface {
	// CreateSchedule records a new schedule (FromConfig false), or returns
	// an error wrapping ErrExists when one has its Name.
	CreateSchedule(ctx context.Context, s Schedule) (*Schedule, error)
	// PutSchedule records s (FromConfig true) or replaces the definition of
	// the schedule of its Name: Type, Payload, Labels, MaxAttempts, Cron,
	// TimeZone, Every and Missed. NextTime is replaced only when Cron,
	// TimeZone or Every changed (or the schedule is new); Paused and the
	// last tick are kept. Replicas that start with one config put the same
	// schedules without disturbing them.
	PutSchedule(ctx context.Context, s Schedule) (*Schedule, error)
	// GetSchedule returns the schedule, or an error wrapping ErrNotFound.
	GetSchedule(ctx context.Context, name string) (*Schedule, error)
	// ListSchedules returns every schedule, by Name.
	ListSchedules(ctx context.Context) ([]*Schedule, error)
	// PauseSchedule sets Paused; when next is not zero it becomes NextTime
	// (a resumed schedule goes on from its next tick, not from those it
	// missed while paused). ErrNotFound when there is none.
	PauseSchedule(ctx context.Context, name string, paused bool, next time.Time) (*Schedule, error)
	// DeleteSchedule deletes the schedule; ErrNotFound when there is none.
	// The jobs it enqueued stay.
	DeleteSchedule(ctx context.Context, name string) error
	// FireSchedule moves the schedule's NextTime from p.Tick to p.Next and,
	// in the same transaction, enqueues p.Job (unless its Type is ""): the
	// claim that makes each tick enqueue one job across all replicas. It
	// applies only while the schedule is not paused and its NextTime is
	// p.Tick; otherwise it changes nothing and returns fired false. job is
	// the enqueued job (nil when skipped, or when a job of the type already
	// had the idempotency key).
	FireSchedule(ctx context.Context, p FireParams) (job *Job, fired bool, err error)
}

// PausedType is a job type whose workers stop pulling (TypePauser).
type PausedType struct {
	Type  string
	Since time.Time
}

// TypePauser stores which job types are paused, fleet-wide.
type TypePauser interface {
	// PauseType pauses typ (again: nothing changes) and returns its entry.
	PauseType(ctx context.Context, typ string) (PausedType, error)
	// ResumeType resumes typ; resumed reports whether it was paused.
	ResumeType(ctx context.Context, typ string) (resumed bool, err error)
	// PausedTypes lists the paused types, by Type.
	PausedTypes(ctx context.Context) ([]PausedType, error)
}

// SnoozeParams are the arguments of Snoozer.Snooze.
type SnoozeParams struct {
	ID    string
	Lease string // the run's lease; required
	// Until is when the job runs again: its RunAfter and its new outbox
	// entry's due time.
	Until time.Time
	// CountAttempt keeps the attempt that just ran as a failed one (retry
	// later); false gives it back (snooze: the next run has the same
	// attempt number).
	CountAttempt bool
	// Code and Message are recorded as the job's error (e.g. 0 and "snoozed
	// until ...").
	Code    int32
	Message string
}

// ErrOutboxBusy: Snooze found the job's outbox entry claimed by a relay
// that is publishing it (the message being handled was published a moment
// ago, and the relay has not yet removed its entry). Nothing changed; try
// again in a moment (the claim ends with MarkSent, or lapses).
var ErrOutboxBusy = errors.New("jobs: the job's outbox entry is being published; try again shortly")

// Snoozer puts a running job back to wait in the store: how courier runs a
// job again after a delay longer than Pub/Sub's retry policy allows.
type Snoozer interface {
	// Snooze moves a job Running under p.Lease back to Queued with RunAfter
	// p.Until and an outbox entry due then, clears the lease and records a
	// Queued event with p.Message. Without CountAttempt the attempt goes
	// back by one. ErrConflict when the job is not Running under p.Lease;
	// ErrOutboxBusy (changing nothing) while a relay holds a live claim on
	// the job's outbox entry, since its MarkSent would remove the new one.
	Snooze(ctx context.Context, p SnoozeParams) (*Job, error)
}
