// Package outbox runs the outbox relay: it publishes to Pub/Sub the jobs
// that EnqueueJob recorded (job row and outbox entry in one store
// transaction), once each is due (run_after), and removes an entry only
// after Pub/Sub has accepted its message. So an ID that EnqueueJob returned
// is never lost: while Pub/Sub is down, entries wait and the relay retries
// with backoff; after a crash, the next relay publishes what was left.
// Delivery is at least once: an entry published just before a crash is
// published again, and the workers' conditional updates make that harmless.
//
// It is not a publisher (package publisher is) and not a scheduler beyond
// run_after: it does no retries of failed jobs, which is Pub/Sub's job.
package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/publisher"
)

// Publisher is what the relay needs of a publisher: a publish of an
// already encoded job message whose result tells when Pub/Sub accepted it.
// *publisher.Publisher implements it.
type Publisher interface {
	PublishRaw(ctx context.Context, typeName string, data []byte, opts ...publisher.Option) (*publisher.Result, error)
}

var _ Publisher = (*publisher.Publisher)(nil)

// Store is what the relay needs of a job store.
type Store interface {
	DueOutbox(ctx context.Context, now time.Time, limit int) ([]jobs.OutboxEntry, error)
	MarkSent(ctx context.Context, jobIDs []string) error
}

// Config configures a Relay.
type Config struct {
	// Store holds the outbox. Required.
	Store Store
	// Publisher publishes. Required.
	Publisher Publisher
	// BatchSize is how many due entries one pass publishes. 0 means 500.
	BatchSize int
	// PollInterval is how often the relay looks for due entries when nothing
	// called Notify: it bounds the delay of run_after jobs and of entries
	// written by other replicas. 0 means 1s.
	PollInterval time.Duration
	// MinBackoff and MaxBackoff space retries while publishing fails. 0
	// means 100ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// OnPublished, when set, is called after each pass with the entries
	// published (metrics).
	OnPublished func(entries []jobs.OutboxEntry)
	// Observe, when set, wraps the publishing of each entry (tracing,
	// metrics): it returns the context to publish with (e.g. holding a span,
	// whose traceparent the publisher injects) and a func called once with
	// the outcome (nil when Pub/Sub accepted the message). It must be safe
	// for concurrent use.
	Observe func(ctx context.Context, e jobs.OutboxEntry) (context.Context, func(err error))
	// Logger logs publish failures. Nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock for due times. Nil means time.Now.
	Now func() time.Time
}

// Relay publishes due outbox entries. Run it once per process.
type Relay struct {
	cfg  Config
	wake chan struct{}
}

// New validates cfg and returns a Relay. It starts nothing: call Run.
func New(cfg Config) (*Relay, error) {
	if cfg.Store == nil || cfg.Publisher == nil {
		return nil, errors.New("outbox: Config.Store and Config.Publisher are required")
	}
	if cfg.BatchSize < 0 || cfg.PollInterval < 0 || cfg.MinBackoff < 0 || cfg.MaxBackoff < 0 {
		return nil, fmt.Errorf("outbox: negative BatchSize (%d), PollInterval (%v) or backoff (%v, %v); use 0 for the defaults", cfg.BatchSize, cfg.PollInterval, cfg.MinBackoff, cfg.MaxBackoff)
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 500
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Relay{cfg: cfg, wake: make(chan struct{}, 1)}, nil
}

// Notify wakes the relay to publish at once (EnqueueJob calls it). It never
// blocks.
func (r *Relay) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run publishes due entries until ctx ends, then returns nil. Entries not
// yet accepted by Pub/Sub stay in the outbox for the next run.
func (r *Relay) Run(ctx context.Context) error {
	backoff := time.Duration(0)
	poll := time.NewTimer(0)
	defer poll.Stop()
	for {
		n, err := r.Pass(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var wait time.Duration
		switch {
		case err != nil:
			backoff = min(max(2*backoff, r.cfg.MinBackoff), r.cfg.MaxBackoff)
			wait = backoff
			r.cfg.Logger.Warn("outbox: publishing due jobs failed; they stay in the outbox and will be retried", "err", err, "retry_in", wait)
		case n == r.cfg.BatchSize:
			backoff = 0
			continue // more are due
		default:
			backoff = 0
			wait = r.cfg.PollInterval
		}
		poll.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-r.wake:
			if err != nil {
				// Still failing: keep to the backoff, but do not lose the wake.
				select {
				case <-ctx.Done():
					return nil
				case <-poll.C:
				}
			}
		case <-poll.C:
		}
	}
}

// Pass publishes up to BatchSize due entries, waits for Pub/Sub to accept
// them, and removes the accepted ones from the outbox. It returns how many
// it published, and the first error.
func (r *Relay) Pass(ctx context.Context) (int, error) {
	due, err := r.cfg.Store.DueOutbox(ctx, r.cfg.Now(), r.cfg.BatchSize)
	if err != nil {
		return 0, fmt.Errorf("outbox: reading due entries: %w", err)
	}
	if len(due) == 0 {
		return 0, nil
	}
	results := make([]*publisher.Result, len(due))
	ends := make([]func(error), len(due))
	var firstErr error
	for i, e := range due {
		pctx, end := ctx, func(error) {}
		if r.cfg.Observe != nil {
			pctx, end = r.cfg.Observe(ctx, e)
		}
		ends[i] = end
		res, err := r.cfg.Publisher.PublishRaw(pctx, e.Type, e.Payload, publisher.WithID(e.JobID), publisher.WithLabels(e.Labels))
		if err != nil {
			end(err)
			firstErr = firstOf(firstErr, fmt.Errorf("outbox: publishing job %s (%s): %w", e.JobID, e.Type, err))
			continue
		}
		results[i] = res
	}
	sent := make([]string, 0, len(due))
	published := make([]jobs.OutboxEntry, 0, len(due))
	for i, res := range results {
		if res == nil {
			continue
		}
		_, err := res.Get(ctx)
		ends[i](err)
		if err != nil {
			firstErr = firstOf(firstErr, fmt.Errorf("outbox: publishing job %s (%s): %w", due[i].JobID, due[i].Type, err))
			continue
		}
		sent = append(sent, due[i].JobID)
		published = append(published, due[i])
	}
	if len(sent) > 0 {
		// A context that ended now would lose only the MarkSent: the entries
		// are published again by the next pass, which is harmless.
		if err := r.cfg.Store.MarkSent(context.WithoutCancel(ctx), sent); err != nil {
			return len(sent), fmt.Errorf("outbox: marking %d entries sent: %w", len(sent), err)
		}
		if r.cfg.OnPublished != nil {
			r.cfg.OnPublished(published)
		}
	}
	return len(sent), firstErr
}

func firstOf(first, err error) error {
	if first != nil {
		return first
	}
	return err
}
