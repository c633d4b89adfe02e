package handlers

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/time/rate"
)

// RateLimit makes each attempt wait for a token from lim before it runs; the
// caller (and so the Pub/Sub message) is held while it waits. If ctx ends
// first the token is given back and ctx's error returned, so the runner nacks.
// A request that can never get a token (burst 0 with a finite limit) fails at
// once with a retryable error. clock nil means the real clock.
func RateLimit(lim *rate.Limiter, clock Clock) Middleware {
	return RateLimitObserved(lim, clock, nil, nil)
}

// RateLimitObserved is RateLimit that also reports, when onWait is not nil,
// how long each admitted request waited for its token (0 when one was at
// hand), and, when onWaiting is not nil, each request that starts (+1) and
// stops (-1) waiting, so a gauge can show how many wait now. Both run on the
// request's goroutine.
func RateLimitObserved(lim *rate.Limiter, clock Clock, onWait func(typ string, waited time.Duration), onWaiting func(typ string, delta int)) Middleware {
	if clock == nil {
		clock = realClock{}
	}
	return func(next Handler) Handler {
		return func(ctx context.Context, req *Request) (_ protoMessage, err error) {
			now := clock.Now()
			r := lim.ReserveN(now, 1)
			if !r.OK() {
				return nil, fmt.Errorf("handlers: rate limit %v/s with burst %d can never admit %s; raise Burst to at least 1", float64(lim.Limit()), lim.Burst(), req.Type)
			}
			d := r.DelayFrom(now)
			if d > 0 {
				if onWaiting != nil {
					onWaiting(req.Type, +1)
				}
				select {
				case <-clock.After(d):
					if onWaiting != nil {
						onWaiting(req.Type, -1)
					}
				case <-ctx.Done():
					if onWaiting != nil {
						onWaiting(req.Type, -1)
					}
					r.CancelAt(clock.Now())
					return nil, fmt.Errorf("handlers: waiting for a rate-limit token for %s: %w", req.Type, context.Cause(ctx))
				}
			}
			if onWait != nil {
				onWait(req.Type, max(d, 0))
			}
			return next(ctx, req)
		}
	}
}
