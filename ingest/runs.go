package ingest

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/courierq/courier/jobs"
)

// errLeaseLost is the cause of a handler ctx cancelled because a heartbeat
// found its run's lease gone (the job was cancelled, ended, or taken over by
// another worker after the lease lapsed).
var errLeaseLost = errors.New("ingest: the run's lease is gone (job cancelled, ended, or taken over by another worker)")

// runs are the jobs this worker runs now, each under its run lease, and the
// two loops that ask the store about all of them at once: one cancels a
// handler whose job was cancelled (through any replica) every
// CancelPollInterval, the other renews the leases every third of
// Config.Lease and stops a handler whose lease is gone. No goroutine or
// subscription per job.
type runs struct {
	w    *Worker
	mu   sync.Mutex
	byID map[string][]*run
	held map[string]int // deliveries held, by job ID (running or waiting)
}

type run struct {
	lease  string // "" while a quick run is not recorded (see Config.Quick): no heartbeats
	ctx    context.Context
	cancel context.CancelCauseFunc
}

func newRuns(w *Worker) *runs { return &runs{w: w, byID: map[string][]*run{}, held: map[string]int{}} }

// hold notes that a delivery of job id is held (until release): the seen
// loop reports it to the store.
func (rs *runs) hold(id string) {
	rs.mu.Lock()
	rs.held[id]++
	rs.mu.Unlock()
}

// release undoes hold.
func (rs *runs) release(id string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	switch n := rs.held[id]; {
	case n > 1:
		rs.held[id] = n - 1
	case n == 1:
		delete(rs.held, id)
	}
}

// seen reports the jobs whose messages are held to the store every
// SeenInterval (Store.MarkSeen), so that the rescuer does not republish a
// job that waits in this worker for a token, a slot or a lease. It returns
// at once when SeenInterval is 0.
func (rs *runs) seen(ctx context.Context) {
	if rs.w.cfg.SeenInterval == 0 {
		return
	}
	t := time.NewTicker(rs.w.cfg.SeenInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rs.mu.Lock()
		ids := slices.Collect(maps.Keys(rs.held))
		rs.mu.Unlock()
		for chunk := range slices.Chunk(ids, jobs.MaxBatchIDs) {
			sctx, cancel := rs.w.storeCtx()
			err := rs.w.cfg.Store.MarkSeen(sctx, chunk)
			cancel()
			if err != nil && ctx.Err() == nil && !errors.Is(err, jobs.ErrClosed) {
				rs.w.log.Warn("ingest: telling the store which jobs this worker holds failed; will try again", "jobs", len(chunk), "err", err)
				break
			}
		}
	}
}

// add registers a run of job id under lease and returns its handler
// context: the worker's run context, cancelled with a cause when the job is
// cancelled or its lease lost.
func (rs *runs) add(id, lease string) (context.Context, *run) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r := rs.addLocked(id, lease)
	return r.ctx, r
}

// addLocked is add with rs.mu held.
func (rs *runs) addLocked(id, lease string) *run {
	ctx, cancel := context.WithCancelCause(rs.w.runCtx)
	r := &run{lease: lease, ctx: ctx, cancel: cancel}
	rs.byID[id] = append(rs.byID[id], r)
	return r
}

// addQuick registers a quick run of job id (no lease recorded yet) unless
// the job already runs here: then it returns nil and that run's context,
// which ends with it. Quick runs are not recorded before their handlers
// start, so this, not a lease, keeps two deliveries of a job from running
// at once.
func (rs *runs) addQuick(id string) (*run, <-chan struct{}) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if list := rs.byID[id]; len(list) > 0 {
		return nil, list[0].ctx.Done()
	}
	return rs.addLocked(id, ""), nil
}

// setLease records that r now holds lease (its run was recorded RUNNING):
// the heartbeats renew it from now on.
func (rs *runs) setLease(r *run, lease string) {
	rs.mu.Lock()
	r.lease = lease
	rs.mu.Unlock()
}

// remove forgets r and releases its context (keeping its cause).
func (rs *runs) remove(id string, r *run) {
	rs.mu.Lock()
	list := rs.byID[id]
	for i, x := range list {
		if x == r {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(rs.byID, id)
	} else {
		rs.byID[id] = list
	}
	rs.mu.Unlock()
	r.cancel(context.Canceled)
}

func (rs *runs) count() int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return len(rs.byID)
}

func (rs *runs) ids() []string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return slices.Collect(maps.Keys(rs.byID))
}

// cancelAll cancels the runs of id with cause.
func (rs *runs) cancelAll(id string, cause error) {
	rs.mu.Lock()
	list := append([]*run(nil), rs.byID[id]...)
	rs.mu.Unlock()
	for _, r := range list {
		r.cancel(cause)
	}
}

// watch polls the store for cancelled jobs among the running ones until ctx
// ends.
func (rs *runs) watch(ctx context.Context) {
	t := time.NewTicker(rs.w.cfg.CancelPollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ids := rs.ids()
		if len(ids) == 0 {
			continue
		}
		for chunk := range slices.Chunk(ids, 1000) {
			sctx, cancel := rs.w.storeCtx()
			cancelled, err := rs.cancelled(sctx, chunk)
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					rs.w.log.Warn("ingest: checking running jobs for cancels failed; will try again", "err", err)
				}
				break
			}
			for _, id := range cancelled {
				rs.cancelAll(id, errJobCancelled)
			}
		}
	}
}

// cancelled returns which of ids are CANCELLED.
func (rs *runs) cancelled(ctx context.Context, ids []string) ([]string, error) {
	return rs.w.cfg.Store.Cancelled(ctx, ids)
}

// leases returns the lease of every recorded run.
func (rs *runs) leases() []jobs.LeaseRef {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	out := make([]jobs.LeaseRef, 0, len(rs.byID))
	for id, list := range rs.byID {
		for _, r := range list {
			if r.lease != "" {
				out = append(out, jobs.LeaseRef{ID: id, Lease: r.lease})
			}
		}
	}
	return out
}

// heartbeats renews the leases of the running jobs every third of
// Config.Lease until ctx ends, and stops the handler of each job whose lease
// is gone.
func (rs *runs) heartbeats(ctx context.Context) {
	t := time.NewTicker(rs.w.cfg.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for refs := range slices.Chunk(rs.leases(), jobs.MaxHeartbeatLeases) {
			rs.heartbeat(refs)
		}
	}
}

func (rs *runs) heartbeat(refs []jobs.LeaseRef) {
	ctx, cancel := rs.w.storeCtx()
	defer cancel()
	lost, err := rs.w.cfg.Store.Heartbeat(ctx, jobs.HeartbeatParams{Leases: refs, LeaseFor: rs.w.cfg.Lease})
	if err != nil {
		if !errors.Is(err, jobs.ErrClosed) {
			rs.w.log.Warn("ingest: renewing the leases of running jobs failed; will try again", "jobs", len(refs), "err", err)
		}
		return
	}
	if len(lost) == 0 {
		return
	}
	gone := make(map[string]bool, len(lost))
	for _, id := range lost {
		gone[id] = true
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for _, ref := range refs {
		if !gone[ref.ID] {
			continue
		}
		for _, r := range rs.byID[ref.ID] {
			if r.lease == ref.Lease {
				r.cancel(errLeaseLost)
			}
		}
	}
}
