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
	// count, when set, records in t the state change that scan saw (for
	// job_counts and job_throughput); it runs after each successful scan.
	count func(t *storekit.Tally)
	done  chan error // buffered(1)
}

// write hands one statement to a writer and waits for its result. Once a
// writer has taken the request it always answers, so the wait ignores ctx.
func (s *Store) write(ctx context.Context, method, id, sql string, args []any, scan func(pgx.Row) error, count func(*storekit.Tally)) error {
	if err := s.checkOpen(method); err != nil {
		return err
	}
	r := &request{ctx: ctx, id: id, sql: sql, args: args, scan: scan, count: count, done: make(chan error, 1)}
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
// MaxBatch), and runs them as one batch. Its counter changes go to shard
// rows of its own (see job_counts).
func (s *Store) writer(shard int) {
	defer s.writers.Done()
	batch := make([]*request, 0, s.cfg.MaxBatch)
	for {
		var ok bool
		if batch, ok = storekit.NextBatch(s.reqs, s.stop, batch, s.cfg.MaxBatch); !ok {
			return
		}
		s.runBatch(batch, shard)
	}
}

// runBatch sends the batch as one pipeline, which PostgreSQL runs as one
// implicit transaction, with the pg_notify calls that announce its changes.
// If any statement fails, the whole batch rolled back, and each request is
// run again on its own so that only the failing one reports an error.
func (s *Store) runBatch(batch []*request, shard int) {
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
	if err := s.send(live, shard); err == nil || len(live) == 1 {
		for _, r := range live {
			r.done <- err
		}
		return
	}
	for _, r := range live {
		r.done <- s.send([]*request{r}, shard)
	}
}

// send runs the requests and the notifications of their jobs in one
// transaction, and scans each request's result. A batch of requests that
// may change counters runs in two round trips: BEGIN, the statements and
// the notifications; then the counter upserts of what they changed and
// COMMIT. Any other batch is one pipeline (one implicit transaction).
func (s *Store) send(rs []*request, shard int) error {
	counting := false
	for _, r := range rs {
		counting = counting || r.count != nil
	}
	b := &pgx.Batch{}
	if counting {
		b.Queue(`BEGIN`)
	}
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
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	br := conn.SendBatch(ctx, b)
	if counting {
		if _, e := br.Exec(); e != nil {
			err = e
		}
	}
	var tally storekit.Tally
	for _, r := range rs {
		e := r.scan(br.QueryRow())
		if e == nil && err == nil && r.count != nil {
			r.count(&tally)
		}
		if e != nil && err == nil {
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
	if !counting {
		return err
	}
	if err == nil {
		err = s.commitTally(ctx, conn.Conn(), &tally, shard)
	}
	if err != nil {
		// The transaction is open (aborted or not): end it, or drop the
		// connection if even that fails.
		if _, rerr := conn.Exec(ctx, `ROLLBACK`); rerr != nil {
			conn.Conn().Close(context.Background())
		}
	}
	return err
}

// commitTally applies the counter changes of a batch and commits its
// transaction, in one round trip.
func (s *Store) commitTally(ctx context.Context, conn *pgx.Conn, t *storekit.Tally, shard int) error {
	b := &pgx.Batch{}
	queueTally(b, t, shard)
	b.Queue(`COMMIT`)
	return conn.SendBatch(ctx, b).Close()
}

// queueTally queues the upserts that move job_counts and job_throughput by
// t, on shard rows: one statement each, rows in one order for everyone.
func queueTally(b *pgx.Batch, t *storekit.Tally, shard int) {
	keys, deltas := t.Counts()
	if len(keys) > 0 {
		types, states := make([]string, len(keys)), make([]string, len(keys))
		for i, k := range keys {
			types[i], states[i] = k.Type, string(k.State)
		}
		b.Queue(`INSERT INTO job_counts (type, state, shard, n)
			SELECT t, s, $4, n FROM unnest($1::text[], $2::text[], $3::bigint[]) WITH ORDINALITY AS x(t, s, n, i) ORDER BY i
			ON CONFLICT (type, state, shard) DO UPDATE SET n = job_counts.n + excluded.n`, types, states, deltas, shard)
	}
	ends, ns := t.Ends()
	if len(ends) > 0 {
		minutes, types := make([]time.Time, len(ends)), make([]string, len(ends))
		ok, failed := make([]int, len(ends)), make([]int, len(ends))
		for i, k := range ends {
			minutes[i], types[i], ok[i], failed[i] = k.Minute, k.Type, ns[i].Succeeded, ns[i].Failed
		}
		b.Queue(`INSERT INTO job_throughput (minute, type, shard, succeeded, failed)
			SELECT m, t, $5, o, f FROM unnest($1::timestamptz[], $2::text[], $3::bigint[], $4::bigint[]) WITH ORDINALITY AS x(m, t, o, f, i) ORDER BY i
			ON CONFLICT (minute, type, shard) DO UPDATE SET succeeded = job_throughput.succeeded + excluded.succeeded,
				failed = job_throughput.failed + excluded.failed`, minutes, types, ok, failed, shard)
	}
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
