package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// RescuerConfig configures a Rescuer. The zero value of each field but Store
// means its default.
type RescuerConfig struct {
	// Store is the store to rescue jobs in. Required.
	Store Store
	// After is how long a job may stay Queued with nothing in the outbox
	// and no worker holding its message (MarkSeen), or Running past its
	// lease, before it is put back on its way. It must be longer than the
	// longest wait of a message in a Pub/Sub backlog: a rescued job whose
	// message was only late runs once, but its message comes twice.
	// Default 1 hour.
	After time.Duration
	// Interval is the time between passes. Default After/10, between 1s and
	// 1 minute.
	Interval time.Duration
	// Limit bounds the jobs of each kind one pass rescues (more are left
	// for the next). Default 500.
	Limit int
	// Now returns the current time; tests set it to give instants.
	// Default time.Now.
	Now func() time.Time
	// Logger receives a line per pass that rescued jobs, and per failed
	// pass. Default slog.Default().
	Logger *slog.Logger
}

// Rescuer keeps "an ID returned by EnqueueJob is never lost" true whatever
// lost the job's message (an in-memory emulator restarted, a subscription
// deleted, messages past their retention, a worker that died while it ran
// a job and whose message will not come back): every Interval it calls
// Store.Rescue, which gives each Queued job with no outbox entry and no sign
// of life for After a new outbox entry, and puts each Running job whose lease
// lapsed more than After ago back to Queued with an outbox entry; the
// outbox relay publishes them. Several replicas may each run one (Rescue is
// one transaction, and a rescued job is left alone for another After).
type Rescuer struct {
	cfg RescuerConfig
}

// NewRescuer validates cfg and applies its defaults. It starts nothing.
func NewRescuer(cfg RescuerConfig) (*Rescuer, error) {
	if cfg.Store == nil {
		return nil, errors.New("jobs: RescuerConfig.Store is nil: pass the job store")
	}
	if cfg.After < 0 || cfg.Interval < 0 || cfg.Limit < 0 {
		return nil, fmt.Errorf("jobs: RescuerConfig.After (%v), Interval (%v) and Limit (%d) must not be negative; 0 means the default", cfg.After, cfg.Interval, cfg.Limit)
	}
	if cfg.Limit > MaxClaim {
		return nil, fmt.Errorf("jobs: RescuerConfig.Limit is %d: use at most %d (0 means 500)", cfg.Limit, MaxClaim)
	}
	if cfg.After == 0 {
		cfg.After = time.Hour
	}
	if cfg.Interval == 0 {
		cfg.Interval = min(max(cfg.After/10, time.Second), time.Minute)
	}
	if cfg.Limit == 0 {
		cfg.Limit = 500
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Rescuer{cfg: cfg}, nil
}

// Pass rescues what is due now, once, and returns what it rescued.
func (r *Rescuer) Pass(ctx context.Context) (RescueResult, error) {
	before := r.cfg.Now().Add(-r.cfg.After)
	res, err := r.cfg.Store.Rescue(ctx, RescueParams{QueuedBefore: before, LapsedBefore: before, Limit: r.cfg.Limit})
	if err != nil {
		return res, fmt.Errorf("jobs: rescuer: %w", err)
	}
	if n := len(res.Requeued) + len(res.Released); n > 0 {
		r.cfg.Logger.Warn("jobs: rescued jobs whose messages were lost; they are published again",
			"requeued", len(res.Requeued), "released", len(res.Released), "after", r.cfg.After,
			"first", firstOf(res.Requeued, res.Released))
	}
	return res, nil
}

func firstOf(a, b []string) string {
	if len(a) > 0 {
		return a[0]
	}
	if len(b) > 0 {
		return b[0]
	}
	return ""
}

// Run passes at once and then every Interval until ctx ends or the store is
// closed. It blocks, logs failed passes and goes on, and returns ctx.Err()
// (or ErrClosed).
func (r *Rescuer) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		_, err := r.Pass(ctx)
		if err != nil {
			if errors.Is(err, ErrClosed) {
				return err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.cfg.Logger.Warn("jobs: rescue pass failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
