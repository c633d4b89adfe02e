package ingest

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/courierq/courier/jobs"
)

// errLeaseLost is the cause of a handler ctx cancelled because its job's
// lease was lost: another delivery took the job over, or it was released.
var errLeaseLost = errors.New("ingest: the job's lease was lost")

// runs are the jobs this worker runs now, and the one watcher that cancels
// a handler whose job was cancelled (through any replica): it asks the store
// about all of them at once every CancelPollInterval, instead of a goroutine
// and a subscription per job.
type runs struct {
	w    *Worker
	mu   sync.Mutex
	byID map[string][]*run
}

type run struct {
	cancel context.CancelCauseFunc
}

func newRuns(w *Worker) *runs { return &runs{w: w, byID: map[string][]*run{}} }

// add registers a run of job id and returns its handler context: the
// worker's run context, cancelled with a cause when the job is cancelled.
func (rs *runs) add(id string) (context.Context, *run) {
	ctx, cancel := context.WithCancelCause(rs.w.runCtx)
	r := &run{cancel: cancel}
	rs.mu.Lock()
	rs.byID[id] = append(rs.byID[id], r)
	rs.mu.Unlock()
	return ctx, r
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
	out := make([]string, 0, len(rs.byID))
	for id := range rs.byID {
		out = append(out, id)
	}
	return out
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

// cancelledStore is the store method the watcher uses when the store has it.
type cancelledStore interface {
	Cancelled(ctx context.Context, ids []string) ([]string, error)
}

// cancelled returns which of ids are CANCELLED.
func (rs *runs) cancelled(ctx context.Context, ids []string) ([]string, error) {
	if s, ok := rs.w.cfg.Store.(cancelledStore); ok {
		return s.Cancelled(ctx, ids)
	}
	var out []string
	for _, id := range ids {
		j, err := rs.w.cfg.Store.Get(ctx, id)
		if errors.Is(err, jobs.ErrNotFound) {
			continue
		}
		if err != nil {
			return out, err
		}
		if j.State == jobs.Cancelled {
			out = append(out, id)
		}
	}
	return out, nil
}
