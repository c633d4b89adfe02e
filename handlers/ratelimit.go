package handlers

import (
	"context"
	"errors"
	"fmt"
)

// KeyFunc names the rate-limit bucket of an attempt. nil means one bucket
// per job type.
type KeyFunc func(req *Request) string

// LabelKey returns a KeyFunc that gives each value of the job label name a
// bucket of its own (per customer, per tenant…), e.g. for the config's
// `rateKey: label:customer`. Jobs without the label share the bucket of
// the empty value.
func LabelKey(name string) KeyFunc {
	return func(req *Request) string { return req.Type + "\x00" + req.Labels[name] }
}

// RateLimit makes each attempt wait for a token from lim (its bucket named
// by key; nil key means by type) before it runs; the caller, and so the
// Pub/Sub message, is held while it waits. If ctx ends first the token is
// given back and ctx's error returned, so the runner nacks. Under a context
// from WithoutWaiting it does not wait: the token is given back and a
// *BusyError says when one will be there; a limiter may also return a
// *BusyError itself (package limits does, past its longest wait), which is
// passed on as it is. Any other limiter error
// (no token could be had) is returned as a retryable error. clock nil means
// the real clock.
func RateLimit(lim Limiter, key KeyFunc, clock Clock) Middleware {
	if clock == nil {
		clock = realClock{}
	}
	return func(next Handler) Handler {
		return func(ctx context.Context, req *Request) (protoMessage, error) {
			k := req.Type
			if key != nil {
				k = key(req)
			}
			d, cancel, err := lim.Reserve(ctx, k)
			if err != nil {
				var busy *BusyError
				if errors.As(err, &busy) { // a limiter that does not make callers wait that long
					busy.Type = req.Type
					return nil, busy
				}
				return nil, fmt.Errorf("handlers: rate limit of %s: %w", req.Type, err)
			}
			if d > 0 && !waits(ctx) {
				cancel()
				return nil, &BusyError{Type: req.Type, Limit: "rate limit", RetryAfter: d}
			}
			if d > 0 {
				select {
				case <-clock.After(d):
				case <-ctx.Done():
					cancel()
					return nil, fmt.Errorf("handlers: waiting for a rate-limit token for %s: %w", req.Type, context.Cause(ctx))
				}
			}
			return next(ctx, req)
		}
	}
}
