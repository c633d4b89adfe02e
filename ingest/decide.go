package ingest

import (
	"errors"

	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/jobs"
)

// outcome is what happened to one delivery once its chain returned: the
// facts settle decides on. It holds no Pub/Sub or store handles, so decide
// is a pure function with a table test.
type outcome struct {
	// Started: the chain got past markRunning (the store recorded the
	// attempt as RUNNING). When false, Err says why it stopped before.
	Started bool
	// Err is the chain's error: the handler's when Started, else why the
	// job did not start (a store refusal, a wait cut short by shutdown).
	Err error
	// Cancelled: CancelJob ended the running handler. Stopping: the worker's
	// Shutdown deadline (or Close) did. LeaseLost: the job's lease was lost
	// while it ran (another delivery took it over, or the rescuer released
	// it).
	Cancelled, Stopping, LeaseLost bool
	// Attempt and MaxAttempts of this run.
	Attempt, MaxAttempts int
}

// record is the job store change a verdict asks for.
type record int

const (
	recordNothing record = iota
	recordSucceed        // RUNNING → SUCCEEDED with the result
	recordRetry          // RUNNING → QUEUED with the error: another attempt comes
	recordFail           // → FAILED with the error: no attempt comes
)

// verdict is what to do with a delivery: record, optionally dead-letter
// first, then ack or nack. When the dead letter or the record fails, the
// message is nacked instead (and a failed dead letter is recorded as a retry):
// settle does that, the verdict only says what success looks like.
type verdict struct {
	Record     record
	DeadLetter bool // publish a copy to the dead-letter topic before recording
	Ack        bool // ack (done with the message) or nack (Pub/Sub redelivers)
}

// decide maps an outcome to a verdict.
func decide(o outcome) verdict {
	if !o.Started {
		switch {
		case gone(o.Err):
			// The job ended (or was deleted) between the read and Start:
			// another delivery finished it, or it was cancelled.
			return verdict{Ack: true}
		default:
			// A store error, another worker's live lease (the duplicate
			// comes back after the retry backoff, and is acked once the
			// first run ends), or the worker stopping while the attempt
			// waited for a token or a slot: try again later.
			return verdict{}
		}
	}
	switch {
	case o.Cancelled:
		// Cancel recorded CANCELLED already.
		return verdict{Ack: true}
	case o.LeaseLost:
		// Another delivery owns the job now (a takeover), or the rescuer
		// republished it: this run's outcome no longer counts.
		return verdict{Ack: true}
	case o.Err == nil:
		return verdict{Record: recordSucceed, Ack: true}
	case o.Stopping:
		return verdict{Record: recordRetry}
	case handlers.IsPermanent(o.Err) || o.Attempt >= o.MaxAttempts:
		return verdict{Record: recordFail, DeadLetter: true, Ack: true}
	default:
		return verdict{Record: recordRetry}
	}
}

// gone reports whether a store error means the job moved on without this
// delivery: it ended (cancelled, finished by another delivery) or was
// deleted.
func gone(err error) bool {
	return errors.Is(err, jobs.ErrConflict) || errors.Is(err, jobs.ErrNotFound)
}
