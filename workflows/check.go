package workflows

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/courierq/courier/handlers"
)

// EnqueueLimit returns a jobservice.TypeInfo.Check hook that admits at most
// ratePerSecond enqueues per second of a job type, with bursts of up to
// burst (a golang.org/x/time/rate token bucket). Over the limit it answers at
// once, without waiting, with a ResourceExhausted status error whose details
// hold a google.rpc.RetryInfo saying when a token will be free; the service
// then records nothing. now is the clock (nil means time.Now), injectable so
// tests give instants instead of sleeping.
//
// The limit is per process: replicas of the service each admit the rate.
// It returns an error naming the bad argument when ratePerSecond is not
// positive or burst is below 1.
func EnqueueLimit(ratePerSecond float64, burst int, now func() time.Time) (func(ctx context.Context) error, error) {
	switch {
	case !(ratePerSecond > 0) || math.IsInf(ratePerSecond, 0):
		return nil, fmt.Errorf("workflows: EnqueueLimit rate is %v per second; use a positive number", ratePerSecond)
	case burst < 1:
		return nil, fmt.Errorf("workflows: EnqueueLimit burst is %d; use 1 or more", burst)
	}
	if now == nil {
		now = time.Now
	}
	lim := rate.NewLimiter(rate.Limit(ratePerSecond), burst)
	var mu sync.Mutex // makes reserve-then-cancel one step
	return func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		t := now()
		r := lim.ReserveN(t, 1)
		delay := r.DelayFrom(t)
		if delay == 0 {
			return nil
		}
		r.CancelAt(t) // give the token back: this enqueue is refused
		st := status.Newf(codes.ResourceExhausted,
			"workflows: enqueue rate limit of %g per second (burst %d) for this job type reached; retry in %v", ratePerSecond, burst, delay.Round(time.Millisecond))
		if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(delay)}); err == nil {
			st = d
		}
		return st.Err()
	}, nil
}

// RequireTemporal returns a jobservice.TypeInfo.Check hook for a workflow
// job type in a process that has no Temporal configured (the embedded demo):
// every enqueue of it is refused with FailedPrecondition saying how to run
// it, so no job is recorded that no worker could run.
func RequireTemporal(typeName string) func(ctx context.Context) error {
	return func(context.Context) error {
		return status.Errorf(codes.FailedPrecondition,
			"workflows: %s is a Temporal workflow job type and this server has no Temporal configured; start the demo with `make run-temporal` (a local Temporal dev server), or give courierd --config a temporal section (hostPort, namespace, taskQueue)", typeName)
	}
}

// EnqueueLimitOver is EnqueueLimit over a handlers.Limiter whose buckets
// may live elsewhere (package limits: in a store shared by every replica,
// so that the limit holds fleet-wide): an enqueue takes a token at once or
// is refused, as EnqueueLimit says, with the limiter's wait as the retry
// delay. ratePerSecond and burst only word the refusal.
func EnqueueLimitOver(lim handlers.Limiter, ratePerSecond float64, burst int) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		delay, cancel, err := lim.Reserve(ctx, "")
		var busy *handlers.BusyError
		switch {
		case errors.As(err, &busy):
			delay = busy.RetryAfter
		case err != nil:
			return status.Errorf(codes.Unavailable, "workflows: the enqueue rate limit cannot be checked: %v; retry", err)
		case delay == 0:
			return nil
		default:
			cancel()
		}
		st := status.Newf(codes.ResourceExhausted,
			"workflows: enqueue rate limit of %g per second (burst %d) for this job type reached across the fleet; retry in %v", ratePerSecond, burst, delay.Round(time.Millisecond))
		if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(delay)}); err == nil {
			st = d
		}
		return st.Err()
	}
}
