package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// JanitorConfig configures a Janitor. The zero value of each field but Store
// means its default.
type JanitorConfig struct {
	// Store is the store to sweep. Required.
	Store Store
	// Retention is how long a finished job is kept after its EndTime.
	// Default 7 days.
	Retention time.Duration
	// Interval is the time between sweeps. Default 10 minutes.
	Interval time.Duration
	// Now returns the current time; tests set it to give instants.
	// Default time.Now.
	Now func() time.Time
	// OnSweep, when set, is called after each sweep with how many jobs it
	// deleted and its error (e.g. for metrics, or for tests to await a sweep).
	OnSweep func(deleted int, err error)
	// Logger receives a line per failed sweep. Default slog.Default().
	Logger *slog.Logger
}

// Janitor deletes finished jobs once they are older than a retention: it calls
// Store.DeleteFinished(now - Retention) every Interval. Run it once per store
// (several replicas may each run one; the deletes are idempotent).
type Janitor struct {
	cfg JanitorConfig
}

// NewJanitor validates cfg and applies its defaults. It starts nothing.
func NewJanitor(cfg JanitorConfig) (*Janitor, error) {
	if cfg.Store == nil {
		return nil, errors.New("jobs: JanitorConfig.Store is nil: pass the job store to sweep")
	}
	if cfg.Retention < 0 {
		return nil, fmt.Errorf("jobs: JanitorConfig.Retention is %v: use 0 for the default (7 days) or a positive duration", cfg.Retention)
	}
	if cfg.Interval < 0 {
		return nil, fmt.Errorf("jobs: JanitorConfig.Interval is %v: use 0 for the default (10m) or a positive duration", cfg.Interval)
	}
	if cfg.Retention == 0 {
		cfg.Retention = 7 * 24 * time.Hour
	}
	if cfg.Interval == 0 {
		cfg.Interval = 10 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Janitor{cfg: cfg}, nil
}

// Sweep deletes the jobs that finished more than Retention before Now, once,
// and returns how many it deleted.
func (j *Janitor) Sweep(ctx context.Context) (int, error) {
	cutoff := j.cfg.Now().Add(-j.cfg.Retention)
	n, err := j.cfg.Store.DeleteFinished(ctx, cutoff)
	if err != nil {
		err = fmt.Errorf("jobs: janitor: delete jobs finished before %s: %w", cutoff.UTC().Format(time.RFC3339), err)
	}
	if j.cfg.OnSweep != nil {
		j.cfg.OnSweep(n, err)
	}
	return n, err
}

// Run sweeps at once and then every Interval until ctx ends or the store is
// closed. It blocks, logs failed sweeps and goes on, and returns ctx.Err()
// (or ErrClosed).
func (j *Janitor) Run(ctx context.Context) error {
	t := time.NewTicker(j.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := j.Sweep(ctx); err != nil {
			if errors.Is(err, ErrClosed) {
				return err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			j.cfg.Logger.Warn("jobs: janitor sweep failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
