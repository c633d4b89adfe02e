package ingest

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/courierq/courier/jobs"
)

// leases holds the run leases of the jobs this worker runs, so that one
// heartbeat loop renews them all. The zero value is ready.
type leases struct {
	mu   sync.Mutex
	runs map[jobs.LeaseRef]context.CancelCauseFunc
}

// add registers the run of job id under lease; cancel stops its handler.
func (l *leases) add(id, lease string, cancel context.CancelCauseFunc) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.runs == nil {
		l.runs = make(map[jobs.LeaseRef]context.CancelCauseFunc)
	}
	l.runs[jobs.LeaseRef{ID: id, Lease: lease}] = cancel
}

// remove forgets the run of job id under lease.
func (l *leases) remove(id, lease string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.runs, jobs.LeaseRef{ID: id, Lease: lease})
}

func (l *leases) held() []jobs.LeaseRef {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]jobs.LeaseRef, 0, len(l.runs))
	for ref := range l.runs {
		out = append(out, ref)
	}
	return out
}

// heartbeats renews the leases of running jobs every third of Config.Lease
// until ctx ends, and stops the handler of each job whose lease is gone.
func (w *Worker) heartbeats(ctx context.Context) {
	t := time.NewTicker(w.cfg.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		refs := w.leases.held()
		for len(refs) > 0 {
			n := min(len(refs), jobs.MaxHeartbeatLeases)
			w.heartbeat(refs[:n])
			refs = refs[n:]
		}
	}
}

func (w *Worker) heartbeat(refs []jobs.LeaseRef) {
	ctx, cancel := w.storeCtx()
	defer cancel()
	lost, err := w.cfg.Store.Heartbeat(ctx, jobs.HeartbeatParams{Leases: refs, LeaseFor: w.cfg.Lease})
	if err != nil {
		if !errors.Is(err, jobs.ErrClosed) {
			w.log.Warn("ingest: renewing the leases of running jobs failed; will try again", "jobs", len(refs), "err", err)
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
	w.leases.mu.Lock()
	defer w.leases.mu.Unlock()
	for _, ref := range refs {
		if cancel, ok := w.leases.runs[ref]; ok && gone[ref.ID] {
			cancel(errLeaseLost)
		}
	}
}
