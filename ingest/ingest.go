// Package ingest consumes courier's job subscriptions: one Pub/Sub
// subscription per registered handler type, received with the v2 client's
// flow-controlled Subscriber.Receive. Each delivery is a small value that
// goes through a few steps: decode (by its ce-type), ensure (the job's
// record, created for a message published without EnqueueJob), run (the
// handler inside the middleware chain this package composes: rate limit ▸
// concurrency ▸ mark RUNNING ▸ Config.Middleware ▸ timeout ▸ recover ▸
// handler; with Config.Quick, on a store of this process alone, mark RUNNING
// waits until the handler outlives Config.RunningAfter, and a fast success
// is recorded, start and end, in one write), and settle (a pure decision,
// then ack, nack or dead-letter). On
// start it creates the topics, subscriptions, dead-letter topics and retry
// policies it needs, and brings existing subscriptions' policies in line
// with the handlers' Config, unless Config.DisableCreate says infrastructure
// owns them. With Config.Push it receives by push instead: its
// subscriptions push to an endpoint where PushHandler serves, and each
// request is a delivery answered by its ack or nack (push.go).
//
// It is for courier's Node and tests that run workers. It is not a
// publisher (see package publisher), knows nothing of gRPC and never
// imports backend.
//
// Limits: a message waits for a rate-limit token or a concurrency slot
// while it holds it; a limiter that refuses to make it wait that long
// (package limits, fleet-wide, or a local one past a second) returns a
// *handlers.BusyError, and the job is put off instead: Config.Deferrer gives
// it an outbox entry due when the limiter says and the message is acked,
// so throttled messages (a hot key's) never fill the worker's flow control.
//
// Per message: a message with no ce-type, of a type with no handler, or whose
// data does not decode is dead-lettered with the reason in the
// courier-dead-letter-reason attribute and acked; it never stops the worker.
// A job that is already terminal (finished or cancelled) is acked and not run
// again. A retryable failure nacks; on the last attempt (job MaxAttempts, or
// the handler's) or a handlers.Permanent error the job is Failed, a copy goes
// to the dead-letter topic, and the message is acked. Cancelling a running job
// in the store cancels its handler's context (one watcher per worker polls
// the store for the jobs it runs, so a cancel on any replica reaches it).
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/wire"
)

// Attributes ingest adds to the copies it publishes to dead-letter topics
// (besides the original message's attributes).
const (
	AttrDeadLetterReason       = "courier-dead-letter-reason"       // why, in words
	AttrDeadLetterSubscription = "courier-dead-letter-subscription" // subscription ID it came from
	AttrDeadLetterMessageID    = "courier-dead-letter-message-id"   // original Pub/Sub message ID
	AttrDeadLetterAttempt      = "courier-dead-letter-attempt"      // attempt that failed ("" when it never ran)
)

var (
	// ErrClosed is returned by Run after Close or Shutdown, and by a second Run.
	ErrClosed = errors.New("ingest: worker closed")
	// errJobCancelled is the cause of a handler ctx cancelled by CancelJob;
	// it wraps handlers.ErrCancelled, which handlers check.
	errJobCancelled = fmt.Errorf("ingest: job cancelled: %w", handlers.ErrCancelled)
	// errStopping is the cause of a handler ctx cancelled by Shutdown or Close.
	errStopping = errors.New("ingest: worker stopping")
)

// Config configures a Worker. Client, Store and Registry are required; every
// other zero field means its default.
type Config struct {
	// Client reaches Pub/Sub (or an emulator). The caller closes it after
	// the worker stops.
	Client *pubsub.Client
	// Store records job state.
	Store jobs.Store
	// Registry holds the handlers; the worker consumes one subscription per
	// registered type. Register everything before New.
	Registry *handlers.Registry

	// Naming maps types to topics; it must match the publishers'.
	Naming wire.Naming
	// SubscriptionSuffix is appended to a type's topic ID to name its worker
	// subscription. "" means "-worker".
	SubscriptionSuffix string
	// DeadLetterSuffix is appended to a type's topic ID to name its
	// dead-letter topic, and the subscription on it that keeps dead letters.
	// "" means "-dead-letter".
	DeadLetterSuffix string
	// DisableCreate stops Run from creating missing topics and
	// subscriptions, or changing existing ones, for deployments where
	// infrastructure owns them: Run only checks they exist.
	DisableCreate bool
	// AckDeadline of the subscriptions Run creates. 0 means 60s. (The
	// client extends leases of held messages; this bounds redelivery after a
	// crash.)
	AckDeadline time.Duration

	// MaxOutstandingMessages and MaxOutstandingBytes are each subscription's
	// flow control: how many messages (bytes) the worker holds at once,
	// running or waiting for a rate-limit token or a concurrency slot.
	// 0 means 1000 messages and 100 MB.
	MaxOutstandingMessages, MaxOutstandingBytes int
	// NumStreams is the number of StreamingPull streams per subscription.
	// 0 means 1.
	NumStreams int
	// StoreTimeout bounds each job store call. 0 means 30s.
	StoreTimeout time.Duration
	// CancelPollInterval is how often the worker asks the store whether a
	// job it runs was cancelled (one query for all of them). It bounds how
	// long a cancelled handler runs on. 0 means 100ms.
	CancelPollInterval time.Duration
	// SeenInterval is how often the worker tells the store which jobs'
	// messages it holds (Store.MarkSeen), waiting for a rate-limit token, a
	// concurrency slot or another run's lease, so that the rescuer leaves
	// them alone. 0 means never (no rescuer runs); courier's Node sets it
	// to a quarter of jobs.rescueAfter.
	SeenInterval time.Duration
	// Lease is how long a running job's lease lasts without a heartbeat:
	// while it holds, a duplicate delivery of the job is nacked instead of
	// run; once it lapses (this worker died), a delivery takes the job
	// over. The worker renews its leases every third of it. 0 means 30s.
	Lease time.Duration

	// Limiters are the rate-limit buckets of each type whose handler has a
	// RatePerSecond (e.g. ones shared by every replica through the store).
	// A rate-limited type with no entry gets a handlers.LocalLimiter with
	// its Config's rate and burst.
	Limiters map[string]handlers.Limiter
	// RateKeys name the rate-limit bucket of a type's attempts (e.g.
	// handlers.LabelKey("customer")). A type with no entry has one bucket.
	RateKeys map[string]handlers.KeyFunc
	// Slots are fleet-wide concurrency limits of types (package limits),
	// taken after the type's own Concurrency slot of this process;
	// ConcurrencyKeys name their keys as RateKeys do.
	Slots           map[string]handlers.SlotLimiter
	ConcurrencyKeys map[string]handlers.KeyFunc
	// DeferMin is the shortest a throttled message is put off: when a
	// limiter refuses an attempt with a *handlers.BusyError (a fleet-wide
	// limit's line is long) and Store is a jobs.Deferrer, the job gets an
	// outbox entry due when the limiter says and the message is acked, so
	// that throttled messages do not occupy the worker; otherwise (no
	// Deferrer, a job with an ordering key) the message waits as long,
	// held, and tries again. 0 means 100ms.
	DeferMin time.Duration
	// Deferrer puts throttled jobs off (see DeferMin). nil means Store, if
	// it is a jobs.Deferrer (a decorated store may hide it: pass the
	// store itself here).
	Deferrer jobs.Deferrer
	// Middleware wraps every handler once its job is RUNNING (or its quick
	// run began, see Quick), inside the timeout, first outermost (metrics,
	// tracing).
	Middleware []handlers.Middleware
	// DeadLetters publishes the copies sent to dead-letter topics. nil means
	// the Client's publishers.
	DeadLetters DeadLetterPublisher
	// Clock is the rate limiters' time source. nil means the real clock.
	Clock handlers.Clock

	// Snoozer, when set, keeps the jobs whose handlers return
	// handlers.RetryAfter or handlers.Snooze waiting in the store until due
	// (the job store, when it implements jobs.Snoozer). nil: such errors are
	// ordinary retryable errors (Pub/Sub's backoff spaces the attempts, and
	// a snooze counts as an attempt).
	Snoozer jobs.Snoozer
	// Quick, when set, lets a fast run skip its own write of RUNNING: the
	// handler starts as soon as the job is read QUEUED, and when it
	// succeeds within RunningAfter its start and end are recorded in one
	// write (jobs.StartSucceeder), the timeline showing both; a handler
	// that runs longer, reports progress or fails is recorded RUNNING
	// (under its lease) before anything else, as without Quick. Set it only
	// for a store no other process works on (the embedded SQLite store):
	// this worker keeps two deliveries of a job from running at once, but
	// another process could not see a run before it is recorded. nil:
	// every run is recorded RUNNING before its handler starts.
	Quick jobs.StartSucceeder
	// RunningAfter is how long a quick run (see Quick) goes unrecorded.
	// 0 means 100ms.
	RunningAfter time.Duration

	// Now is the clock of delays (when a snoozed job is due) and of
	// run_after checks; it should be the store's. nil means time.Now.
	Now func() time.Time
	// Paused, when set, says which job types are paused (PauseJobType): the
	// worker does not pull their subscriptions (push requests of them are
	// answered 503) until they are resumed. Run it (PausedTypes.Run).
	Paused *PausedTypes

	// Push, when set, makes the worker receive by Pub/Sub push instead of
	// pulling: Run creates (or aligns) push subscriptions to Push.Endpoint
	// and PushHandler serves their requests. nil means pull.
	Push *PushConfig

	// Logger receives what the worker cannot return: store failures,
	// dead letters, panics. nil means slog.Default().
	Logger *slog.Logger
}

// Worker consumes the subscriptions of a registry's handler types.
type Worker struct {
	cfg     Config
	log     *slog.Logger
	types   map[string]*typeRun
	runs    *runs
	pauses  *PausedTypes // nil: nothing is paused
	recover handlers.Middleware
	// inflight counts deliveries being processed: Receive may return (its
	// shutdown timeout) before they all end, and Run waits for them.
	inflight sync.WaitGroup

	// pullCtx stops pulling; runCtx stops handlers (their messages are nacked).
	pullCtx   context.Context
	stopPull  context.CancelFunc
	runCtx    context.Context
	stopRun   context.CancelCauseFunc
	mu        sync.Mutex
	started   bool
	pushOpen  bool // push requests are admitted (push.go)
	ready     chan struct{}
	done      chan struct{} // closed when Run returns
	closeOnce sync.Once
}

// typeRun is what the worker keeps per handler type: its entry and names,
// and the middleware whose state outlives one job (the rate limiter's
// buckets, the concurrency slots).
type typeRun struct {
	entry       *handlers.Entry
	names       Names
	rateLimit   handlers.Middleware // nil without a rate limit
	concurrency handlers.Middleware
	slots       handlers.Middleware // nil without a fleet-wide concurrency limit
}

// New validates cfg and returns a Worker; it starts nothing (see Run).
func New(cfg Config) (*Worker, error) {
	switch {
	case cfg.Client == nil:
		return nil, errors.New("ingest: Config.Client is nil; pass a *pubsub.Client")
	case cfg.Store == nil:
		return nil, errors.New("ingest: Config.Store is nil; pass a jobs.Store (e.g. jobs/sqlite)")
	case cfg.Registry == nil:
		return nil, errors.New("ingest: Config.Registry is nil; pass a *handlers.Registry with handlers registered")
	case len(cfg.Registry.Entries()) == 0:
		return nil, errors.New("ingest: Config.Registry has no handlers; register at least one with handlers.Register")
	case cfg.AckDeadline < 0 || cfg.AckDeadline > 0 && (cfg.AckDeadline < 10*time.Second || cfg.AckDeadline > 600*time.Second):
		return nil, fmt.Errorf("ingest: Config.AckDeadline is %v; Pub/Sub allows 10s..600s (0 means 60s)", cfg.AckDeadline)
	case cfg.RunningAfter < 0:
		return nil, fmt.Errorf("ingest: Config.RunningAfter is %v: use 0 for the default (100ms) or a positive duration", cfg.RunningAfter)
	case cfg.Lease < 0 || cfg.Lease > 0 && cfg.Lease < time.Second:
		return nil, fmt.Errorf("ingest: Config.Lease is %v: use 0 for the default (30s) or at least 1s", cfg.Lease)
	case cfg.MaxOutstandingMessages < 0, cfg.MaxOutstandingBytes < 0, cfg.NumStreams < 0, cfg.StoreTimeout < 0, cfg.CancelPollInterval < 0, cfg.SeenInterval < 0:
		return nil, fmt.Errorf("ingest: Config.MaxOutstandingMessages (%d), MaxOutstandingBytes (%d), NumStreams (%d), StoreTimeout (%v), CancelPollInterval (%v) and SeenInterval (%v) must not be negative",
			cfg.MaxOutstandingMessages, cfg.MaxOutstandingBytes, cfg.NumStreams, cfg.StoreTimeout, cfg.CancelPollInterval, cfg.SeenInterval)
	}
	if err := cfg.Push.validate(); err != nil {
		return nil, err
	}
	if cfg.SubscriptionSuffix == "" {
		cfg.SubscriptionSuffix = "-worker"
	}
	if cfg.DeadLetterSuffix == "" {
		cfg.DeadLetterSuffix = "-dead-letter"
	}
	if cfg.AckDeadline == 0 {
		cfg.AckDeadline = 60 * time.Second
	}
	if cfg.MaxOutstandingMessages == 0 {
		cfg.MaxOutstandingMessages = 1000
	}
	if cfg.MaxOutstandingBytes == 0 {
		cfg.MaxOutstandingBytes = 100 << 20
	}
	if cfg.NumStreams == 0 {
		cfg.NumStreams = 1
	}
	if cfg.StoreTimeout == 0 {
		cfg.StoreTimeout = 30 * time.Second
	}
	if cfg.RunningAfter == 0 {
		cfg.RunningAfter = 100 * time.Millisecond
	}
	if cfg.Lease == 0 {
		cfg.Lease = 30 * time.Second
	}
	if cfg.CancelPollInterval == 0 {
		cfg.CancelPollInterval = 100 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.DeadLetters == nil {
		cfg.DeadLetters = newClientDeadLetters(cfg.Client)
	}
	w := &Worker{cfg: cfg, log: cfg.Logger, types: map[string]*typeRun{}, pauses: cfg.Paused, ready: make(chan struct{}), done: make(chan struct{})}
	for typ := range cfg.Limiters {
		if _, ok := cfg.Registry.Lookup(typ); !ok {
			return nil, fmt.Errorf("ingest: Config.Limiters has %s, which has no handler (registered: %v)", typ, cfg.Registry.Types())
		}
	}
	for typ := range cfg.Slots {
		if _, ok := cfg.Registry.Lookup(typ); !ok {
			return nil, fmt.Errorf("ingest: Config.Slots has %s, which has no handler (registered: %v)", typ, cfg.Registry.Types())
		}
	}
	if cfg.DeferMin < 0 {
		return nil, fmt.Errorf("ingest: Config.DeferMin is %v; use 0 for the default (100ms) or a positive duration", cfg.DeferMin)
	}
	if cfg.DeferMin == 0 {
		cfg.DeferMin = 100 * time.Millisecond
	}
	if cfg.Deferrer == nil {
		cfg.Deferrer, _ = cfg.Store.(jobs.Deferrer)
	}
	// Every subscription's names must be valid before anything starts.
	for _, e := range cfg.Registry.Entries() {
		n, err := w.names(e)
		if err != nil {
			return nil, err
		}
		t := &typeRun{entry: e, names: n, concurrency: handlers.Concurrency(e.Config.Concurrency)}
		if cfg.Slots[e.Type] != nil && cfg.ConcurrencyKeys[e.Type] != nil {
			// Keyed, the fleet's slots are per key: a bound per type in
			// this process would be wrong. (Unkeyed, this process's bound
			// stays: at most that many messages ask the fleet for a slot.)
			t.concurrency = handlers.Concurrency(0)
		}
		if e.Config.RatePerSecond > 0 {
			lim := cfg.Limiters[e.Type]
			if lim == nil {
				lim = handlers.NewLocalLimiter(e.Config.RatePerSecond, e.Config.Burst, cfg.Clock)
			}
			t.rateLimit = handlers.RateLimit(lim, cfg.RateKeys[e.Type], cfg.Clock)
		}
		if sl := cfg.Slots[e.Type]; sl != nil {
			t.slots = handlers.SharedConcurrency(sl, cfg.ConcurrencyKeys[e.Type])
		}
		w.types[e.Type] = t
	}
	w.pullCtx, w.stopPull = context.WithCancel(context.Background())
	w.runCtx, w.stopRun = context.WithCancelCause(context.Background())
	w.runs = newRuns(w)
	w.recover = handlers.Recover(cfg.Logger)
	return w, nil
}

// Names are the Pub/Sub IDs a handler type uses.
type Names struct {
	Topic, Subscription, DeadLetterTopic, DeadLetterSubscription string
}

// Names returns the Pub/Sub IDs of the handler type typ (a full protobuf name).
func (w *Worker) Names(typ string) (Names, error) {
	e, ok := w.cfg.Registry.Lookup(typ)
	if !ok {
		return Names{}, fmt.Errorf("ingest: no handler registered for %s", typ)
	}
	return w.names(e)
}

func (w *Worker) names(e *handlers.Entry) (Names, error) {
	topic, err := w.cfg.Naming.Topic(e.Type)
	if err != nil {
		return Names{}, fmt.Errorf("ingest: topic of %s: %w", e.Type, err)
	}
	n := Names{
		Topic:                  topic,
		Subscription:           topic + w.cfg.SubscriptionSuffix,
		DeadLetterTopic:        topic + w.cfg.DeadLetterSuffix,
		DeadLetterSubscription: topic + w.cfg.DeadLetterSuffix,
	}
	for _, id := range []string{n.Subscription, n.DeadLetterTopic} {
		if err := wire.ValidateID(id); err != nil {
			return Names{}, fmt.Errorf("ingest: names of %s: %w; shorten the suffixes or override the topic", e.Type, err)
		}
	}
	return n, nil
}

// Ready is closed once Run has created what was missing and started
// receiving on every subscription. It stays open if Run fails before that.
func (w *Worker) Ready() <-chan struct{} { return w.ready }

// Run creates missing topics and subscriptions (unless DisableCreate), then
// receives on every subscription until Shutdown or Close, or until ctx ends
// (a hard stop, as Close). It returns nil after Shutdown or Close, ErrClosed
// if the worker was stopped before or Run was called twice, and otherwise the
// first error that stopped receiving.
func (w *Worker) Run(ctx context.Context) error {
	w.mu.Lock()
	if w.started || w.pullCtx.Err() != nil {
		w.mu.Unlock()
		return ErrClosed
	}
	w.started = true
	w.mu.Unlock()
	defer close(w.done)
	defer w.cfg.DeadLetters.Stop()

	stop := context.AfterFunc(ctx, func() { w.stopPull(); w.stopRun(errStopping) })
	defer stop()

	if err := w.prepare(); err != nil {
		if w.pullCtx.Err() != nil {
			return nil // stopped while preparing
		}
		return err
	}
	// One loop per worker asks the store about every running job: cancels
	// (often) and lease renewals (every third of the lease).
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watchDone := make(chan struct{}, 3)
	go func() { defer func() { watchDone <- struct{}{} }(); w.runs.watch(watchCtx) }()
	go func() { defer func() { watchDone <- struct{}{} }(); w.runs.heartbeats(watchCtx) }()
	go func() { defer func() { watchDone <- struct{}{} }(); w.runs.seen(watchCtx) }()
	defer func() { stopWatch(); <-watchDone; <-watchDone; <-watchDone }()
	defer w.stopRun(errStopping)
	if w.cfg.Push != nil {
		return w.pushRun()
	}

	recvCtx, cancelRecv := context.WithCancel(w.pullCtx)
	defer cancelRecv()
	errs := make(chan error, len(w.types))
	var wg sync.WaitGroup
	for _, t := range w.types {
		wg.Go(func() {
			if err := w.receive(recvCtx, t); err != nil {
				errs <- fmt.Errorf("ingest: receiving on subscription %s: %w", t.names.Subscription, err)
				cancelRecv()
			}
		})
	}
	close(w.ready)
	wg.Wait()
	close(errs)
	err := <-errs
	if err != nil && w.pullCtx.Err() == nil {
		w.stopRun(errStopping) // receiving failed: running handlers end too
	} else {
		err = nil
	}
	w.inflight.Wait()
	return err
}

// receive pulls t's subscription until ctx ends, except while its type is
// paused: a pause stops its Receive (the messages it holds are processed,
// or nacked if their type is still paused when they would start), a resume
// starts a new one.
func (w *Worker) receive(ctx context.Context, t *typeRun) error {
	w.pauses.wait(ctx)
	for {
		paused, changed := w.pauses.state(t.entry.Type)
		if paused {
			select {
			case <-ctx.Done():
				return nil
			case <-changed:
				continue
			}
		}
		rctx, stop := context.WithCancel(ctx)
		if changed != nil {
			go func() {
				for ch := changed; ; {
					select {
					case <-ch:
						var paused bool
						if paused, ch = w.pauses.state(t.entry.Type); paused {
							stop()
							return
						}
					case <-rctx.Done():
						return
					}
				}
			}()
		}
		sub := w.cfg.Client.Subscriber(t.names.Subscription)
		sub.ReceiveSettings.MaxOutstandingMessages = w.cfg.MaxOutstandingMessages
		sub.ReceiveSettings.MaxOutstandingBytes = w.cfg.MaxOutstandingBytes
		sub.ReceiveSettings.NumGoroutines = w.cfg.NumStreams
		// Receive waits for its acks to be sent before it returns; bound that
		// wait, so that a Pub/Sub that has gone away cannot hold shutdown.
		sub.ReceiveSettings.ShutdownOptions = &pubsub.ShutdownOptions{Behavior: pubsub.ShutdownBehaviorWaitForProcessing, Timeout: 10 * time.Second}
		err := sub.Receive(rctx, func(_ context.Context, m *pubsub.Message) {
			w.inflight.Add(1)
			defer w.inflight.Done()
			d := delivery{w: w, sub: t, m: pulled(m)}
			d.process()
		})
		stop()
		if err != nil || ctx.Err() != nil {
			return err
		}
	}
}

// Shutdown stops pulling, lets the handlers in flight finish until ctx ends,
// then cancels the rest (their jobs go back to Queued and their messages are
// nacked) and waits for Run to return. Messages held but not started (waiting
// for a token or a slot) are nacked at once. It returns ctx's error if
// handlers had to be cancelled. Safe to call more than once, and before Run.
func (w *Worker) Shutdown(ctx context.Context) error {
	w.stopPull()
	w.mu.Lock()
	started := w.started
	w.mu.Unlock()
	if !started {
		w.stopRun(errStopping)
		return nil
	}
	w.log.Info("ingest: shutting down: stopped pulling, waiting for running handlers", "running", w.runs.count())
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		w.stopRun(errStopping)
		<-w.done
		return fmt.Errorf("ingest: shutdown deadline passed; handlers still running were cancelled and their messages nacked: %w", context.Cause(ctx))
	}
}

// Close stops at once: pulling ends, running handlers are cancelled and their
// messages nacked. It waits for Run to return. It is idempotent.
func (w *Worker) Close() error {
	w.closeOnce.Do(func() {
		w.stopPull()
		w.stopRun(errStopping)
	})
	w.mu.Lock()
	started := w.started
	w.mu.Unlock()
	if started {
		<-w.done
	}
	return nil
}

// storeCtx returns a context for one store call that outlives a stopping
// worker, so a handler's outcome is still recorded.
func (w *Worker) storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(w.runCtx), w.cfg.StoreTimeout)
}
