package jobs

import (
	"context"
	"time"
)

// Limits is the optional capability of a store shared by replicas (jobs/
// postgres) to keep rate-limit buckets and concurrency slots that hold
// across every process using it, so that a limit of 50/s is 50/s for the
// fleet. It is a separate interface, not part of Store: a store that does
// not implement it (jobs/sqlite, one process) gets per-process limits.
// Package limits builds handlers' limiters on it, amortising round trips.
//
// Times are the store's own clock (the database server's), so that
// replicas whose clocks differ still share one schedule; durations returned
// are from the moment the store answered.
type Limits interface {
	// TakeTokens takes up to p.Want tokens of the GCRA bucket p.Bucket
	// (created full on first use; one every p.Interval, at most p.Burst at
	// once), in one round trip: as many as are free within p.MaxWait. With
	// none free by then it takes none and says when one is (RetryAfter);
	// with p.Queue, each such refusal also gets a place of its own in a
	// line of refused callers, spaced p.Interval apart, so that callers
	// that come back at their RetryAfter do not all come at once.
	TakeTokens(ctx context.Context, p TakeTokensParams) (TokenGrant, error)
	// TakeSlots takes concurrency slots of p.Name for the holders
	// p.Holders (each unique, e.g. one per run or per slot a replica keeps),
	// in order, until now + p.LeaseFor, as many as p.Max live slots allow,
	// in one round trip, and returns how many: the first that many holders
	// have one. A holder that has a slot keeps it (renewed). Slots whose
	// lease lapsed (their worker died) are free again.
	TakeSlots(ctx context.Context, p TakeSlotsParams) (int, error)
	// RenewSlots extends to now + leaseFor the slots of these holders (at
	// most MaxBatchIDs), in one write.
	RenewSlots(ctx context.Context, holders []string, leaseFor time.Duration) error
	// ReleaseSlots frees the slots of these holders (at most MaxBatchIDs).
	ReleaseSlots(ctx context.Context, holders []string) error
}

// TakeTokensParams are the arguments of Limits.TakeTokens.
type TakeTokensParams struct {
	Bucket   string        // the bucket's name (e.g. the type and the key); at most 2048 bytes of valid UTF-8 without NUL
	Interval time.Duration // one token every Interval (1/rate); at least 1µs
	Burst    int           // at most this many tokens at once; at least 1
	Want     int           // take up to this many; at least 1
	MaxWait  time.Duration // take only tokens free within this; 0: free now
	Queue    bool          // on a refusal, give the caller a place in the line of refused callers
}

// TokenGrant is what Limits.TakeTokens took.
type TokenGrant struct {
	// Granted tokens were taken: token i (from 0) is free at First +
	// i*Interval from now (First may be negative: free already; never
	// later than MaxWait).
	Granted int
	First   time.Duration
	// RetryAfter, when Granted is 0, is when to ask again, from now.
	RetryAfter time.Duration
}

// Deferrer is the optional capability of a store to put a QUEUED job's
// message off: Defer gives the job an outbox entry due at due, so that the
// relay publishes it again then, and the worker that holds its message now
// can ack it instead of holding it (a job throttled by a fleet-wide limit
// must not occupy a worker's slots). It applies to a QUEUED job with no
// ordering key and no outbox entry; otherwise it changes nothing and
// returns an error wrapping ErrConflict (the caller nacks instead).
type Deferrer interface {
	Defer(ctx context.Context, id string, due time.Time) error
}

// TakeSlotsParams are the arguments of Limits.TakeSlots.
type TakeSlotsParams struct {
	Name     string        // the limit's name (e.g. the type and the key); at most 2048 bytes of valid UTF-8 without NUL
	Max      int           // live slots allowed at once; at least 1
	Holders  []string      // who take them, 1..1000, each at most MaxLeaseBytes
	LeaseFor time.Duration // a slot lapses this long after the take or the last RenewSlots
}
