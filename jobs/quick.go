package jobs

import (
	"context"
	"time"
)

// StartSucceedParams are the arguments of StartSucceeder.StartSucceed.
type StartSucceedParams struct {
	ID string
	// Attempt is the delivery attempt, as in StartParams: the job's new
	// attempt is the larger of it and one more than the stored attempt.
	Attempt int
	// Started is when the handler began: the job's StartTime (unless an
	// earlier attempt set it) and the time of its Running event.
	Started    time.Time
	ResultType string
	Result     []byte
}

// StartSucceeder records a quick run in one write: a worker that knows no
// other process can run the job meanwhile (the store is one process's, like
// the embedded SQLite store) runs a Queued job's handler without recording
// Running first, and, when the handler succeeds within a moment, records
// its start and its end at once. A handler that runs longer, reports
// progress or fails is recorded Running (Store.Start) before anything else,
// as usual. Stores shared by several processes do not implement it: there a
// run must hold its lease before the handler starts, so that another
// replica's delivery of the job waits for it.
type StartSucceeder interface {
	// StartSucceed moves a Queued job to Succeeded with its result, sets
	// its attempt (as Start would) and its StartTime (unless set), and
	// records both events in order: Running at p.Started, then Succeeded.
	// It returns what the write did (not the whole job: reading it back
	// would cost as much as the write). ErrNotFound when there is no such
	// job; an error wrapping ErrConflict when it is not Queued (it was
	// cancelled, or started elsewhere).
	StartSucceed(ctx context.Context, p StartSucceedParams) (*QuickEnd, error)
}

// QuickEnd is what StartSucceed reports of the job it ended: enough to
// count the start and the end, as for a Start and a Succeed.
type QuickEnd struct {
	Type    string
	Attempt int // the job's attempt now
	// CreateTime and RunAfter are the job's; StartTime is its first
	// attempt's (p.Started unless an earlier attempt ran); EndTime is now.
	CreateTime, RunAfter, StartTime, EndTime time.Time
}
