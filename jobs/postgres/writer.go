package postgres

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/courierq/courier/jobs"
	"github.com/jackc/pgx/v5"
)

// A request is one write statement. scan reads its one result row (or
// pgx.ErrNoRows) into variables it closes over; it may run twice (a failed
// batch is retried statement by statement), so it must set every output.
type request struct {
	ctx  context.Context
	id   string // the job the statement changes: batches run in ID order
	sql  string
	args []any
	scan func(row pgx.Row) error
	done chan error // buffered(1)
}

// write hands one statement to a writer and waits for its result. Once a
// writer has taken the request it always answers, so the wait ignores ctx.
func (s *Store) write(ctx context.Context, method, id, sql string, args []any, scan func(pgx.Row) error) error {
	if err := s.checkOpen(method); err != nil {
		return err
	}
	r := &request{ctx: ctx, id: id, sql: sql, args: args, scan: scan, done: make(chan error, 1)}
	select {
	case s.reqs <- r:
	case <-ctx.Done():
		return fmt.Errorf("%s: %s: %w", pkg, method, ctx.Err())
	case <-s.stop:
		return fmt.Errorf("%s: %s: %w", pkg, method, jobs.ErrClosed)
	}
	if err := <-r.done; err != nil {
		return fmt.Errorf("%s: %s job %s: %w", pkg, method, id, err)
	}
	return nil
}

// writer takes a request, then every request already waiting (up to
// MaxBatch), and runs them as one batch.
func (s *Store) writer() {
	defer s.writers.Done()
	batch := make([]*request, 0, s.cfg.MaxBatch)
	for {
		batch = batch[:0]
		select {
		case r := <-s.reqs:
			batch = append(batch, r)
		case <-s.stop:
			return
		}
	collect:
		for len(batch) < s.cfg.MaxBatch {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
			default:
				break collect
			}
		}
		s.runBatch(batch)
	}
}

// runBatch sends the batch as one pipeline, which PostgreSQL runs as one
// implicit transaction. If any statement fails, the whole batch rolled
// back, and each request is run again on its own so that only the failing
// one reports an error.
func (s *Store) runBatch(batch []*request) {
	live := batch[:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- err
			continue
		}
		live = append(live, r)
	}
	switch len(live) {
	case 0:
		return
	case 1:
		r := live[0]
		r.done <- r.scan(s.pool.QueryRow(r.ctx, r.sql, r.args...))
		return
	}
	// One lock order for every batch, so that concurrent batches do not
	// deadlock on rows they both change.
	slices.SortStableFunc(live, func(a, b *request) int { return cmp.Compare(a.id, b.id) })
	b := &pgx.Batch{}
	for _, r := range live {
		b.Queue(r.sql, r.args...)
	}
	br := s.pool.SendBatch(context.Background(), b)
	var err error
	for _, r := range live {
		if e := r.scan(br.QueryRow()); e != nil && err == nil {
			err = e
		}
	}
	if e := br.Close(); e != nil && err == nil {
		err = e
	}
	if err == nil {
		for _, r := range live {
			r.done <- nil
		}
		return
	}
	for _, r := range live {
		r.done <- r.scan(s.pool.QueryRow(r.ctx, r.sql, r.args...))
	}
}
