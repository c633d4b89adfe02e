package handlers

import (
	"context"
	"log/slog"
	"runtime/debug"
)

// Recover turns a panic in next into a *PanicError (retryable) and logs it,
// with the stack, at error level on logger (nil means slog.Default()).
func Recover(logger *slog.Logger) Middleware {
	if logger == nil {
		logger = slog.Default()
	}
	return func(next Handler) Handler {
		return func(ctx context.Context, req *Request) (res protoMessage, err error) {
			defer func() {
				if v := recover(); v != nil {
					pe := &PanicError{Value: v, Stack: debug.Stack()}
					logger.ErrorContext(ctx, "handlers: handler panicked",
						"job_id", req.ID, "type", req.Type, "attempt", req.Attempt,
						"panic", v, "stack", string(pe.Stack))
					res, err = nil, pe
				}
			}()
			return next(ctx, req)
		}
	}
}
