package postgres

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/internal/storekit"
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
		var ok bool
		if batch, ok = storekit.NextBatch(s.reqs, s.stop, batch, s.cfg.MaxBatch); !ok {
			return
		}
		s.runBatch(batch)
	}
}

// runBatch sends the batch as one pipeline, which PostgreSQL runs as one
// implicit transaction, with the pg_notify calls that announce its changes.
// If any statement fails, the whole batch rolled back, and each request is
// run again on its own so that only the failing one reports an error.
func (s *Store) runBatch(batch []*request) {
	live := batch[:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- err
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	// One lock order for every batch, so that concurrent batches do not
	// deadlock on rows they both change.
	slices.SortStableFunc(live, func(a, b *request) int { return cmp.Compare(a.id, b.id) })
	if err := s.send(live); err == nil || len(live) == 1 {
		for _, r := range live {
			r.done <- err
		}
		return
	}
	for _, r := range live {
		r.done <- s.send([]*request{r})
	}
}

// send runs the requests and the notifications of their jobs in one
// pipeline (one implicit transaction), and scans each request's result.
func (s *Store) send(rs []*request) error {
	b := &pgx.Batch{}
	ids := make([]string, len(rs))
	for i, r := range rs {
		b.Queue(r.sql, r.args...)
		ids[i] = r.id
	}
	payloads := notifyPayloads(ids)
	for _, p := range payloads {
		b.Queue(`SELECT pg_notify($1, $2)`, s.channel, p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	br := s.pool.SendBatch(ctx, b)
	var err error
	for _, r := range rs {
		if e := r.scan(br.QueryRow()); e != nil && err == nil {
			err = e
		}
	}
	for range payloads {
		if _, e := br.Exec(); e != nil && err == nil {
			err = e
		}
	}
	if e := br.Close(); e != nil && err == nil {
		err = e
	}
	return err
}

// batchTimeout bounds one batch, so that a stuck database fails writes
// instead of hanging them.
const batchTimeout = time.Minute

// maxPayload keeps a notification below PostgreSQL's 8000-byte limit.
const maxPayload = 7800

// notifyPayloads encodes job IDs as JSON arrays of at most maxPayload bytes
// each; one notification per batch instead of one per job keeps LISTEN cheap
// for every replica. Requests that changed nothing are announced too: a
// watcher woken for nothing reads the job and finds it as it was.
func notifyPayloads(ids []string) []string {
	var (
		out []string
		cur []byte
	)
	for _, id := range slices.Compact(slices.Clone(ids)) {
		enc, _ := json.Marshal(id) // a string always encodes
		if len(cur) > 0 && len(cur)+1+len(enc)+1 > maxPayload {
			out = append(out, string(append(cur, ']')))
			cur = nil
		}
		if len(cur) == 0 {
			cur = append(cur, '[')
		} else {
			cur = append(cur, ',')
		}
		cur = append(cur, enc...)
	}
	if len(cur) > 0 {
		out = append(out, string(append(cur, ']')))
	}
	return out
}

// parsePayload is the inverse of notifyPayloads.
func parsePayload(p string) []string {
	var ids []string
	if err := json.Unmarshal([]byte(p), &ids); err != nil {
		return []string{p} // not ours: treat it as one job ID
	}
	return ids
}
