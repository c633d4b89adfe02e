// Package outbox runs the outbox relay: it publishes to Pub/Sub the jobs
// that EnqueueJob recorded (job row and outbox entry in one store
// transaction), once each is due (run_after), and removes an entry only
// after Pub/Sub has accepted its message. So an ID that EnqueueJob returned
// is never lost: while Pub/Sub is down, entries wait and are retried; after
// a crash, the next relay publishes what was left.
//
// Several relays (one per courierd replica) may share a store: each claims
// the entries it publishes for Config.ClaimLease, so an entry is published
// once in the normal case; a crashed relay's claims lapse and are taken over.
// Delivery is at least once: an entry published just before a crash is
// published again, and the workers' conditional updates make that harmless.
//
// A failed publish is retried on the entry's own backoff, so one entry that
// cannot be published never holds back the others; an entry whose message
// can never be published (too large, a topic name Pub/Sub refuses) fails
// its job with an error that says why. Entries with an ordering key are
// published in enqueue order (the store's ClaimOutbox keeps to it).
//
// It is not a publisher (package publisher is) and not a scheduler beyond
// run_after: it does no retries of failed jobs, which is Pub/Sub's job.
package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/publisher"
	"github.com/courierq/courier/wire"
)

// Publisher is what the relay needs of a publisher: publish a batch of job
// messages whose payloads are already encoded, and wait (until ctx ends) for
// Pub/Sub's answer to each; errs[i] is msgs[i]'s (nil: accepted). It may set
// fields of the messages it is given (a tracing decorator puts its span's
// trace context in). *publisher.Publisher implements it; metrics and tracing
// decorate it.
type Publisher interface {
	PublishBatch(ctx context.Context, msgs []*wire.Message) (errs []error)
}

var _ Publisher = (*publisher.Publisher)(nil)

// Store is what the relay needs of a job store.
type Store interface {
	ClaimOutbox(ctx context.Context, p jobs.ClaimOutboxParams) ([]jobs.OutboxEntry, error)
	MarkSent(ctx context.Context, jobIDs []string) error
	RetryOutbox(ctx context.Context, p jobs.RetryOutboxParams) error
	// Fail fails the job of an entry that can never be published.
	Fail(ctx context.Context, p jobs.FailParams) (*jobs.Job, error)
}

// Config configures a Relay. Store and Publisher are required; every other
// zero field means its default.
type Config struct {
	// Store holds the outbox. Required.
	Store Store
	// Publisher publishes. Required.
	Publisher Publisher
	// Owner names this relay in its claims; relays sharing a store must
	// have different owners. "" means a random ID made by New.
	Owner string
	// ClaimLease is how long a claim keeps an entry from other relays: the
	// longest a crashed relay's entries wait. It must exceed
	// PublishTimeout. 0 means 30s.
	ClaimLease time.Duration
	// PublishTimeout bounds the wait for Pub/Sub's answer to one pass's
	// messages; an entry not answered by then is retried on its backoff. 0
	// means two thirds of ClaimLease.
	PublishTimeout time.Duration
	// BatchSize is how many due entries one pass claims and publishes, at
	// most 1000. 0 means 500.
	BatchSize int
	// PollInterval is how often the relay looks for due entries when nothing
	// called Notify: it bounds the delay of run_after jobs, of retried
	// entries and of entries written by other replicas. 0 means 1s.
	PollInterval time.Duration
	// MinBackoff and MaxBackoff space the retries of an entry whose publish
	// failed (MinBackoff·2^attempts, at most MaxBackoff, jittered), and of
	// the relay's passes while the store fails. 0 means 100ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// Logger logs publish failures. Nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock of retry due times. Nil means time.Now.
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
	if cfg.BatchSize < 0 || cfg.PollInterval < 0 || cfg.MinBackoff < 0 || cfg.MaxBackoff < 0 || cfg.ClaimLease < 0 || cfg.PublishTimeout < 0 {
		return nil, fmt.Errorf("outbox: negative BatchSize (%d), PollInterval (%v), backoff (%v, %v), ClaimLease (%v) or PublishTimeout (%v); use 0 for the defaults",
			cfg.BatchSize, cfg.PollInterval, cfg.MinBackoff, cfg.MaxBackoff, cfg.ClaimLease, cfg.PublishTimeout)
	}
	if cfg.BatchSize > jobs.MaxClaim {
		return nil, fmt.Errorf("outbox: Config.BatchSize is %d: use at most %d (0 means 500)", cfg.BatchSize, jobs.MaxClaim)
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
	if cfg.MinBackoff > cfg.MaxBackoff {
		return nil, fmt.Errorf("outbox: Config.MinBackoff (%v) is above Config.MaxBackoff (%v): lower MinBackoff or raise MaxBackoff", cfg.MinBackoff, cfg.MaxBackoff)
	}
	if cfg.ClaimLease == 0 {
		cfg.ClaimLease = 30 * time.Second
	}
	if cfg.PublishTimeout == 0 {
		cfg.PublishTimeout = cfg.ClaimLease * 2 / 3
	}
	if cfg.PublishTimeout >= cfg.ClaimLease {
		return nil, fmt.Errorf("outbox: Config.PublishTimeout (%v) must be below Config.ClaimLease (%v), or another relay may publish an entry while this one still waits for it: lower PublishTimeout or raise ClaimLease", cfg.PublishTimeout, cfg.ClaimLease)
	}
	if cfg.Owner == "" {
		cfg.Owner = "relay-" + uuid.NewString()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Relay{cfg: cfg, wake: make(chan struct{}, 1)}, nil
}

// Owner returns the ID this relay claims entries under.
func (r *Relay) Owner() string { return r.cfg.Owner }

// Notify wakes the relay to publish at once (EnqueueJob calls it). It never
// blocks.
func (r *Relay) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run publishes due entries until ctx ends, then returns nil. Entries not
// yet accepted by Pub/Sub stay in the outbox for the next run. Run backs off
// only while the store fails; entries that fail to publish are retried each
// on its own backoff while the others flow.
func (r *Relay) Run(ctx context.Context) error {
	backoff := time.Duration(0)
	poll := time.NewTimer(0)
	defer poll.Stop()
	for {
		res := r.pass(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var wait time.Duration
		switch {
		case res.storeErr != nil:
			backoff = min(max(2*backoff, r.cfg.MinBackoff), r.cfg.MaxBackoff)
			wait = backoff
			r.cfg.Logger.Warn("outbox: the job store failed; due jobs stay in the outbox and will be published when it answers", "err", res.storeErr, "retry_in", wait)
		case res.claimed == r.cfg.BatchSize:
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
			if res.storeErr != nil {
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

// Pass claims up to BatchSize due entries, publishes them, waits for
// Pub/Sub's answers, removes the accepted entries from the outbox,
// reschedules each failed one on its own backoff, and fails the jobs of
// entries that can never be published. It returns how many it published,
// and an error when the store failed or some entries were not published
// (ErrStore tells the former).
func (r *Relay) Pass(ctx context.Context) (int, error) {
	res := r.pass(ctx)
	if res.storeErr != nil {
		return res.published, errors.Join(res.storeErr, res.publishErr)
	}
	return res.published, res.publishErr
}

// ErrStore is wrapped by Pass's error when the job store failed.
var ErrStore = errors.New("outbox: job store failed")

type passResult struct {
	claimed, published int
	storeErr           error // wraps ErrStore
	publishErr         error // entries not published (retried or failed)
}

func (r *Relay) storeErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrStore}, args...)...)
}

func (r *Relay) pass(ctx context.Context) (res passResult) {
	due, err := r.cfg.Store.ClaimOutbox(ctx, jobs.ClaimOutboxParams{Limit: r.cfg.BatchSize, Owner: r.cfg.Owner, LeaseFor: r.cfg.ClaimLease})
	if err != nil {
		res.storeErr = r.storeErr("claiming due entries: %w", err)
		return res
	}
	res.claimed = len(due)
	if len(due) == 0 {
		return res
	}
	msgs := make([]*wire.Message, len(due))
	for i, e := range due {
		msgs[i] = &wire.Message{ID: e.JobID, Type: e.Type, Labels: e.Labels, Data: e.Payload, OrderingKey: e.OrderingKey,
			TraceParent: e.TraceParent, TraceState: e.TraceState}
	}
	// Wait for the answers, at most PublishTimeout for the whole pass.
	wctx, cancel := context.WithTimeout(ctx, r.cfg.PublishTimeout)
	defer cancel()
	errs := r.cfg.Publisher.PublishBatch(wctx, msgs)
	for i, err := range errs {
		if err != nil && wctx.Err() != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			errs[i] = fmt.Errorf("outbox: Pub/Sub did not answer within %v (Config.PublishTimeout)", r.cfg.PublishTimeout)
		}
	}
	// From here on the outcome is recorded even if ctx ends: a lost
	// MarkSent only republishes (harmless), a lost retry only waits for the
	// claim to lapse.
	sctx := context.WithoutCancel(ctx)
	var (
		sent   = make([]string, 0, len(due))
		failed int
		first  error
	)
	for i, e := range due {
		if errs[i] == nil {
			sent = append(sent, e.JobID)
			continue
		}
		if ctx.Err() != nil {
			continue // stopping: the claim lapses and the entry goes out later
		}
		failed++
		perr := fmt.Errorf("outbox: publishing job %s (%s): %w", e.JobID, e.Type, errs[i])
		if first == nil {
			first = perr
		}
		if err := r.failed(sctx, e, errs[i]); err != nil && res.storeErr == nil {
			res.storeErr = err
		}
	}
	if failed > 0 {
		res.publishErr = fmt.Errorf("outbox: %d of %d entries were not published (each is retried on its own backoff, or its job failed when it can never be published); the first: %w", failed, len(due), first)
	}
	if len(sent) > 0 {
		if err := r.cfg.Store.MarkSent(sctx, sent); err != nil {
			res.storeErr = r.storeErr("marking %d entries sent (they will be published again): %w", len(sent), err)
			return res
		}
		res.published = len(sent)
	}
	return res
}

// failed records a failed publish of e: it fails e's job when its message
// can never be published, and otherwise reschedules e on its backoff.
func (r *Relay) failed(ctx context.Context, e jobs.OutboxEntry, err error) error {
	if code, msg, ok := permanent(e, err); ok {
		r.cfg.Logger.Error("outbox: a job's message can never be published; the job failed", "job_id", e.JobID, "type", e.Type, "err", err)
		_, ferr := r.cfg.Store.Fail(ctx, jobs.FailParams{ID: e.JobID, Code: int32(code), Message: msg})
		switch {
		case ferr == nil:
			return nil
		case errors.Is(ferr, jobs.ErrConflict) || errors.Is(ferr, jobs.ErrNotFound):
			// The job ended meanwhile (e.g. cancelled): drop what is left.
			if err := r.cfg.Store.MarkSent(ctx, []string{e.JobID}); err != nil {
				return r.storeErr("dropping the entry of ended job %s: %w", e.JobID, err)
			}
			return nil
		default:
			return r.storeErr("failing job %s, whose message can never be published: %w", e.JobID, ferr)
		}
	}
	wait := r.backoff(e.Attempts)
	r.cfg.Logger.Warn("outbox: publishing a job failed; it will be retried", "job_id", e.JobID, "type", e.Type,
		"attempts", e.Attempts+1, "retry_in", wait, "err", err)
	if rerr := r.cfg.Store.RetryOutbox(ctx, jobs.RetryOutboxParams{ID: e.JobID, Due: r.cfg.Now().Add(wait), Error: err.Error()}); rerr != nil {
		if errors.Is(rerr, jobs.ErrNotFound) {
			return nil // the entry is gone (the job was cancelled)
		}
		return r.storeErr("rescheduling the entry of job %s: %w", e.JobID, rerr)
	}
	return nil
}

// backoff is the wait before the next try of an entry that failed attempts
// times before: MinBackoff·2^attempts, at most MaxBackoff, with equal jitter
// (between half of that and all of it).
func (r *Relay) backoff(attempts int) time.Duration {
	d := r.cfg.MaxBackoff
	if attempts < 40 {
		d = min(r.cfg.MinBackoff<<attempts, r.cfg.MaxBackoff)
		if d <= 0 { // overflow
			d = r.cfg.MaxBackoff
		}
	}
	return d/2 + rand.N(d/2+1)
}

// permanent reports whether err means e's message can never be published,
// and then the google.rpc.Code and the message to fail its job with.
// NotFound (of the topic) is not permanent: an operator can create it.
func permanent(e jobs.OutboxEntry, err error) (code.Code, string, bool) {
	var tl *publisher.TooLargeError
	if errors.As(err, &tl) {
		return code.Code_INVALID_ARGUMENT, fmt.Sprintf("outbox: the message of job %s is %d bytes with its attributes, over Pub/Sub's limit of %d bytes, so it can never be published: enqueue a smaller payload (e.g. a reference to the data stored elsewhere)",
			e.JobID, tl.Size, tl.Limit), true
	}
	if errors.Is(err, wire.ErrInvalidID) {
		return code.Code_FAILED_PRECONDITION, fmt.Sprintf("outbox: job %s cannot be published: %v; fix the topic naming of %s (publisher Naming) and enqueue it again", e.JobID, err, e.Type), true
	}
	if s, ok := status.FromError(err); ok && s.Code() == codes.InvalidArgument {
		return code.Code_INVALID_ARGUMENT, fmt.Sprintf("outbox: Pub/Sub refused the message of job %s as invalid: %s; fix the job (payload, labels or ordering key) and enqueue it again", e.JobID, s.Message()), true
	}
	return 0, "", false
}
