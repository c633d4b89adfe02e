package handlers

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Timeout gives each attempt a context that ends after d, cancelled with
// ErrTimeout as its cause. When the attempt then fails, its error is wrapped
// so that errors.Is(err, ErrTimeout) holds; a timeout is retryable. d <= 0
// means no timeout.
func Timeout(d time.Duration) Middleware {
	if d <= 0 {
		return func(next Handler) Handler { return next }
	}
	return func(next Handler) Handler {
		return func(ctx context.Context, req *Request) (protoMessage, error) {
			ctx, cancel := context.WithTimeoutCause(ctx, d, ErrTimeout)
			defer cancel()
			res, err := next(ctx, req)
			if err != nil && errors.Is(context.Cause(ctx), ErrTimeout) && !errors.Is(err, ErrTimeout) {
				err = fmt.Errorf("%w after %v: %w", ErrTimeout, d, err)
			}
			return res, err
		}
	}
}
