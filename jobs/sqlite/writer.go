package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/internal/storekit"
)

// A request is one write: fn runs inside the writer's batch transaction and
// stores its results in variables it closes over.
type request struct {
	ctx context.Context
	// multi marks a request of several statements: it runs inside a savepoint
	// so that its failure undoes only its own writes.
	multi bool
	fn    func(w *wtx) error
	done  chan error // buffered(1)
}

// wtx is the batch transaction as a request sees it.
type wtx struct {
	ctx     context.Context
	tx      *sql.Tx
	cache   map[*sql.Stmt]*sql.Stmt
	changed []string // job IDs whose subscribers to wake after commit
	// req gathers the counter changes of the running request; the batch's
	// tally takes them only when the request succeeds.
	req, batch storekit.Tally
}

// move records that a job of typ went from one state to another (see
// storekit.Tally.Move), for the counters the batch updates before commit.
func (w *wtx) move(typ string, from, to jobs.State, now time.Time) { w.req.Move(typ, from, to, now) }

// stmt returns st bound to the batch transaction.
func (w *wtx) stmt(st *sql.Stmt) *sql.Stmt {
	if c, ok := w.cache[st]; ok {
		return c
	}
	c := w.tx.StmtContext(w.ctx, st)
	w.cache[st] = c
	return c
}

// write hands fn to the writer and waits for its result. Once the writer
// has taken the request it always answers, so the wait ignores ctx: the
// caller learns whether the write happened.
func (s *Store) write(ctx context.Context, method string, multi bool, fn func(w *wtx) error) error {
	if err := s.checkOpen(method); err != nil {
		return err
	}
	r := &request{ctx: ctx, multi: multi, fn: fn, done: make(chan error, 1)}
	select {
	case s.reqs <- r:
	case <-ctx.Done():
		return fmt.Errorf("%s: %s: %w", pkg, method, ctx.Err())
	case <-s.stopped:
		return fmt.Errorf("%s: %s: %w", pkg, method, jobs.ErrClosed)
	}
	return <-r.done
}

// writer is the only goroutine that writes. It takes a request, then every
// request already waiting (up to MaxBatch), runs them in one transaction and
// commits once.
func (s *Store) writer() {
	defer close(s.stopped)
	batch := make([]*request, 0, s.cfg.MaxBatch)
	for {
		var ok bool
		if batch, ok = storekit.NextBatch(s.reqs, s.stop, batch, s.cfg.MaxBatch); !ok {
			return
		}
		if len(batch) < s.cfg.MaxBatch {
			// Let the goroutines that are about to write run first (they
			// are often just behind this one): each commit costs about as
			// much as a handful of writes, so a batch is worth filling.
			runtime.Gosched()
			batch = storekit.MoreBatch(s.reqs, batch, s.cfg.MaxBatch)
		}
		s.runBatch(batch)
	}
}

// runBatch runs a batch in one transaction. It first runs every request
// as it comes, with no savepoints: a savepoint copies each page its
// request changes into the statement journal, which is most of the cost of
// a small write. Only when a request of several statements fails (its
// writes so far must be undone, and only its own) does it roll the whole
// transaction back and run the batch again, each such request under a
// savepoint of its own. Requests are re-runnable: each sets its results
// anew when it runs.
func (s *Store) runBatch(batch []*request) {
	if !s.tryBatch(batch, false) {
		s.tryBatch(batch, true)
	}
}

// tryBatch runs batch in one transaction and answers every request, and
// returns true; without careful, it returns false instead, having rolled
// back and answered none, when a request of several statements fails.
func (s *Store) tryBatch(batch []*request, careful bool) bool {
	ctx := context.Background()
	results := make([]error, len(batch))
	w := &wtx{ctx: ctx, cache: make(map[*sql.Stmt]*sql.Stmt, 8)}
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		err = fmt.Errorf("%s: begin: %w", pkg, err)
		for _, r := range batch {
			r.done <- err
		}
		return true
	}
	w.tx = tx
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			results[i] = fmt.Errorf("%s: %w", pkg, err)
			continue
		}
		w.req.Reset()
		if !r.multi || !careful {
			if results[i] = r.fn(w); results[i] == nil {
				w.batch.Add(&w.req)
			} else if r.multi {
				tx.Rollback()
				return false
			}
			continue
		}
		if _, err := w.stmt(s.st.savepoint).Exec(); err != nil {
			results[i] = fmt.Errorf("%s: savepoint: %w", pkg, err)
			continue
		}
		n := len(w.changed)
		results[i] = r.fn(w)
		if results[i] == nil {
			w.batch.Add(&w.req)
		} else {
			w.changed = w.changed[:n]
			if _, err := w.stmt(s.st.rollbackTo).Exec(); err != nil {
				results[i] = errors.Join(results[i], fmt.Errorf("%s: rollback to savepoint: %w", pkg, err))
			}
		}
		if _, err := w.stmt(s.st.release).Exec(); err != nil {
			results[i] = errors.Join(results[i], fmt.Errorf("%s: release savepoint: %w", pkg, err))
		}
	}
	if err := s.applyTally(w); err != nil {
		tx.Rollback()
		for _, r := range batch {
			r.done <- err
		}
		return true
	}
	if err := tx.Commit(); err != nil {
		err = fmt.Errorf("%s: commit: %w", pkg, err)
		for _, r := range batch {
			r.done <- err
		}
		return true
	}
	for _, id := range w.changed {
		s.hub.Notify(id)
	}
	for i, r := range batch {
		r.done <- results[i]
	}
	return true
}

// applyTally moves the counters of Counts and Throughput by what the batch
// changed: one upsert per counter, in the batch's transaction.
func (s *Store) applyTally(w *wtx) error {
	keys, deltas := w.batch.Counts()
	for i, k := range keys {
		if _, err := w.stmt(s.st.addCount).Exec(k.Type, string(k.State), deltas[i]); err != nil {
			return fmt.Errorf("%s: update job counts: %w", pkg, err)
		}
	}
	ends, ns := w.batch.Ends()
	for i, k := range ends {
		if _, err := w.stmt(s.st.addEnds).Exec(k.Minute.UnixMicro(), k.Type, ns[i].Succeeded, ns[i].Failed); err != nil {
			return fmt.Errorf("%s: update throughput: %w", pkg, err)
		}
	}
	return nil
}
