// Package demo holds the handlers of courier's demo job types,
// courier.demo.v1.Echo and courier.demo.v1.Sleep, which the embedded demo
// stack and courier's own tests register with Register. They are examples
// and test fixtures, not handlers to build on.
package demo

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/courierq/courier/handlers"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
)

// Config configures the demo handlers. The zero value is valid.
type Config struct {
	// Echo and Sleep configure each handler (rate limit, attempts, ...).
	Echo, Sleep handlers.Config
	// ProgressSteps is how many progress reports Sleep makes. 0 means 10.
	ProgressSteps int
}

// Register registers the Echo and Sleep handlers in reg.
func Register(reg *handlers.Registry, cfg Config) error {
	if err := handlers.Register(reg, Echo, cfg.Echo); err != nil {
		return err
	}
	steps := cfg.ProgressSteps
	if steps <= 0 {
		steps = 10
	}
	return handlers.Register(reg, func(ctx context.Context, job *handlers.Job[*demov1.Sleep]) (*demov1.SleepResult, error) {
		return sleep(ctx, job, steps)
	}, cfg.Sleep)
}

// Echo returns the job's message as its result.
func Echo(_ context.Context, job *handlers.Job[*demov1.Echo]) (*demov1.EchoResult, error) {
	return &demov1.EchoResult{Message: job.Payload.GetMessage()}, nil
}

// sleep fails permanently when asked, fails retryably during the first
// fail_attempts attempts, and otherwise sleeps for the duration in steps,
// reporting progress after each; it stops early when ctx ends.
func sleep(ctx context.Context, job *handlers.Job[*demov1.Sleep], steps int) (*demov1.SleepResult, error) {
	p := job.Payload
	if p.GetPermanentFailure() {
		return nil, handlers.Permanent(fmt.Errorf("demo: Sleep job %s asked for a permanent failure", job.ID))
	}
	if job.Attempt <= int(p.GetFailAttempts()) {
		return nil, fmt.Errorf("demo: Sleep job %s fails attempt %d of the first %d, as asked", job.ID, job.Attempt, p.GetFailAttempts())
	}
	d := p.GetDuration().AsDuration()
	if d < 0 {
		return nil, handlers.Permanent(fmt.Errorf("demo: Sleep duration %v is negative; use 0 or more", d))
	}
	start := time.Now()
	if d > 0 {
		step := d / time.Duration(steps)
		t := time.NewTimer(step)
		defer t.Stop()
		for i := 1; i <= steps; i++ {
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("demo: Sleep job %s stopped after %v: %w", job.ID, time.Since(start).Round(time.Millisecond), context.Cause(ctx))
			case <-t.C:
			}
			job.Progress(ctx, float64(i)/float64(steps), fmt.Sprintf("slept %v of %v", time.Duration(i)*step, d))
			t.Reset(step)
		}
	}
	return &demov1.SleepResult{Attempt: int32(job.Attempt), Slept: durationpb.New(time.Since(start))}, nil
}
