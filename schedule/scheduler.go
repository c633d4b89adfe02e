package schedule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/courierq/courier/jobs"
)

// Defaults of Config.
const (
	DefaultPoll       = time.Second
	DefaultGrace      = time.Minute
	DefaultMaxCatchUp = 1000
)

// Config configures a Scheduler.
type Config struct {
	// Store holds the schedules and claims their ticks. Required.
	Store jobs.Schedules
	// Now is the clock. nil means time.Now.
	Now func() time.Time
	// Poll is how often the Scheduler reads the schedules: a tick fires at
	// most this late. 0 means DefaultPoll.
	Poll time.Duration
	// Grace is how late a tick may be seen and still count as on time; a
	// later one is missed (a schedule with jobs.MissedSkip skips it). It
	// should be well above Poll. 0 means DefaultGrace.
	Grace time.Duration
	// MaxCatchUp bounds how many ticks of one schedule a pass fires (the
	// next pass goes on). 0 means DefaultMaxCatchUp.
	MaxCatchUp int
	// NewID makes job IDs. nil means UUIDv7.
	NewID func() string
	// MaxAttempts, when set, gives the attempts recorded on the jobs of a
	// schedule that names none (its MaxAttempts 0), as EnqueueJob records
	// the type's; nil leaves 0 (the handler's, when it runs).
	MaxAttempts func(typ string) int
	// Notify, when set, is called after a pass that enqueued jobs (the
	// outbox relay publishes them at once).
	Notify func()
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Scheduler fires the ticks of the stored schedules. Run it on as many
// replicas as you like: each tick enqueues one job.
type Scheduler struct {
	cfg  Config
	wake chan struct{}
}

// New validates cfg and returns a Scheduler.
func New(cfg Config) (*Scheduler, error) {
	if cfg.Store == nil {
		return nil, errors.New("schedule: Config.Store is nil; pass a store that implements jobs.Schedules (jobs/sqlite, jobs/postgres)")
	}
	if cfg.Poll < 0 || cfg.Grace < 0 || cfg.MaxCatchUp < 0 {
		return nil, fmt.Errorf("schedule: Config.Poll (%v), Grace (%v) and MaxCatchUp (%d) must not be negative; 0 means the default", cfg.Poll, cfg.Grace, cfg.MaxCatchUp)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Poll == 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.Grace == 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.MaxCatchUp == 0 {
		cfg.MaxCatchUp = DefaultMaxCatchUp
	}
	if cfg.NewID == nil {
		cfg.NewID = func() string { return uuid.Must(uuid.NewV7()).String() }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Scheduler{cfg: cfg, wake: make(chan struct{}, 1)}, nil
}

// Run fires ticks every Poll until ctx ends.
func (s *Scheduler) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Poll)
	defer t.Stop()
	for {
		if _, err := s.Pass(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("schedule: pass failed; trying again at the next poll", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.wake:
		}
	}
}

// Wake makes Run pass at once (e.g. after a schedule was created).
func (s *Scheduler) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// IdempotencyKey is the key of the job of one tick of a schedule.
func IdempotencyKey(name string, tick time.Time) string {
	return "schedule:" + name + "@" + tick.UTC().Format(time.RFC3339Nano)
}

// Pass fires the due ticks of every schedule once and returns how many jobs
// it enqueued.
func (s *Scheduler) Pass(ctx context.Context) (int, error) {
	list, err := s.cfg.Store.ListSchedules(ctx)
	if err != nil {
		return 0, err
	}
	var (
		n    int
		errs []error
	)
	for _, sc := range list {
		if sc.Paused {
			continue
		}
		k, err := s.fire(ctx, sc)
		n += k
		if err != nil {
			errs = append(errs, err)
		}
	}
	if n > 0 && s.cfg.Notify != nil {
		s.cfg.Notify()
	}
	return n, errors.Join(errs...)
}

// fire fires the due ticks of one schedule, until one is not due, another
// replica got there first, or MaxCatchUp.
func (s *Scheduler) fire(ctx context.Context, sc *jobs.Schedule) (int, error) {
	spec, err := Parse(sc.Cron, sc.TimeZone, sc.Every)
	if err != nil {
		return 0, fmt.Errorf("schedule %s: %w", sc.Name, err)
	}
	n := 0
	tick := sc.NextTime
	for range s.cfg.MaxCatchUp {
		now := s.cfg.Now()
		if tick.After(now) {
			return n, nil
		}
		p := jobs.FireParams{Name: sc.Name, Tick: tick, Next: spec.Next(tick)}
		if now.Sub(tick) > s.cfg.Grace && sc.Missed != jobs.MissedCatchUp {
			// Skip every missed tick at once, to the first one still in
			// the grace window (which the next round fires, if due).
			p.Next = spec.Next(now.Add(-s.cfg.Grace))
			s.cfg.Logger.Info("schedule: skipping missed ticks", "schedule", sc.Name, "from", tick, "next", p.Next)
		} else {
			p.Job = jobs.Job{ID: s.cfg.NewID(), Type: sc.Type, Payload: sc.Payload, Labels: sc.Labels,
				MaxAttempts: sc.MaxAttempts, IdempotencyKey: IdempotencyKey(sc.Name, tick)}
			if p.Job.MaxAttempts == 0 && s.cfg.MaxAttempts != nil {
				p.Job.MaxAttempts = s.cfg.MaxAttempts(sc.Type)
			}
		}
		if p.Next.IsZero() {
			return n, fmt.Errorf("schedule %s: its spec has no tick after %v", sc.Name, tick)
		}
		job, fired, err := s.cfg.Store.FireSchedule(ctx, p)
		if err != nil {
			return n, fmt.Errorf("schedule %s: fire tick %v: %w", sc.Name, tick, err)
		}
		if !fired {
			return n, nil // another replica fired it, or it was paused or changed
		}
		if job != nil {
			n++
			s.cfg.Logger.Debug("schedule: fired", "schedule", sc.Name, "tick", tick, "job", job.ID)
		}
		tick = p.Next
	}
	return n, nil
}
