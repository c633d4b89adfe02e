package ingest

import (
	"errors"
	"fmt"
	"testing"

	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/jobs"
)

// TestDecide is the table of what a delivery's outcome means for the job
// record and the message; no Pub/Sub, no store.
func TestDecide(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name string
		o    outcome
		want verdict
	}{
		{"not started: job ended meanwhile", outcome{Err: fmt.Errorf("x: %w", jobs.ErrConflict)}, verdict{Ack: true}},
		{"not started: job deleted", outcome{Err: fmt.Errorf("x: %w", jobs.ErrNotFound)}, verdict{Ack: true}},
		{"not started: store down", outcome{Err: boom}, verdict{}},
		{"not started: stopping while waiting", outcome{Err: errStopping}, verdict{}},
		{"succeeded", outcome{Started: true, Attempt: 1, MaxAttempts: 3}, verdict{Record: recordSucceed, Ack: true}},
		{"succeeded on the last attempt", outcome{Started: true, Attempt: 3, MaxAttempts: 3}, verdict{Record: recordSucceed, Ack: true}},
		{"failed, attempts left", outcome{Started: true, Err: boom, Attempt: 1, MaxAttempts: 3}, verdict{Record: recordRetry}},
		{"failed on the last attempt", outcome{Started: true, Err: boom, Attempt: 3, MaxAttempts: 3}, verdict{Record: recordFail, DeadLetter: true, Ack: true}},
		{"failed past the last attempt", outcome{Started: true, Err: boom, Attempt: 7, MaxAttempts: 3}, verdict{Record: recordFail, DeadLetter: true, Ack: true}},
		{"permanent on the first attempt", outcome{Started: true, Err: handlers.Permanent(boom), Attempt: 1, MaxAttempts: 3}, verdict{Record: recordFail, DeadLetter: true, Ack: true}},
		{"timeout is retryable", outcome{Started: true, Err: fmt.Errorf("%w: x", handlers.ErrTimeout), Attempt: 1, MaxAttempts: 3}, verdict{Record: recordRetry}},
		{"panic is retryable", outcome{Started: true, Err: &handlers.PanicError{Value: 1}, Attempt: 1, MaxAttempts: 3}, verdict{Record: recordRetry}},
		{"cancelled while running", outcome{Started: true, Cancelled: true, Err: boom, Attempt: 1, MaxAttempts: 3}, verdict{Ack: true}},
		{"cancelled on the last attempt", outcome{Started: true, Cancelled: true, Err: boom, Attempt: 3, MaxAttempts: 3}, verdict{Ack: true}},
		{"worker stopping: retried even on the last attempt", outcome{Started: true, Stopping: true, Err: boom, Attempt: 3, MaxAttempts: 3}, verdict{Record: recordRetry}},
		{"worker stopping but the handler finished", outcome{Started: true, Stopping: true, Attempt: 1, MaxAttempts: 3}, verdict{Record: recordSucceed, Ack: true}},
		{"lease lost", outcome{Started: true, LeaseLost: true, Err: boom, Attempt: 1, MaxAttempts: 3}, verdict{Ack: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := decide(tc.o); got != tc.want {
				t.Fatalf("decide(%+v) = %+v, want %+v", tc.o, got, tc.want)
			}
		})
	}
}
