package handlers

import (
	"errors"
	"fmt"
	"time"
)

// RetryAfter asks for the job to run again after d. The attempt counts as
// a failed one, as with any retryable error (after the last attempt the job
// fails), but the next attempt comes after d rather than after the
// subscription's retry backoff. d may be hours or days: the job waits in the
// job store (QUEUED, run_after) and its message is published again when due,
// since Pub/Sub's own backoff stops at 600 s. A d below zero counts as 0.
func RetryAfter(d time.Duration) error { return &DelayError{Delay: max(d, 0)} }

// Snooze asks for the job to run again after d without counting this
// attempt: the next run has the same attempt number, so a job may snooze
// any number of times (e.g. polling for something that is not ready yet).
// It waits in the job store like RetryAfter. A d below zero counts as 0.
func Snooze(d time.Duration) error { return &DelayError{Delay: max(d, 0), Snooze: true} }

// DelayError is the error of RetryAfter and Snooze. Set Err to record why
// (it is the job's error message meanwhile).
type DelayError struct {
	Delay  time.Duration
	Snooze bool  // false: RetryAfter (the attempt counts)
	Err    error // optional cause
}

func (e *DelayError) Error() string {
	what := "retry after"
	if e.Snooze {
		what = "snoozed for"
	}
	if e.Err != nil {
		return fmt.Sprintf("handlers: %s %v: %v", what, e.Delay, e.Err)
	}
	return fmt.Sprintf("handlers: %s %v", what, e.Delay)
}

func (e *DelayError) Unwrap() error { return e.Err }

// AsDelay returns the DelayError in err's chain, if any.
func AsDelay(err error) (*DelayError, bool) {
	var d *DelayError
	ok := errors.As(err, &d)
	return d, ok
}
