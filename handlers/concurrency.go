package handlers

import (
	"context"
	"errors"
	"fmt"
)

// Concurrency lets at most n attempts run next at once; the others wait,
// holding their message, until a slot frees or ctx ends (then ctx's error is
// returned, so the runner nacks); under a context from WithoutWaiting they
// return a *BusyError at once instead. n <= 0 means no bound.
func Concurrency(n int) Middleware {
	if n <= 0 {
		return func(next Handler) Handler { return next }
	}
	slots := make(chan struct{}, n)
	return func(next Handler) Handler {
		return func(ctx context.Context, req *Request) (protoMessage, error) {
			select {
			case slots <- struct{}{}:
			default:
				if !waits(ctx) {
					return nil, &BusyError{Type: req.Type, Limit: fmt.Sprintf("concurrency limit (%d)", n)}
				}
				select {
				case slots <- struct{}{}:
				case <-ctx.Done():
					return nil, fmt.Errorf("handlers: waiting for one of %d concurrency slots for %s: %w", n, req.Type, context.Cause(ctx))
				}
			}
			defer func() { <-slots }()
			return next(ctx, req)
		}
	}
}

// SlotLimiter hands out concurrency slots, per key, from somewhere other
// than this process (package limits: slots in a store shared by every
// replica, so that a bound holds fleet-wide).
type SlotLimiter interface {
	// Acquire takes a slot of key and returns the func that frees it
	// (safe to call more than once). When none is free it returns a
	// *BusyError at once: it does not wait.
	Acquire(ctx context.Context, key string) (release func(), err error)
}

// SharedConcurrency runs next only with a slot of lim (its key named by
// key; nil key means by type), freed when next returns. A full limit
// returns lim's *BusyError, so the runner puts the message off (or answers
// a push 429) instead of holding it; any other error of lim is retryable.
func SharedConcurrency(lim SlotLimiter, key KeyFunc) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, req *Request) (protoMessage, error) {
			k := req.Type
			if key != nil {
				k = key(req)
			}
			release, err := lim.Acquire(ctx, k)
			if err != nil {
				var busy *BusyError
				if errors.As(err, &busy) {
					busy.Type = req.Type
					return nil, busy
				}
				return nil, fmt.Errorf("handlers: concurrency limit of %s: %w", req.Type, err)
			}
			defer release()
			return next(ctx, req)
		}
	}
}
