// Package ingest consumes courier's job subscriptions: one Pub/Sub
// subscription per registered handler type, received with the v2 client's
// flow-controlled Subscriber.Receive; each message is decoded by its ce-type,
// recorded through jobs.Store (Ensure, Start, Progress, Succeed, Fail), run
// through its handler, and then acked, nacked (a retry: the subscription's
// retry policy spaces redeliveries) or dead-lettered. On start it creates the
// topics, subscriptions, dead-letter topics and retry policies it needs unless
// Config.DisableCreate says infrastructure owns them.
//
// It is for courierd and tests that run workers. It is not a publisher (see
// package publisher), knows nothing of gRPC and never imports backend.
//
// Per message: a message with no ce-type, of a type with no handler, or whose
// data does not decode is dead-lettered with the reason in the
// courier-dead-letter-reason attribute and acked; it never stops the worker.
// A job that is already terminal (finished or cancelled) is acked and not run
// again. A retryable failure nacks; on the last attempt (job MaxAttempts, or
// the handler's) or a handlers.Permanent error the job is Failed, a copy goes
// to the dead-letter topic, and the message is acked. Cancelling a running job
// in the store cancels its handler's context.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/publisher"
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
	// errLeaseLost is the cause of a handler ctx cancelled because a
	// heartbeat found its run's lease gone (the job was cancelled, ended,
	// or taken over by another worker after the lease lapsed).
	errLeaseLost = errors.New("ingest: the run's lease is gone (job cancelled, ended, or taken over by another worker)")
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
	Naming publisher.Naming
	// SubscriptionSuffix is appended to a type's topic ID to name its worker
	// subscription. "" means "-worker".
	SubscriptionSuffix string
	// DeadLetterSuffix is appended to a type's topic ID to name its
	// dead-letter topic, and the subscription on it that keeps dead letters.
	// "" means "-dead-letter".
	DeadLetterSuffix string
	// DisableCreate stops Run from creating missing topics and
	// subscriptions, for deployments where infrastructure owns them.
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
	// Lease is how long a running job's lease lasts without a heartbeat:
	// while it holds, a duplicate delivery of the job is nacked instead of
	// run; once it lapses (this worker died), a delivery takes the job
	// over. The worker renews its leases every third of it. 0 means 30s.
	Lease time.Duration

	// Logger receives what the worker cannot return: store failures,
	// dead letters, panics. nil means slog.Default().
	Logger *slog.Logger

	// Hooks observe deliveries (metrics, tracing). The zero value observes
	// nothing.
	Hooks Hooks
}

// Hooks let metrics and tracing observe a Worker without ingest knowing of
// either. Every field is optional; each runs on the delivery's goroutine and
// must be quick and safe for concurrent use.
type Hooks struct {
	// Deliver wraps the handling of one decodable delivery of a registered
	// type: it gets the message's attributes (e.g. traceparent) and returns
	// the context the handler runs with (its values are kept; its
	// cancellation is ignored) and a func called once with the handler's
	// error (nil on success) when handling ends.
	Deliver func(ctx context.Context, typ string, attrs map[string]string) (context.Context, func(err error))
	// Running is called when a job is admitted (its rate-limit token and
	// concurrency slot in hand, Start recorded) and returns a func called
	// with the handler's error when the handler returns.
	Running func(typ string) func(err error)
	// DeadLettered is called after a message of typ ("" when it had no
	// ce-type) was published to the dead-letter topic.
	DeadLettered func(typ, reason string)
}

// Worker consumes the subscriptions of a registry's handler types.
type Worker struct {
	cfg Config
	log *slog.Logger

	// pullCtx stops pulling; runCtx stops handlers (their messages are nacked).
	pullCtx    context.Context
	stopPull   context.CancelFunc
	runCtx     context.Context
	stopRun    context.CancelCauseFunc
	mu         sync.Mutex
	started    bool
	ready      chan struct{}
	done       chan struct{} // closed when Run returns
	closeOnce  sync.Once
	dlMu       sync.Mutex
	deadLetter map[string]*pubsub.Publisher
	leases     leases
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
	case cfg.MaxOutstandingMessages < 0, cfg.MaxOutstandingBytes < 0, cfg.NumStreams < 0, cfg.StoreTimeout < 0:
		return nil, fmt.Errorf("ingest: Config.MaxOutstandingMessages (%d), MaxOutstandingBytes (%d), NumStreams (%d) and StoreTimeout (%v) must not be negative",
			cfg.MaxOutstandingMessages, cfg.MaxOutstandingBytes, cfg.NumStreams, cfg.StoreTimeout)
	case cfg.Lease < 0 || cfg.Lease > 0 && cfg.Lease < time.Second:
		return nil, fmt.Errorf("ingest: Config.Lease is %v: use 0 for the default (30s) or at least 1s", cfg.Lease)
	}
	if cfg.Lease == 0 {
		cfg.Lease = 30 * time.Second
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
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	w := &Worker{cfg: cfg, log: cfg.Logger, ready: make(chan struct{}), done: make(chan struct{}), deadLetter: map[string]*pubsub.Publisher{}}
	// Every subscription's names must be valid before anything starts.
	for _, e := range cfg.Registry.Entries() {
		if _, err := w.names(e); err != nil {
			return nil, err
		}
	}
	w.pullCtx, w.stopPull = context.WithCancel(context.Background())
	w.runCtx, w.stopRun = context.WithCancelCause(context.Background())
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
		if err := publisher.ValidateID(id); err != nil {
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
	defer w.stopDeadLetters()

	stop := context.AfterFunc(ctx, func() { w.stopPull(); w.stopRun(errStopping) })
	defer stop()

	entries := w.cfg.Registry.Entries()
	if err := w.prepare(entries); err != nil {
		if w.pullCtx.Err() != nil {
			return nil // stopped while preparing
		}
		return err
	}
	recvCtx, cancelRecv := context.WithCancel(w.pullCtx)
	defer cancelRecv()
	beatCtx, stopBeats := context.WithCancel(context.Background())
	beatsDone := make(chan struct{})
	go func() { defer close(beatsDone); w.heartbeats(beatCtx) }()
	defer func() { stopBeats(); <-beatsDone }()
	errs := make(chan error, len(entries))
	var wg sync.WaitGroup
	for _, e := range entries {
		n, _ := w.names(e)
		sub := w.cfg.Client.Subscriber(n.Subscription)
		sub.ReceiveSettings.MaxOutstandingMessages = w.cfg.MaxOutstandingMessages
		sub.ReceiveSettings.MaxOutstandingBytes = w.cfg.MaxOutstandingBytes
		sub.ReceiveSettings.NumGoroutines = w.cfg.NumStreams
		// Receive waits for its acks to be sent before it returns; bound that
		// wait, so that a Pub/Sub that has gone away cannot hold shutdown.
		sub.ReceiveSettings.ShutdownOptions = &pubsub.ShutdownOptions{Behavior: pubsub.ShutdownBehaviorWaitForProcessing, Timeout: 10 * time.Second}
		s := &subscription{entry: e, names: n, dl: w.deadLetterPublisher(n.DeadLetterTopic)}
		wg.Go(func() {
			err := sub.Receive(recvCtx, func(_ context.Context, m *pubsub.Message) { w.handle(s, m) })
			if err != nil {
				errs <- fmt.Errorf("ingest: receiving on subscription %s: %w", n.Subscription, err)
				cancelRecv()
			}
		})
	}
	close(w.ready)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil && w.pullCtx.Err() == nil {
		w.stopRun(errStopping)
		return err
	}
	return nil
}

// Shutdown stops pulling, lets the handlers in flight finish until ctx ends,
// then cancels the rest (their jobs go back to Queued and their messages are
// nacked) and waits for Run to return. It returns ctx's error if handlers
// had to be cancelled. Safe to call more than once, and before Run.
func (w *Worker) Shutdown(ctx context.Context) error {
	w.stopPull()
	w.mu.Lock()
	started := w.started
	w.mu.Unlock()
	if !started {
		w.stopRun(errStopping)
		return nil
	}
	w.log.Info("ingest: shutting down: stopped pulling, waiting for running handlers")
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

type subscription struct {
	entry *handlers.Entry
	names Names
	dl    *pubsub.Publisher
}

func (w *Worker) deadLetterPublisher(topic string) *pubsub.Publisher {
	w.dlMu.Lock()
	defer w.dlMu.Unlock()
	if p, ok := w.deadLetter[topic]; ok {
		return p
	}
	p := w.cfg.Client.Publisher(topic)
	p.PublishSettings.DelayThreshold = time.Millisecond
	w.deadLetter[topic] = p
	return p
}

func (w *Worker) stopDeadLetters() {
	w.dlMu.Lock()
	defer w.dlMu.Unlock()
	for _, p := range w.deadLetter {
		p.Stop()
	}
}

// storeCtx returns a context for one store call that outlives a stopping
// worker, so a handler's outcome is still recorded.
func (w *Worker) storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(w.runCtx), w.cfg.StoreTimeout)
}

// handle processes one delivery: it always acks or nacks m.
func (w *Worker) handle(s *subscription, m *pubsub.Message) {
	attrs := m.Attributes
	typ := attrs[publisher.AttrType]
	id := attrs[publisher.AttrID]
	if id == "" {
		id = m.ID
	}
	log := w.log.With("job_id", id, "type", typ, "subscription", s.names.Subscription, "message_id", m.ID)
	if typ == "" {
		w.poison(s, m, log, "", "", fmt.Sprintf("message has no %s attribute; courier needs the full protobuf name of the payload there", publisher.AttrType))
		return
	}
	entry, ok := w.cfg.Registry.Lookup(typ)
	if !ok {
		w.poison(s, m, log, id, typ, fmt.Sprintf("no handler is registered for type %q (%s %q)", typ, publisher.AttrType, typ))
		return
	}
	payload, err := entry.Decode(m.Data)
	if err != nil {
		w.poison(s, m, log, id, typ, err.Error())
		return
	}

	job, err := w.ensureJob(id, typ, m)
	if err != nil {
		log.Error("ingest: recording job failed; message nacked", "err", err)
		m.Nack()
		return
	}
	if job.Type != typ {
		w.poison(s, m, log, "", "", fmt.Sprintf("%s %q names job %s, which has type %q; a job ID belongs to one type", publisher.AttrType, typ, id, job.Type))
		return
	}
	if job.State.Terminal() {
		log.Debug("ingest: job already ended; acked without running", "state", job.State)
		m.Ack()
		return
	}
	if w.pullCtx.Err() != nil { // stopping: do not start new work
		log.Debug("ingest: worker stopping before the job started; nacked")
		m.Nack()
		return
	}
	// The attempt is Pub/Sub's delivery attempt, or one more than the store
	// has seen if that is higher (no dead-letter policy, or a message
	// re-published by the outbox). Never lower than Pub/Sub's count, so the
	// worker reaches max attempts (and records FAILED) before the
	// subscription's dead-letter policy, its safety net, does.
	attempt := job.Attempt + 1
	if m.DeliveryAttempt != nil && *m.DeliveryAttempt > attempt {
		attempt = *m.DeliveryAttempt
	}
	maxAttempts := job.MaxAttempts
	if maxAttempts <= 0 {
		maxAttempts = entry.Config.MaxAttempts
	}
	log = log.With("attempt", attempt, "max_attempts", maxAttempts)
	lease := uuid.NewString() // this delivery's run lease

	// dctx carries the Deliver hook's values (a span) with pullCtx's
	// cancellation; the admitted handler's ctx gets the same values.
	dctx, values := w.pullCtx, context.Background()
	var outcome error
	if w.cfg.Hooks.Deliver != nil {
		var end func(error)
		values, end = w.cfg.Hooks.Deliver(w.pullCtx, typ, attrs)
		values = context.WithoutCancel(values)
		var stop context.CancelFunc
		dctx, stop = withValues(values, w.pullCtx)
		defer stop()
		defer func() { end(outcome) }()
	}

	// The job becomes Running only when the middleware admits it (token and
	// slot in hand). Until then it waits with pullCtx, so Shutdown nacks
	// messages that have not started; once admitted it runs with hctx, which
	// Shutdown cancels only at its deadline and CancelJob cancels at once.
	var (
		admitted bool
		hctx     context.Context
		hcancel  context.CancelCauseFunc = func(error) {}
		runEnd                           = func(error) {}
	)
	watchDone := make(chan struct{})
	defer func() { close(watchDone); hcancel(nil) }()
	var req *handlers.Request // Admit sets its Attempt
	req = &handlers.Request{
		ID: id, Type: typ, Attempt: attempt, MaxAttempts: maxAttempts,
		Labels: job.Labels, Payload: payload,
		Progress: func(ctx context.Context, fraction float64, message string) error {
			return w.cfg.Store.Progress(ctx, jobs.ProgressParams{ID: id, Fraction: fraction, Message: message, Lease: lease})
		},
		Admit: func(ctx context.Context) (context.Context, error) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			// Subscribe before Start so a Cancel right after it is not missed.
			changed, unsubscribe := w.cfg.Store.Subscribe(id)
			sctx, cancel := w.storeCtx()
			started, err := w.cfg.Store.Start(sctx, jobs.StartParams{ID: id, Attempt: attempt, Lease: lease, LeaseFor: w.cfg.Lease})
			cancel()
			if err != nil {
				unsubscribe()
				return nil, &startError{err}
			}
			admitted = true
			if started.Attempt > attempt { // a takeover counts as a new attempt
				attempt, req.Attempt = started.Attempt, started.Attempt
			}
			stopRun := func() {}
			if w.cfg.Hooks.Deliver != nil {
				hctx, stopRun = withValues(values, w.runCtx)
				hctx, hcancel = context.WithCancelCause(hctx)
			} else {
				hctx, hcancel = context.WithCancelCause(w.runCtx)
			}
			if done := w.cfg.Hooks.Running; done != nil {
				end := done(typ)
				runEnd = func(err error) { end(err) }
			}
			w.leases.add(id, lease, hcancel)
			go func() {
				defer stopRun()
				defer unsubscribe()
				w.watchCancel(id, changed, watchDone, hcancel)
			}()
			return hctx, nil
		},
	}
	if req.Labels == nil {
		req.Labels = map[string]string{}
	}
	res, herr := entry.Handler(dctx, req)
	outcome = herr
	runEnd(herr)
	if admitted {
		w.leases.remove(id, lease)
	}

	if !admitted {
		var se *startError
		switch {
		case errors.As(herr, &se) && gone(se.err):
			log.Debug("ingest: job already ended; acked without running", "err", se.err)
			m.Ack()
		case errors.As(herr, &se) && errors.Is(se.err, jobs.ErrLeased):
			// A duplicate delivery while another worker runs the job: nacked,
			// so that it is acked once that run ends, or runs if it fails.
			log.Info("ingest: job runs under another worker's lease; nacked to try later", "err", se.err)
			m.Nack()
		case errors.As(herr, &se):
			log.Error("ingest: starting job failed; message nacked", "err", se.err)
			m.Nack()
		default: // stopping while waiting for a token or slot
			log.Debug("ingest: worker stopping before the job started; nacked", "err", herr)
			m.Nack()
		}
		return
	}
	cause := context.Cause(hctx)
	switch {
	case errors.Is(cause, errJobCancelled):
		log.Info("ingest: job cancelled while running; acked")
		m.Ack()
	case errors.Is(cause, errLeaseLost):
		log.Info("ingest: the run's lease is gone (job cancelled, ended or taken over); acked", "err", herr)
		m.Ack()
	case herr == nil:
		w.succeed(m, log, id, lease, res)
	case errors.Is(cause, errStopping):
		w.fail(log, id, lease, code.Code_UNAVAILABLE, "ingest: the worker stopped before the handler finished: "+herr.Error(), true)
		m.Nack()
	case handlers.IsPermanent(herr) || attempt >= maxAttempts:
		reason := fmt.Sprintf("attempt %d of %d failed: %v", attempt, maxAttempts, herr)
		if handlers.IsPermanent(herr) {
			reason = fmt.Sprintf("permanent failure on attempt %d: %v", attempt, herr)
		}
		if err := w.publishDeadLetter(s, m, reason, attempt); err != nil {
			log.Error("ingest: dead-lettering failed; message nacked to try again", "err", err)
			w.fail(log, id, lease, errorCode(herr), herr.Error(), true)
			m.Nack()
			return
		}
		if err := w.fail(log, id, lease, errorCode(herr), herr.Error(), false); err != nil {
			m.Nack() // dead-lettered but not recorded: try again (the dead letter may repeat)
			return
		}
		m.Ack()
	default:
		log.Info("ingest: attempt failed; will retry", "err", herr)
		w.fail(log, id, lease, errorCode(herr), herr.Error(), true)
		m.Nack()
	}
}

// withValues returns a context with the values of values and the
// cancellation (cause and deadline aside) of cancel; call stop to release it.
func withValues(values, cancel context.Context) (context.Context, context.CancelFunc) {
	ctx, c := context.WithCancelCause(values)
	stopAfter := context.AfterFunc(cancel, func() { c(context.Cause(cancel)) })
	if cancel.Err() != nil {
		c(context.Cause(cancel))
	}
	return ctx, func() { stopAfter(); c(context.Canceled) }
}

// startError is what Admit returns when the store refused Start.
type startError struct{ err error }

func (e *startError) Error() string { return "ingest: starting job: " + e.err.Error() }
func (e *startError) Unwrap() error { return e.err }

// cancelCheckDelay is how long watchCancel waits after a change to a
// running job before reading it: changes the handler makes itself (Start,
// Progress) wake the watcher too, and most handlers end within this, so they
// never pay for a read. It is the worst-case extra latency of a cancel.
const cancelCheckDelay = 25 * time.Millisecond

// ensureJob returns the job of a message, recording it (Queued) when it is
// not in the store yet, as for a message published without EnqueueJob. It
// reads first: most jobs exist, and reads do not queue behind the store's
// writes.
func (w *Worker) ensureJob(id, typ string, m *pubsub.Message) (*jobs.Job, error) {
	ctx, cancel := w.storeCtx()
	defer cancel()
	job, err := w.cfg.Store.Get(ctx, id)
	if !errors.Is(err, jobs.ErrNotFound) {
		return job, err
	}
	return w.cfg.Store.Ensure(ctx, jobs.EnsureParams{Job: jobs.Job{ID: id, Type: typ, Payload: m.Data, Labels: publisher.Labels(m.Attributes)}})
}

// watchCancel cancels a running handler when its job is cancelled.
func (w *Worker) watchCancel(id string, changed <-chan struct{}, done <-chan struct{}, cancel context.CancelCauseFunc) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		select {
		case <-done:
			return
		case _, ok := <-changed:
			if !ok { // the store closed
				return
			}
		}
		if timer == nil {
			timer = time.NewTimer(cancelCheckDelay)
		} else {
			timer.Reset(cancelCheckDelay)
		}
		select {
		case <-done:
			return
		case <-timer.C:
		}
		ctx, c := w.storeCtx()
		job, err := w.cfg.Store.Get(ctx, id)
		c()
		if err == nil && job.State == jobs.Cancelled {
			cancel(errJobCancelled)
			return
		}
	}
}

func (w *Worker) succeed(m *pubsub.Message, log *slog.Logger, id, lease string, res proto.Message) {
	p := jobs.SucceedParams{ID: id, Lease: lease}
	if res != nil {
		data, err := proto.Marshal(res)
		if err != nil {
			w.fail(log, id, lease, code.Code_INTERNAL, fmt.Sprintf("ingest: encoding the %T result: %v", res, err), true)
			m.Nack()
			return
		}
		p.ResultType, p.Result = string(res.ProtoReflect().Descriptor().FullName()), data
	}
	ctx, cancel := w.storeCtx()
	defer cancel()
	if _, err := w.cfg.Store.Succeed(ctx, p); err != nil && !gone(err) {
		log.Error("ingest: recording success failed; message nacked (the handler will run again)", "err", err)
		m.Nack()
		return
	}
	m.Ack()
}

// fail records a failed attempt under lease ("" for a job that never ran);
// a conflict (the job ended meanwhile, or another worker took it over) is
// fine. It returns the store's error otherwise, after logging it.
func (w *Worker) fail(log *slog.Logger, id, lease string, c code.Code, msg string, retry bool) error {
	ctx, cancel := w.storeCtx()
	defer cancel()
	_, err := w.cfg.Store.Fail(ctx, jobs.FailParams{ID: id, Code: int32(c), Message: msg, Retry: retry, Lease: lease})
	if err == nil || gone(err) {
		return nil
	}
	log.Error("ingest: recording failure failed", "err", err, "retry", retry)
	return err
}

// gone reports whether a store error means the job moved on without us: it
// ended (cancelled, finished by another delivery) or was deleted.
func gone(err error) bool {
	return errors.Is(err, jobs.ErrConflict) || errors.Is(err, jobs.ErrNotFound)
}

// poison dead-letters a message that cannot run and acks it. When it names a
// type, its job is recorded as Failed (or left alone if already terminal).
func (w *Worker) poison(s *subscription, m *pubsub.Message, log *slog.Logger, id, typ, reason string) {
	reason = "ingest: cannot decode message: " + reason
	if typ != "" {
		job, err := w.ensureJob(id, typ, m)
		if err != nil {
			log.Error("ingest: recording undecodable job failed; message nacked", "err", err)
			m.Nack()
			return
		}
		if job.State.Terminal() {
			m.Ack()
			return
		}
	}
	if err := w.publishDeadLetter(s, m, reason, 0); err != nil {
		log.Error("ingest: dead-lettering failed; message nacked", "err", err, "reason", reason)
		m.Nack()
		return
	}
	log.Warn("ingest: message dead-lettered", "reason", reason)
	if typ != "" {
		if err := w.fail(log, id, "", code.Code_INVALID_ARGUMENT, reason, false); err != nil {
			m.Nack() // dead-lettered but not recorded: try again
			return
		}
	}
	m.Ack()
}

func (w *Worker) publishDeadLetter(s *subscription, m *pubsub.Message, reason string, attempt int) error {
	attrs := make(map[string]string, len(m.Attributes)+4)
	for k, v := range m.Attributes {
		attrs[k] = v
	}
	attrs[AttrDeadLetterReason] = reason
	attrs[AttrDeadLetterSubscription] = s.names.Subscription
	attrs[AttrDeadLetterMessageID] = m.ID
	if attempt > 0 {
		attrs[AttrDeadLetterAttempt] = strconv.Itoa(attempt)
	}
	ctx, cancel := w.storeCtx()
	defer cancel()
	if _, err := s.dl.Publish(ctx, &pubsub.Message{Data: m.Data, Attributes: attrs}).Get(ctx); err != nil {
		return fmt.Errorf("ingest: publishing to dead-letter topic %s: %w", s.names.DeadLetterTopic, err)
	}
	if f := w.cfg.Hooks.DeadLettered; f != nil {
		f(m.Attributes[publisher.AttrType], reason)
	}
	return nil
}

// errorCode maps a handler error to the google.rpc.Code recorded on the job.
func errorCode(err error) code.Code {
	var pe *handlers.PanicError
	switch {
	case errors.Is(err, handlers.ErrTimeout):
		return code.Code_DEADLINE_EXCEEDED
	case errors.As(err, &pe):
		return code.Code_INTERNAL
	case handlers.IsPermanent(err):
		return code.Code_FAILED_PRECONDITION
	}
	return code.Code_UNKNOWN
}

// ensure creates the topic, dead-letter topic, dead-letter subscription and
// worker subscription of e, each only if missing.
func (w *Worker) ensure(ctx context.Context, e *handlers.Entry) error {
	n, err := w.names(e)
	if err != nil {
		return err
	}
	project := "projects/" + w.cfg.Client.Project()
	topic := project + "/topics/" + n.Topic
	dlTopic := project + "/topics/" + n.DeadLetterTopic
	for _, t := range []string{topic, dlTopic} {
		if _, err := w.cfg.Client.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: t}); err != nil && !alreadyExists(err) {
			return fmt.Errorf("ingest: creating topic %s: %w", t, err)
		}
	}
	dlAttempts := min(max(5, e.Config.MaxAttempts), 100)
	ackSecs := int32(w.cfg.AckDeadline / time.Second)
	subs := []*pubsubpb.Subscription{
		{Name: project + "/subscriptions/" + n.DeadLetterSubscription, Topic: dlTopic, AckDeadlineSeconds: ackSecs},
		{
			Name: project + "/subscriptions/" + n.Subscription, Topic: topic, AckDeadlineSeconds: ackSecs,
			RetryPolicy: &pubsubpb.RetryPolicy{
				MinimumBackoff: durationpb.New(e.Config.MinBackoff),
				MaximumBackoff: durationpb.New(e.Config.MaxBackoff),
			},
			// A safety net: the worker itself dead-letters after MaxAttempts;
			// Pub/Sub requires 5..100 here.
			DeadLetterPolicy: &pubsubpb.DeadLetterPolicy{DeadLetterTopic: dlTopic, MaxDeliveryAttempts: int32(dlAttempts)},
		},
	}
	for _, s := range subs {
		if _, err := w.cfg.Client.SubscriptionAdminClient.CreateSubscription(ctx, s); err != nil && !alreadyExists(err) {
			return fmt.Errorf("ingest: creating subscription %s: %w", s.Name, err)
		}
	}
	return nil
}

// prepare creates what is missing, or with DisableCreate checks that the
// subscriptions exist.
func (w *Worker) prepare(entries []*handlers.Entry) error {
	if w.cfg.DisableCreate {
		return w.checkSubscriptions(w.pullCtx, entries)
	}
	for _, e := range entries {
		if err := w.ensure(w.pullCtx, e); err != nil {
			return err
		}
	}
	return nil
}

// checkSubscriptions returns an error naming every worker subscription that
// does not exist.
func (w *Worker) checkSubscriptions(ctx context.Context, entries []*handlers.Entry) error {
	var missing []string
	for _, e := range entries {
		n, _ := w.names(e)
		name := "projects/" + w.cfg.Client.Project() + "/subscriptions/" + n.Subscription
		_, err := w.cfg.Client.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: name})
		switch {
		case notFound(err):
			missing = append(missing, fmt.Sprintf("%s (on topic %s, for %s)", n.Subscription, n.Topic, e.Type))
		case err != nil:
			return fmt.Errorf("ingest: checking subscription %s: %w", name, err)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("ingest: Config.DisableCreate is set but these subscriptions do not exist in project %s: %s; create them, or leave DisableCreate off so the worker does",
			w.cfg.Client.Project(), strings.Join(missing, ", "))
	}
	return nil
}
