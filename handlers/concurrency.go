package handlers

import (
	"context"
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
