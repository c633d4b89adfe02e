package handlers

import "context"

// AdmitFunc is called once an attempt has passed the waits (rate limit,
// concurrency) and is about to run. It returns the context the attempt runs
// with (which may differ from the waiting one: a runner that is draining stops
// waits at once but lets admitted attempts finish), or an error that ends the
// attempt before it runs.
type AdmitFunc func(ctx context.Context) (context.Context, error)

// Admit calls req.Admit, when set, and runs next with the context it
// returns; an Admit error is returned as is and next does not run.
func Admit() Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, req *Request) (protoMessage, error) {
			if req.Admit != nil {
				runCtx, err := req.Admit(ctx)
				if err != nil {
					return nil, err
				}
				ctx = runCtx
			}
			return next(ctx, req)
		}
	}
}
