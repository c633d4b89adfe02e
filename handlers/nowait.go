package handlers

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrBusy is wrapped by the error RateLimit and Concurrency return, under a
// context from WithoutWaiting, instead of waiting for a token or a slot.
var ErrBusy = errors.New("handlers: over the limit")

// BusyError is what RateLimit and Concurrency return under a context from
// WithoutWaiting when the attempt would have to wait. It wraps ErrBusy.
type BusyError struct {
	Type  string // the job type
	Limit string // "rate limit" or "concurrency limit"
	// RetryAfter is when a token will be there (rate limit), from now; 0
	// when unknown (a slot frees when a running attempt ends).
	RetryAfter time.Duration
	// Hold asks a caller that can hold its message (a pulled one) to wait
	// RetryAfter and try again, rather than put the message off: the
	// limit is the type's own, so held messages starve no other key.
	Hold bool
}

func (e *BusyError) Error() string {
	if e.RetryAfter > 0 {
		return fmt.Sprintf("handlers: %s of %s reached; a token is free in %v", e.Limit, e.Type, e.RetryAfter)
	}
	return fmt.Sprintf("handlers: %s of %s reached", e.Limit, e.Type)
}

func (e *BusyError) Unwrap() error { return ErrBusy }

type noWaitKey struct{}

// WithoutWaiting returns a context under which RateLimit and Concurrency do
// not wait: an attempt that would wait for a token or a slot returns a
// *BusyError at once (the token is given back). It is for callers that
// cannot hold their message while it waits, such as a Pub/Sub push request,
// which is answered 429 instead so that Pub/Sub backs off. The limits' state
// (buckets, slots) is the same either way: one chain serves both kinds of
// caller.
func WithoutWaiting(ctx context.Context) context.Context {
	return context.WithValue(ctx, noWaitKey{}, true)
}

// waits reports whether the middleware may wait under ctx.
func waits(ctx context.Context) bool {
	no, _ := ctx.Value(noWaitKey{}).(bool)
	return !no
}
