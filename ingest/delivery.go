package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/protobuf/proto"

	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/wire"
)

// delivery is one received message on its way through the worker: decode,
// ensure (the job's record), run (the composed chain), settle (decide, then
// ack, nack or dead-letter). Every path acks or nacks m exactly once.
type delivery struct {
	w   *Worker
	sub *typeRun // whose subscription the message came on (dead letters go to its topic)
	t   *typeRun // the message's type: its handler, limits; set by decode
	m   *message

	attrs   wire.Received
	id      string
	payload proto.Message
	job     *jobs.Job

	attempt, maxAttempts int
	lease                string          // this delivery's run lease
	started              bool            // markRunning recorded RUNNING, or began a quick run
	quick                *quickRun       // the quick run (Config.Quick), once begun
	ran                  bool            // the handler ran, but the job moved on before its run was recorded
	runCtx               context.Context // the handler's context, once started
	herr                 error           // the chain's error, once settled (a push is answered by it)
}

// process takes the delivery through its steps.
func (d *delivery) process() {
	if reason := d.decode(); reason != "" {
		d.poison(reason)
		return
	}
	d.w.runs.hold(d.id)
	defer d.w.runs.release(d.id)
	for {
		if !d.ensure() {
			return
		}
		if d.job.State.Terminal() {
			d.debug("ingest: job already ended; acked without running", "state", d.job.State)
			d.m.Ack()
			return
		}
		if d.job.State == jobs.Queued && d.job.RunAfter.After(d.w.cfg.Now().Add(staleSlack)) {
			// A stale copy of the message of a job that waits in the store
			// (snoozed, or retried after a delay): its outbox entry
			// publishes it again when due.
			d.debug("ingest: job waits until its run_after; acked without running", "run_after", d.job.RunAfter)
			d.m.Ack()
			return
		}
		if d.w.pauses.paused(d.attrs.Type) {
			// Its type was paused since the message was pulled: leave it
			// for when it is resumed.
			d.debug("ingest: job type paused; nacked")
			d.m.Nack()
			return
		}
		if d.w.pullCtx.Err() != nil { // stopping: do not start new work
			d.debug("ingest: worker stopping before the job started; nacked")
			d.m.Nack()
			return
		}
		if d.job.State == jobs.Running && d.job.Lease != "" && d.job.LeaseExpiry.After(time.Now()) {
			// A duplicate of a delivery another worker runs: wait for that run
			// to end (then the job is terminal, or QUEUED again for a retry)
			// or for its lease to lapse (its worker died: take over), holding
			// the message, rather than nack it and spend a delivery attempt.
			if !d.waitForLease() {
				return
			}
			continue
		}
		// The attempt is Pub/Sub's delivery attempt, or one more than the
		// store has seen if that is higher (no dead-letter policy, or a
		// message re-published by the outbox). Never lower than Pub/Sub's
		// count, so the worker reaches max attempts (and records FAILED)
		// before the subscription's dead-letter policy, its safety net, does.
		d.attempt = d.job.Attempt + 1
		if da := d.m.DeliveryAttempt; da != nil && *da > d.attempt {
			d.attempt = *da
		}
		d.maxAttempts = d.job.MaxAttempts
		if d.maxAttempts <= 0 {
			d.maxAttempts = d.t.entry.Config.MaxAttempts
		}
		d.lease = newLease()
		res, err := d.chain()(d.intake(), d.request())
		if !d.started {
			d.endQuick()
		}
		if !d.started && errors.Is(err, jobs.ErrLeased) {
			continue // the job started elsewhere since it was read: wait for that run
		}
		if rh := (*runningHere)(nil); !d.started && errors.As(err, &rh) {
			// Another delivery of the job runs in this worker (a quick run,
			// not recorded yet): wait for it to end, then read the job again.
			if !d.waitRunningHere(rh.done) {
				return
			}
			continue
		}
		if busy := (*handlers.BusyError)(nil); !d.started && !d.m.pushed && errors.As(err, &busy) {
			// A limiter refused to make it wait that long (a fleet-wide
			// limit's line is long, or its slots are taken): put the job off
			// through the outbox, or else wait, holding the message, and
			// try again.
			if !busy.Hold && d.putOff(busy) || !d.waitBusy(busy) {
				return
			}
			continue
		}
		d.settle(res, err)
		d.endQuick()
		return
	}
}

// staleSlack is how far in the future a QUEUED job's run_after must be for
// a delivery of it to count as a stale copy (clocks of replicas differ a
// little; the outbox publishes at run_after by its own).
const staleSlack = 30 * time.Second

// waitForLease waits, holding the message, until the job changes (through
// any replica, for shared stores) or its run's lease lapses, whichever comes
// first. It returns false, after nacking the message, when the worker stops
// meanwhile.
func (d *delivery) waitForLease() bool {
	d.info("ingest: job runs under another worker's lease; waiting for that run to end or its lease to lapse", "lease_expiry", d.job.LeaseExpiry)
	changed, cancel := d.w.cfg.Store.Subscribe(d.id)
	defer cancel()
	// Re-read after subscribing: a change just before it is not missed.
	if job, err := d.w.ensureJob(d.id, d.attrs, d.m); err == nil && (job.State != jobs.Running || job.Lease != d.job.Lease) {
		return true
	}
	wait := time.Until(d.job.LeaseExpiry) + leaseMargin
	t := time.NewTimer(max(wait, leaseMargin))
	defer t.Stop()
	select {
	case <-changed:
	case <-t.C:
	case <-d.w.pullCtx.Done():
		d.debug("ingest: worker stopping while a duplicate waited for a lease; nacked")
		d.m.Nack()
		return false
	case <-d.m.gone:
		d.debug("ingest: the push request ended while a duplicate waited for a lease; nacked")
		d.m.Nack()
		return false
	}
	return true
}

// leaseMargin is added to a lease's expiry before a waiting duplicate looks
// again: clocks of replicas differ a little.
const leaseMargin = 250 * time.Millisecond

// decode reads the message's attributes and decodes its payload; it
// returns why the message cannot run, or "".
func (d *delivery) decode() string {
	d.attrs = wire.Parse(d.m.Attributes)
	d.id = d.attrs.ID
	if d.id == "" {
		d.id = d.m.ID
	}
	switch {
	case d.attrs.Type == "":
		return fmt.Sprintf("message has no %s attribute; courier needs the full protobuf name of the payload there", wire.AttrType)
	case d.w.types[d.attrs.Type] == nil:
		return fmt.Sprintf("no handler is registered for type %q (%s %q)", d.attrs.Type, wire.AttrType, d.attrs.Type)
	case len(d.id) > jobs.MaxIDBytes:
		return fmt.Sprintf("%s is %d bytes, over the limit of %d bytes for a job ID", wire.AttrID, len(d.id), jobs.MaxIDBytes)
	}
	d.t = d.w.types[d.attrs.Type]
	payload, err := d.t.entry.Decode(d.m.Data)
	if err != nil {
		return err.Error()
	}
	d.payload = payload
	return ""
}

// ensure reads the job, recording it (QUEUED) when it is not in the store
// yet, as for a message published without EnqueueJob. Reads come first:
// most jobs exist, and reads do not queue behind the store's writes. It
// returns false after it nacked or dead-lettered the message.
func (d *delivery) ensure() bool {
	job, err := d.w.ensureJob(d.id, d.attrs, d.m)
	if err != nil {
		d.error("ingest: recording job failed; message nacked", "err", err)
		d.m.Nack()
		return false
	}
	if job.Type != d.attrs.Type {
		d.poison(fmt.Sprintf("%s %q names job %s, which has type %q; a job ID belongs to one type", wire.AttrType, d.attrs.Type, d.id, job.Type))
		return false
	}
	d.job = job
	return true
}

func (w *Worker) ensureJob(id string, attrs wire.Received, m *message) (*jobs.Job, error) {
	ctx, cancel := w.storeCtx()
	defer cancel()
	job, err := w.cfg.Store.Get(ctx, id)
	if !errors.Is(err, jobs.ErrNotFound) {
		return job, err
	}
	return w.cfg.Store.Ensure(ctx, jobs.EnsureParams{Job: jobs.Job{ID: id, Type: attrs.Type, Payload: m.Data, Labels: attrs.Labels}})
}

// request is the attempt as the handler chain sees it.
func (d *delivery) request() *handlers.Request {
	labels := d.job.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	id, store, lease := d.id, d.w.cfg.Store, d.lease
	return &handlers.Request{
		ID: d.id, Type: d.attrs.Type, Attempt: d.attempt, MaxAttempts: d.maxAttempts,
		Labels: labels, Payload: d.payload, TraceParent: d.attrs.TraceParent, TraceState: d.attrs.TraceState,
		Source: d.sub.names.Subscription, MessageID: d.m.ID,
		Progress: func(ctx context.Context, fraction float64, message string) error {
			if d.quick != nil { // progress is recorded on a RUNNING job
				if err := d.record(false); err != nil {
					return err
				}
			}
			return store.Progress(ctx, jobs.ProgressParams{ID: id, Fraction: fraction, Message: message, Lease: lease})
		},
	}
}

// intake is the context the chain's waits for a token or a slot end with:
// the worker's pull context; a push request's do not wait (it is answered
// 429 rather than held).
func (d *delivery) intake() context.Context {
	if d.m.pushed {
		return handlers.WithoutWaiting(d.w.pullCtx)
	}
	return d.w.pullCtx
}

// chain composes the middleware this attempt runs behind, in the one order
// courier uses: rate limit ▸ concurrency ▸ mark RUNNING ▸ Config.Middleware
// ▸ timeout ▸ recover ▸ handler. A message waits for its rate-limit token
// before it takes a concurrency slot, so slots are never held idle; the job
// is RUNNING only once both are in hand (until then it is QUEUED and the
// wait ends when the worker stops pulling); the timeout covers only the run.
func (d *delivery) chain() handlers.Handler {
	mws := make([]handlers.Middleware, 0, 5+len(d.w.cfg.Middleware))
	if d.t.rateLimit != nil {
		mws = append(mws, d.t.rateLimit)
	}
	mws = append(mws, d.t.concurrency)
	if d.t.slots != nil {
		mws = append(mws, d.t.slots)
	}
	mws = append(mws, d.markRunning)
	mws = append(mws, d.w.cfg.Middleware...)
	timeout := d.t.entry.Config.Timeout
	if d.job != nil && d.job.Timeout > 0 {
		timeout = d.job.Timeout // the job's own (EnqueueJobRequest.timeout), at most the type's
	}
	mws = append(mws, handlers.Timeout(timeout), d.w.recover)
	return handlers.ChainMiddleware(d.t.entry.Handler, mws...)
}

// markRunning is the chain's link that records the attempt as RUNNING and
// switches to the handler's context: one that the worker's Shutdown cancels
// only at its deadline (the waits before it end as soon as pulling stops)
// and that a CancelJob on any replica cancels.
func (d *delivery) markRunning(next handlers.Handler) handlers.Handler {
	return func(ctx context.Context, req *handlers.Request) (proto.Message, error) {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		if d.w.cfg.Quick != nil {
			return d.runQuick(next, req)
		}
		started, err := d.start()
		if err != nil {
			return nil, &startError{err}
		}
		d.started = true
		if started.Attempt > d.attempt { // a takeover counts as a new attempt
			d.attempt, req.Attempt = started.Attempt, started.Attempt
		}
		rctx, r := d.w.runs.add(d.id, d.lease)
		defer d.w.runs.remove(d.id, r)
		d.runCtx = rctx
		return next(rctx, req)
	}
}

// start records the attempt RUNNING under the delivery's lease.
func (d *delivery) start() (*jobs.Job, error) {
	ctx, cancel := d.w.storeCtx()
	defer cancel()
	return d.w.cfg.Store.Start(ctx, jobs.StartParams{ID: d.id, Attempt: d.attempt, Lease: d.lease, LeaseFor: d.w.cfg.Lease})
}

// quickRun is a run begun without recording RUNNING (Config.Quick): the
// store learns of it when the handler outlives RunningAfter, reports
// progress or fails (Store.Start, under the delivery's lease), or else in
// the one write that records its success (jobs.StartSucceeder).
type quickRun struct {
	run     *run
	started time.Time
	// mu orders the recording (by the timer, Progress or the end) with the
	// end of the handler.
	mu       sync.Mutex
	recorded bool // RUNNING is in the store under the delivery's lease
	ended    bool // the handler returned: only the end records now
}

// runningHere is what markRunning returns when another delivery of the job
// runs in this worker as a quick run; done closes when that run ends.
type runningHere struct{ done <-chan struct{} }

func (*runningHere) Error() string { return "ingest: another delivery of the job runs in this worker" }

// runQuick runs the rest of the chain as a quick run (see Config.Quick).
func (d *delivery) runQuick(next handlers.Handler, req *handlers.Request) (proto.Message, error) {
	r, busy := d.w.runs.addQuick(d.id)
	if r == nil {
		return nil, &runningHere{done: busy}
	}
	// The run stays registered until its end is recorded (endQuick), so
	// that a duplicate waiting for it then reads the job ended.
	q := &quickRun{run: r, started: d.w.cfg.Now()}
	d.quick, d.started, d.runCtx = q, true, r.ctx
	t := time.AfterFunc(d.w.cfg.RunningAfter, func() {
		if err := d.record(false); err != nil && !gone(err) {
			d.warn("ingest: recording a long quick run as RUNNING failed; its end records it", "err", err)
		}
	})
	res, err := next(r.ctx, req)
	t.Stop()
	q.mu.Lock()
	q.ended = true
	recorded := q.recorded
	q.mu.Unlock()
	if err != nil && !recorded {
		// A failure is recorded as on the usual path, RUNNING first.
		if serr := d.record(true); serr != nil {
			if gone(serr) && errors.Is(context.Cause(r.ctx), errJobCancelled) {
				return res, err // settle sees the cancel, which is recorded
			}
			d.started, d.ran = false, true
			return nil, &startError{serr}
		}
	}
	return res, err
}

// endQuick forgets the quick run, if any, once its outcome is recorded
// (or it did not begin): a duplicate waiting for it reads the job again.
func (d *delivery) endQuick() {
	if d.quick != nil {
		d.w.runs.remove(d.id, d.quick.run)
		d.quick = nil
	}
}

// record writes RUNNING for the quick run, under the delivery's lease,
// unless it is recorded already or (without always) its handler returned.
func (d *delivery) record(always bool) error {
	q := d.quick
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.recorded || q.ended && !always {
		return nil
	}
	if _, err := d.start(); err != nil {
		return err
	}
	q.recorded = true
	d.w.runs.setLease(q.run, d.lease)
	return nil
}

// unrecorded reports whether the delivery ran as a quick run that the
// store has not seen: its success is recorded by StartSucceed.
func (d *delivery) unrecorded() bool {
	if d.quick == nil {
		return false
	}
	d.quick.mu.Lock()
	defer d.quick.mu.Unlock()
	return !d.quick.recorded
}

// waitRunningHere waits, holding the message, until done closes. It
// returns false, after nacking the message, when the worker stops (or the
// push request ends) meanwhile.
func (d *delivery) waitRunningHere(done <-chan struct{}) bool {
	d.info("ingest: job runs in this worker under another delivery (not recorded yet); waiting for that run to end")
	select {
	case <-done:
		return true
	case <-d.w.pullCtx.Done():
		d.debug("ingest: worker stopping while a duplicate waited for the job's run here; nacked")
	case <-d.m.gone:
		d.debug("ingest: the push request ended while a duplicate waited for the job's run here; nacked")
	}
	d.m.Nack()
	return false
}

// newLease makes a delivery's run lease token.
func newLease() string { return uuid.NewString() }

// startError is what markRunning returns when the store refused Start.
type startError struct{ err error }

func (e *startError) Error() string { return "ingest: starting job: " + e.err.Error() }
func (e *startError) Unwrap() error { return e.err }

// settle decides what the chain's outcome means and carries it out.
func (d *delivery) settle(res proto.Message, herr error) {
	d.herr = herr
	o := outcome{Started: d.started, Err: herr, Attempt: d.attempt, MaxAttempts: d.maxAttempts}
	if d.started {
		cause := context.Cause(d.runCtx)
		o.Cancelled = errors.Is(cause, errJobCancelled)
		o.Stopping = errors.Is(cause, errStopping)
		o.LeaseLost = errors.Is(cause, errLeaseLost)
	} else if se := (*startError)(nil); errors.As(herr, &se) {
		o.Err = se.err
	}
	if de, ok := handlers.AsDelay(herr); ok && d.started && !o.Cancelled && !o.Stopping && !o.LeaseLost && !handlers.IsPermanent(herr) && d.w.cfg.Snoozer != nil {
		// Snooze always waits; RetryAfter waits unless it was the last
		// attempt (then the job fails like any other error).
		if de.Snooze || decide(o).Record == recordRetry {
			d.delay(de)
			return
		}
	}
	v := decide(o)
	switch v.Record {
	case recordNothing:
		switch {
		case d.ran && v.Ack:
			d.debug("ingest: job ended (cancelled) while its quick run ran; acked without recording", "err", o.Err)
		case !d.started && v.Ack:
			d.debug("ingest: job already ended; acked without running", "err", o.Err)
		case !d.started && errors.Is(herr, handlers.ErrBusy):
			d.debug("ingest: over the type's rate or concurrency limit; push answered 429", "err", herr)
		case !d.started && errors.As(herr, new(*startError)):
			d.error("ingest: starting job failed; message nacked", "err", o.Err)
		case !d.started:
			d.debug("ingest: worker stopping before the job started; nacked", "err", herr)
		case o.Cancelled:
			d.info("ingest: job cancelled while running; acked")
		case o.LeaseLost:
			d.info("ingest: the run's lease is gone (job cancelled, ended or taken over); acked without recording", "err", herr)
		}
		d.ackIf(v.Ack)
	case recordSucceed:
		d.succeed(res)
	case recordRetry:
		msg := herr.Error()
		c := errorCode(herr)
		if o.Stopping {
			msg, c = "ingest: the worker stopped before the handler finished: "+msg, code.Code_UNAVAILABLE
		} else {
			d.info("ingest: attempt failed; will retry", "err", herr)
		}
		d.fail(c, msg, true)
		d.m.Nack()
	case recordFail:
		reason := fmt.Sprintf("attempt %d of %d failed: %v", d.attempt, d.maxAttempts, herr)
		if handlers.IsPermanent(herr) {
			reason = fmt.Sprintf("permanent failure on attempt %d: %v", d.attempt, herr)
		}
		if err := d.deadLetter(reason, d.attempt); err != nil {
			d.error("ingest: dead-lettering failed; message nacked to try again", "err", err)
			d.fail(errorCode(herr), herr.Error(), true)
			d.m.Nack()
			return
		}
		if err := d.fail(errorCode(herr), herr.Error(), false); err != nil {
			d.m.Nack() // dead-lettered but not recorded: try again (the dead letter may repeat)
			return
		}
		d.m.Ack()
	}
}

// delay puts the job back to wait in the store until the DelayError's
// delay has passed (its outbox entry publishes it again then), and acks
// the message. A snooze gives the attempt back. If the store refuses
// because the job moved on (cancelled, taken over), the message is acked
// too; on a store failure it is nacked (Pub/Sub's backoff retries it).
func (d *delivery) delay(de *handlers.DelayError) {
	until := d.w.cfg.Now().Add(de.Delay)
	p := jobs.SnoozeParams{ID: d.id, Lease: d.lease, Until: until, CountAttempt: !de.Snooze}
	if de.Snooze {
		p.Message = fmt.Sprintf("snoozed until %s", until.UTC().Format(time.RFC3339))
		if de.Err != nil {
			p.Message += ": " + de.Err.Error()
		}
	} else {
		p.Code, p.Message = int32(errorCode(de)), d.herr.Error()
	}
	ctx, cancel := d.w.storeCtx()
	defer cancel()
	_, err := d.w.cfg.Snoozer.Snooze(ctx, p)
	// The relay that published this message a moment ago may not have
	// removed its outbox entry yet: wait for it (its MarkSent, or the end
	// of its claim) rather than have it remove the new entry.
	for wait := 10 * time.Millisecond; errors.Is(err, jobs.ErrOutboxBusy); wait = min(2*wait, time.Second) {
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-time.After(wait):
			_, err = d.w.cfg.Snoozer.Snooze(ctx, p)
		}
	}
	if err != nil && !gone(err) {
		d.error("ingest: recording the delay failed; message nacked (the handler will run again after Pub/Sub's backoff)", "err", err)
		d.m.Nack()
		return
	}
	d.debug("ingest: job waits in the store", "until", until, "snooze", de.Snooze)
	d.m.Ack()
}

// putOff puts off a job that a limiter refused (a fleet-wide limit's line
// is long, or its slots are taken): when the store is a jobs.Deferrer, the
// job gets an outbox entry due when the limiter says and the message is
// acked, so that it does not occupy the worker meanwhile. It reports
// whether it did. A job with an ordering key is not put off (its entry
// would go out of order).
func (d *delivery) putOff(busy *handlers.BusyError) bool {
	df := d.w.cfg.Deferrer
	if df == nil || d.job.OrderingKey != "" {
		return false
	}
	wait := max(busy.RetryAfter, d.w.cfg.DeferMin)
	// A message may come before the relay that published it has removed
	// its outbox entry (MarkSent follows the publish): Defer refuses while
	// the entry is there, so try again a few times, for about half a second.
	pause := 20 * time.Millisecond
	for try := 0; ; try++ {
		ctx, cancel := d.w.storeCtx()
		err := df.Defer(ctx, d.id, time.Now().Add(wait))
		cancel()
		if err == nil {
			break
		}
		if !errors.Is(err, jobs.ErrConflict) || try == 4 {
			d.warn("ingest: putting off a throttled job failed; its message waits instead", "err", err)
			return false
		}
		select {
		case <-time.After(pause):
		case <-d.w.pullCtx.Done():
			return false
		}
		pause *= 2
	}
	d.debug("ingest: over a fleet-wide limit; the job is put off and its message acked", "limit", busy.Limit, "for", wait)
	d.m.Ack()
	return true
}

// waitBusy waits, holding the message, until the limiter said to come back.
// It returns false, after nacking the message, when the worker stops
// meanwhile.
func (d *delivery) waitBusy(busy *handlers.BusyError) bool {
	t := time.NewTimer(max(busy.RetryAfter, d.w.cfg.DeferMin))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-d.w.pullCtx.Done():
		d.debug("ingest: worker stopping while a throttled message waited; nacked")
		d.m.Nack()
		return false
	}
}

func (d *delivery) ackIf(ack bool) {
	if ack {
		d.m.Ack()
	} else {
		d.m.Nack()
	}
}

func (d *delivery) succeed(res proto.Message) {
	p := jobs.SucceedParams{ID: d.id, Lease: d.lease}
	if res != nil {
		data, err := proto.Marshal(res)
		if err != nil {
			if d.unrecorded() {
				if serr := d.record(true); serr != nil && !gone(serr) {
					d.error("ingest: recording the run failed; message nacked", "err", serr)
					d.m.Nack()
					return
				}
			}
			d.fail(code.Code_INTERNAL, fmt.Sprintf("ingest: encoding the %T result: %v", res, err), true)
			d.m.Nack()
			return
		}
		p.ResultType, p.Result = string(res.ProtoReflect().Descriptor().FullName()), data
	}
	ctx, cancel := d.w.storeCtx()
	defer cancel()
	var err error
	if d.unrecorded() {
		_, err = d.w.cfg.Quick.StartSucceed(ctx, jobs.StartSucceedParams{ID: d.id, Attempt: d.attempt, Started: d.quick.started,
			ResultType: p.ResultType, Result: p.Result})
	} else {
		_, err = d.w.cfg.Store.Succeed(ctx, p)
	}
	if err != nil && !gone(err) {
		d.error("ingest: recording success failed; message nacked (the handler will run again)", "err", err)
		d.m.Nack()
		return
	}
	d.m.Ack()
}

// fail records a failed attempt; a conflict (the job ended meanwhile) is
// fine. It returns the store's error otherwise, after logging it.
func (d *delivery) fail(c code.Code, msg string, retry bool) error {
	ctx, cancel := d.w.storeCtx()
	defer cancel()
	lease := d.lease
	if !d.started {
		lease = "" // a job that never ran here (an undecodable message)
	}
	_, err := d.w.cfg.Store.Fail(ctx, jobs.FailParams{ID: d.id, Code: int32(c), Message: msg, Retry: retry, Lease: lease})
	if err == nil || gone(err) {
		return nil
	}
	d.error("ingest: recording failure failed", "err", err, "retry", retry)
	return err
}

// poison dead-letters a message that cannot run and acks it. When it names a
// registered type, its job is recorded as Failed (or left alone if already
// terminal).
func (d *delivery) poison(reason string) {
	reason = "ingest: cannot decode message: " + reason
	typ := d.attrs.Type
	record := d.w.types[typ] != nil && len(d.id) <= jobs.MaxIDBytes && (d.job == nil || d.job.Type == typ)
	if record {
		job, err := d.w.ensureJob(d.id, d.attrs, d.m)
		if err != nil {
			d.error("ingest: recording undecodable job failed; message nacked", "err", err)
			d.m.Nack()
			return
		}
		if job.State.Terminal() {
			d.m.Ack()
			return
		}
	}
	if err := d.deadLetter(reason, 0); err != nil {
		d.error("ingest: dead-lettering failed; message nacked", "err", err, "reason", reason)
		d.m.Nack()
		return
	}
	d.warn("ingest: message dead-lettered", "reason", reason)
	if record {
		if err := d.fail(code.Code_INVALID_ARGUMENT, reason, false); err != nil {
			d.m.Nack() // dead-lettered but not recorded: try again
			return
		}
	}
	d.m.Ack()
}

// deadLetter publishes a copy of the message, with the reason, to the
// type's dead-letter topic and waits until Pub/Sub accepted it.
func (d *delivery) deadLetter(reason string, attempt int) error {
	attrs := make(map[string]string, len(d.m.Attributes)+4)
	for k, v := range d.m.Attributes {
		attrs[k] = v
	}
	attrs[AttrDeadLetterReason] = reason
	attrs[AttrDeadLetterSubscription] = d.sub.names.Subscription
	attrs[AttrDeadLetterMessageID] = d.m.ID
	if attempt > 0 {
		attrs[AttrDeadLetterAttempt] = strconv.Itoa(attempt)
	}
	ctx, cancel := d.w.storeCtx()
	defer cancel()
	return d.w.cfg.DeadLetters.PublishDeadLetter(ctx, d.sub.names.DeadLetterTopic, &pubsub.Message{Data: d.m.Data, Attributes: attrs})
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

// Logging: the delivery's attributes are added only when a line is
// written, so a delivery that logs nothing allocates no logger.
func (d *delivery) debug(msg string, args ...any) { d.log(slog.LevelDebug, msg, args) }
func (d *delivery) info(msg string, args ...any)  { d.log(slog.LevelInfo, msg, args) }
func (d *delivery) warn(msg string, args ...any)  { d.log(slog.LevelWarn, msg, args) }
func (d *delivery) error(msg string, args ...any) { d.log(slog.LevelError, msg, args) }

func (d *delivery) log(level slog.Level, msg string, args []any) {
	if !d.w.log.Enabled(context.Background(), level) {
		return
	}
	all := append([]any{"job_id", d.id, "type", d.attrs.Type, "subscription", d.sub.names.Subscription, "message_id", d.m.ID}, args...)
	if d.attempt > 0 {
		all = append(all, "attempt", d.attempt, "max_attempts", d.maxAttempts)
	}
	d.w.log.Log(context.Background(), level, msg, all...)
}
