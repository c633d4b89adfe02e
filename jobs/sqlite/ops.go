package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/internal/storekit"
)

func (s *Store) now() time.Time { return storekit.Round(s.cfg.Now()) }

// insert writes a new job j, as storekit.NewJob returned it (and, with
// outbox, its outbox row). It returns the stored job and whether it was
// inserted. The job is not read back: it is j as stored, made here.
func (s *Store) insert(w *wtx, j jobs.Job, outbox bool, now time.Time) (*jobs.Job, bool, error) {
	res, err := w.stmt(s.st.insertJob).Exec(j.ID, j.Type, j.MaxAttempts, j.Payload, storekit.EncodeLabels(j.Labels),
		j.IdempotencyKey, micros(j.RunAfter), j.TraceParent, j.TraceState, j.OrderingKey, j.Timeout.Microseconds(),
		now.UnixMicro())
	if err != nil {
		return nil, false, fmt.Errorf("%s: insert job %s: %w", pkg, j.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return nil, false, err
	}
	got := j // its labels are NewJob's copy; its payload is the caller's
	got.State, got.CreateTime, got.UpdateTime = jobs.Queued, now, now
	got.Payload = bytes.Clone(j.Payload)
	for _, k := range slices.Sorted(maps.Keys(j.Labels)) {
		if _, err := w.stmt(s.st.insertLabel).Exec(j.ID, k, j.Labels[k]); err != nil {
			return nil, false, fmt.Errorf("%s: insert label %q of job %s: %w", pkg, k, j.ID, err)
		}
	}
	if outbox {
		due := now
		if j.RunAfter.After(due) {
			due = j.RunAfter
		}
		if _, err := w.stmt(s.st.insertOutbox).Exec(j.ID, due.UnixMicro(), now.UnixMicro(), j.OrderingKey); err != nil {
			return nil, false, fmt.Errorf("%s: insert outbox entry of job %s: %w", pkg, j.ID, err)
		}
	}
	w.move(j.Type, "", jobs.Queued, now)
	w.changed = append(w.changed, j.ID)
	return &got, true, nil
}

// lookup returns the job by ID in the batch transaction, nil if none.
func (s *Store) lookup(w *wtx, st *sql.Stmt, args ...any) (*jobs.Job, error) {
	j, err := scanJob(w.stmt(st).QueryRow(args...))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: read job: %w", pkg, err)
	}
	return j, nil
}

// enqueue records one job (see Enqueue) in the batch transaction: when its
// key is held, the holder and true; otherwise the new job, its outbox entry
// and its hold on the key.
func (s *Store) enqueue(w *wtx, method string, p jobs.EnqueueParams, outbox bool, now time.Time) (*jobs.Job, bool, error) {
	j := p.Job
	if j.IdempotencyKey != "" {
		held, err := s.lookup(w, s.st.byKeyW, j.Type, j.IdempotencyKey, now.UnixMicro())
		if err != nil || held != nil {
			return held, held != nil, err
		}
	}
	got, ok, err := s.insert(w, j, outbox, now)
	if err != nil {
		return nil, false, err
	}
	if !ok {
		return nil, false, fmt.Errorf("%s: %s: job ID %s is taken by another job: %w", pkg, method, j.ID, jobs.ErrConflict)
	}
	if j.IdempotencyKey != "" {
		if _, err := w.stmt(s.st.holdKey).Exec(j.Type, j.IdempotencyKey, j.ID, micros(storekit.KeyHeldUntil(p, now)), p.UniqueWhileActive); err != nil {
			return nil, false, fmt.Errorf("%s: %s: record the idempotency key of job %s: %w", pkg, method, j.ID, err)
		}
	}
	return got, false, nil
}

// SupportsUniqueScopes implements jobs.UniqueScopes: true.
func (s *Store) SupportsUniqueScopes() bool { return true }

var (
	_ jobs.UniqueScopes  = (*Store)(nil)
	_ jobs.BatchEnqueuer = (*Store)(nil)
)

// Enqueue implements jobs.Store.
func (s *Store) Enqueue(ctx context.Context, p jobs.EnqueueParams) (*jobs.Job, bool, error) {
	j, err := storekit.NewJob(pkg, "Enqueue", p.Job, false)
	if err != nil {
		return nil, false, err
	}
	if err := storekit.CheckUnique(pkg, "Enqueue", p); err != nil {
		return nil, false, err
	}
	p.Job = j
	var (
		out *jobs.Job
		dup bool
	)
	err = s.write(ctx, "Enqueue", true, func(w *wtx) (err error) {
		out, dup, err = s.enqueue(w, "Enqueue", p, true, s.now())
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return out, dup, nil
}

// EnqueueBatch implements jobs.BatchEnqueuer: one write request, so one
// transaction (inside the writer's batch, under a savepoint of its own).
func (s *Store) EnqueueBatch(ctx context.Context, ps []jobs.EnqueueParams) ([]jobs.EnqueueResult, error) {
	ps, err := storekit.NewBatch(pkg, ps)
	if err != nil {
		return nil, err
	}
	out := make([]jobs.EnqueueResult, len(ps))
	err = s.write(ctx, "EnqueueBatch", true, func(w *wtx) error {
		now := s.now()
		for i, p := range ps {
			j, dup, err := s.enqueue(w, fmt.Sprintf("EnqueueBatch: jobs[%d]", i), p, true, now)
			if err != nil {
				return err
			}
			out[i] = jobs.EnqueueResult{Job: j, Duplicate: dup}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Ensure implements jobs.Store.
func (s *Store) Ensure(ctx context.Context, p jobs.EnsureParams) (*jobs.Job, error) {
	j, err := storekit.NewJob(pkg, "Ensure", p.Job, true)
	if err != nil {
		return nil, err
	}
	// Most calls find the job already recorded: answer those from the read pool.
	if got, err := s.Get(ctx, j.ID); err == nil {
		return got, nil
	} else if !errors.Is(err, jobs.ErrNotFound) {
		return nil, err
	}
	var out *jobs.Job
	err = s.write(ctx, "Ensure", true, func(w *wtx) error {
		var err error
		if out, err = s.lookup(w, s.st.byIDW, j.ID); err != nil || out != nil {
			return err
		}
		out, _, err = s.enqueue(w, "Ensure", jobs.EnqueueParams{Job: j}, false, s.now())
		return err
	})
	return out, err
}

// Get implements jobs.Store.
func (s *Store) Get(ctx context.Context, id string) (*jobs.Job, error) {
	if err := s.checkOpen("Get"); err != nil {
		return nil, err
	}
	if err := storekit.CheckID(pkg, "Get", id); err != nil {
		return nil, err
	}
	j, err := scanJob(s.st.byID.QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%s: job %s: %w", pkg, id, jobs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: get job %s: %w", pkg, id, err)
	}
	return j, nil
}

// List implements jobs.Store.
func (s *Store) List(ctx context.Context, p jobs.ListParams) ([]*jobs.Job, string, error) {
	if err := s.checkOpen("List"); err != nil {
		return nil, "", err
	}
	size, cur, hasCur, err := storekit.CheckList(pkg, p)
	if err != nil {
		return nil, "", err
	}
	var (
		where []string
		args  []any
	)
	if p.Type != "" {
		where, args = append(where, "j.type = ?"), append(args, p.Type)
	}
	if p.State != "" {
		where, args = append(where, "j.state = ?"), append(args, string(p.State))
	}
	for _, k := range slices.Sorted(maps.Keys(p.Labels)) {
		where = append(where, "EXISTS (SELECT 1 FROM job_labels l WHERE l.job_id = j.id AND l.key = ? AND l.value = ?)")
		args = append(args, k, p.Labels[k])
	}
	if hasCur {
		us := cur.CreateTime.UnixMicro()
		where = append(where, "(j.create_time < ? OR (j.create_time = ? AND j.id < ?))")
		args = append(args, us, us, cur.ID)
	}
	q := "SELECT " + cols + " FROM jobs j"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY j.create_time DESC, j.id DESC LIMIT ?"
	args = append(args, size+1)
	rows, err := s.rdb.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("%s: list jobs: %w", pkg, err)
	}
	defer rows.Close()
	var out []*jobs.Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, "", fmt.Errorf("%s: list jobs: %w", pkg, err)
		}
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("%s: list jobs: %w", pkg, err)
	}
	out, next := storekit.CutPage(out, size)
	return out, next, nil
}

// update runs a conditional UPDATE ... RETURNING colsPrev for job id and
// records the state change for the counters; when it applies to no row it
// tells ErrNotFound from ErrConflict (see refused).
func (s *Store) update(w *wtx, method, id, lease string, now time.Time, st *sql.Stmt, args ...any) (*jobs.Job, error) {
	j, prev, err := scanJobPrev(w.stmt(st).QueryRow(args...), true)
	if err == nil {
		w.move(j.Type, prev, j.State, now)
		w.changed = append(w.changed, id)
		return j, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%s: %s job %s: %w", pkg, method, id, err)
	}
	return s.refused(w, method, id, lease)
}

// refused explains a conditional change that applied to no row: the job is
// missing (ErrNotFound), or returned as it is with an error wrapping
// ErrConflict.
func (s *Store) refused(w *wtx, method, id, lease string) (*jobs.Job, error) {
	cur, err := s.lookup(w, s.st.byIDW, id)
	if err != nil {
		return nil, err
	}
	return storekit.Refused(pkg, method, id, lease, cur)
}

// Start implements jobs.Store.
func (s *Store) Start(ctx context.Context, p jobs.StartParams) (*jobs.Job, error) {
	if err := storekit.CheckStart(pkg, p); err != nil {
		return nil, err
	}
	var out *jobs.Job
	err := s.write(ctx, "Start", false, func(w *wtx) error {
		now := s.now()
		j, prev, err := scanJobPrev(w.stmt(s.st.start).QueryRow(p.Attempt, p.Lease, now.Add(p.LeaseFor).UnixMicro(), now.UnixMicro(), p.ID), true)
		if err == nil {
			w.move(j.Type, prev, j.State, now)
			w.changed = append(w.changed, p.ID)
			out = j
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%s: Start job %s: %w", pkg, p.ID, err)
		}
		cur, err := s.lookup(w, s.st.byIDW, p.ID)
		if err != nil {
			return err
		}
		out, err = storekit.StartRefused(pkg, p, cur)
		return err
	})
	if err != nil && out == nil {
		return nil, err
	}
	return out, err
}

// Heartbeat implements jobs.Store.
func (s *Store) Heartbeat(ctx context.Context, p jobs.HeartbeatParams) ([]string, error) {
	if err := storekit.CheckHeartbeat(pkg, p); err != nil {
		return nil, err
	}
	if len(p.Leases) == 0 {
		return nil, s.checkOpen("Heartbeat")
	}
	pairs := make([][2]string, len(p.Leases))
	for i, l := range p.Leases {
		pairs[i] = [2]string{l.ID, l.Lease}
	}
	arg, _ := json.Marshal(pairs) // strings always encode
	var lost []string
	err := s.write(ctx, "Heartbeat", false, func(w *wtx) error {
		rows, err := w.stmt(s.st.heartbeat).Query(s.now().Add(p.LeaseFor).UnixMicro(), string(arg))
		if err != nil {
			return fmt.Errorf("%s: Heartbeat: %w", pkg, err)
		}
		held, err := scanStrings(rows)
		if err != nil {
			return fmt.Errorf("%s: Heartbeat: %w", pkg, err)
		}
		lost = storekit.Lost(p.Leases, held)
		return nil
	})
	return lost, err
}

// Progress implements jobs.Store.
func (s *Store) Progress(ctx context.Context, p jobs.ProgressParams) error {
	if err := storekit.CheckProgress(pkg, p); err != nil {
		return err
	}
	return s.write(ctx, "Progress", false, func(w *wtx) error {
		res, err := w.stmt(s.st.progress).Exec(p.Fraction, storekit.Message(p.Message), s.now().UnixMicro(), p.ID, p.Lease)
		if err != nil {
			return fmt.Errorf("%s: Progress job %s: %w", pkg, p.ID, err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			w.changed = append(w.changed, p.ID)
			return nil
		}
		_, err = s.refused(w, "Progress", p.ID, p.Lease)
		return err
	})
}

// Succeed implements jobs.Store.
func (s *Store) Succeed(ctx context.Context, p jobs.SucceedParams) (*jobs.Job, error) {
	if err := storekit.CheckEnd(pkg, "Succeed", p.ID, p.Lease); err != nil {
		return nil, err
	}
	var out *jobs.Job
	err := s.write(ctx, "Succeed", false, func(w *wtx) error {
		now := s.now()
		j, err := s.update(w, "Succeed", p.ID, p.Lease, now, s.st.succeed,
			storekit.Message(p.ResultType), storekit.Bytes(p.Result), now.UnixMicro(), p.ID, p.Lease)
		out = j
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

var _ jobs.StartSucceeder = (*Store)(nil)

// StartSucceed implements jobs.StartSucceeder: the store is one process's
// (see the package doc), so a worker of that process that runs a job
// without recording it Running first knows no other runs it.
func (s *Store) StartSucceed(ctx context.Context, p jobs.StartSucceedParams) (*jobs.QuickEnd, error) {
	if err := storekit.CheckStartSucceed(pkg, p); err != nil {
		return nil, err
	}
	var out *jobs.QuickEnd
	err := s.write(ctx, "StartSucceed", false, func(w *wtx) error {
		now := s.now()
		var (
			e                jobs.QuickEnd
			attempt          int64
			created, started int64
			runAfter         sql.NullInt64
		)
		err := w.stmt(s.st.startSucceed).QueryRow(p.Attempt, storekit.Round(p.Started).UnixMicro(),
			storekit.Message(p.ResultType), storekit.Bytes(p.Result), now.UnixMicro(), p.ID).Scan(&e.Type, &attempt, &created, &runAfter, &started)
		if err == nil {
			e.Attempt, e.CreateTime, e.RunAfter, e.StartTime, e.EndTime = int(attempt), storekit.FromMicros(created), nullTime(runAfter), storekit.FromMicros(started), now
			w.move(e.Type, jobs.Queued, jobs.Succeeded, now)
			w.changed = append(w.changed, p.ID)
			out = &e
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%s: StartSucceed job %s: %w", pkg, p.ID, err)
		}
		_, err = s.refused(w, "StartSucceed", p.ID, "")
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Fail implements jobs.Store.
func (s *Store) Fail(ctx context.Context, p jobs.FailParams) (*jobs.Job, error) {
	if err := storekit.CheckEnd(pkg, "Fail", p.ID, p.Lease); err != nil {
		return nil, err
	}
	var out *jobs.Job
	// A final failure also drops the job's outbox entry: several statements.
	err := s.write(ctx, "Fail", !p.Retry, func(w *wtx) error {
		now := s.now()
		msg := storekit.Message(p.Message)
		var err error
		if p.Retry {
			out, err = s.update(w, "Fail", p.ID, p.Lease, now, s.st.failRetry, p.Code, msg, now.UnixMicro(), p.ID, p.Lease)
			return err
		}
		if out, err = s.update(w, "Fail", p.ID, p.Lease, now, s.st.failFinal, p.Code, msg, now.UnixMicro(), p.ID, p.Lease); err != nil {
			return err
		}
		if _, err := w.stmt(s.st.deleteOutbox).Exec(p.ID); err != nil {
			return fmt.Errorf("%s: Fail: drop outbox entry of job %s: %w", pkg, p.ID, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Cancel implements jobs.Store.
func (s *Store) Cancel(ctx context.Context, id string) (*jobs.Job, error) {
	if err := storekit.CheckID(pkg, "Cancel", id); err != nil {
		return nil, err
	}
	var out *jobs.Job
	err := s.write(ctx, "Cancel", true, func(w *wtx) error {
		now := s.now()
		j, err := s.update(w, "Cancel", id, "", now, s.st.cancel, now.UnixMicro(), id)
		out = j
		if err != nil {
			return err
		}
		if _, err := w.stmt(s.st.deleteOutbox).Exec(id); err != nil {
			return fmt.Errorf("%s: Cancel: drop outbox entry of job %s: %w", pkg, id, err)
		}
		return nil
	})
	if err != nil && out == nil {
		return nil, err
	}
	return out, err
}

// Cancelled implements jobs.Store.
func (s *Store) Cancelled(ctx context.Context, ids []string) ([]string, error) {
	if err := s.checkOpen("Cancelled"); err != nil {
		return nil, err
	}
	if err := storekit.CheckIDs(pkg, "Cancelled", ids, jobs.MaxBatchIDs); err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, nil
	}
	arg, _ := json.Marshal(ids)
	rows, err := s.st.cancelled.QueryContext(ctx, string(arg))
	if err != nil {
		return nil, fmt.Errorf("%s: Cancelled: %w", pkg, err)
	}
	out, err := scanStrings(rows)
	if err != nil {
		return nil, fmt.Errorf("%s: Cancelled: %w", pkg, err)
	}
	return out, nil
}

// scanStrings reads one text column of every row and closes rows.
func scanStrings(rows *sql.Rows) ([]string, error) {
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Events implements jobs.Store.
func (s *Store) Events(ctx context.Context, id string) ([]jobs.Event, error) {
	if err := s.checkOpen("Events"); err != nil {
		return nil, err
	}
	if err := storekit.CheckID(pkg, "Events", id); err != nil {
		return nil, err
	}
	rows, err := s.st.events.QueryContext(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("%s: read events of job %s: %w", pkg, id, err)
	}
	defer rows.Close()
	var out []jobs.Event
	for rows.Next() {
		var (
			e       jobs.Event
			t       int64
			state   string
			attempt int64
		)
		if err := rows.Scan(&t, &state, &attempt, &e.Message); err != nil {
			return nil, fmt.Errorf("%s: read events of job %s: %w", pkg, id, err)
		}
		e.Time, e.State, e.Attempt = storekit.FromMicros(t), jobs.State(state), int(attempt)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: read events of job %s: %w", pkg, id, err)
	}
	return out, nil
}

// ClaimOutbox implements jobs.Store. The claim is one statement in the
// writer; the entries are then read from the read pool, so that payloads
// are not copied inside the writer.
func (s *Store) ClaimOutbox(ctx context.Context, p jobs.ClaimOutboxParams) ([]jobs.OutboxEntry, error) {
	if err := storekit.CheckClaim(pkg, p); err != nil {
		return nil, err
	}
	var seqs []int64
	err := s.write(ctx, "ClaimOutbox", false, func(w *wtx) error {
		now := s.now()
		rows, err := w.stmt(s.st.claim).Query(now.UnixMicro(), p.Limit, p.Owner, now.Add(p.LeaseFor).UnixMicro())
		if err != nil {
			return fmt.Errorf("%s: ClaimOutbox: %w", pkg, err)
		}
		defer rows.Close()
		seqs = seqs[:0]
		for rows.Next() {
			var seq int64
			if err := rows.Scan(&seq); err != nil {
				return fmt.Errorf("%s: ClaimOutbox: %w", pkg, err)
			}
			seqs = append(seqs, seq)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("%s: ClaimOutbox: %w", pkg, err)
		}
		return nil
	})
	if err != nil || len(seqs) == 0 {
		return nil, err
	}
	arg, _ := json.Marshal(seqs)
	rows, err := s.st.claimed.QueryContext(ctx, string(arg), p.Owner)
	if err != nil {
		return nil, fmt.Errorf("%s: ClaimOutbox: read claimed entries: %w", pkg, err)
	}
	defer rows.Close()
	out := make([]jobs.OutboxEntry, 0, len(seqs))
	for rows.Next() {
		var (
			e                 jobs.OutboxEntry
			payload           []byte
			labels            string
			runAfter          sql.NullInt64
			created, due, att int64
		)
		if err := rows.Scan(&e.JobID, &e.Type, &payload, &labels, &runAfter, &created,
			&e.TraceParent, &e.TraceState, &e.OrderingKey, &due, &att, &e.LastError); err != nil {
			return nil, fmt.Errorf("%s: ClaimOutbox: read claimed entries: %w", pkg, err)
		}
		e.Payload = storekit.Bytes(payload)
		if e.Labels, err = storekit.DecodeLabels(pkg, labels); err != nil {
			return nil, err
		}
		e.RunAfter = nullTime(runAfter)
		e.Created, e.Due, e.Attempts = storekit.FromMicros(created), storekit.FromMicros(due), int(att)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: ClaimOutbox: read claimed entries: %w", pkg, err)
	}
	return out, nil
}

// MarkSent implements jobs.Store.
func (s *Store) MarkSent(ctx context.Context, jobIDs []string) error {
	if err := storekit.CheckIDs(pkg, "MarkSent", jobIDs, jobs.MaxBatchIDs); err != nil {
		return err
	}
	if len(jobIDs) == 0 {
		return s.checkOpen("MarkSent")
	}
	arg, _ := json.Marshal(jobIDs)
	return s.write(ctx, "MarkSent", false, func(w *wtx) error {
		if _, err := w.stmt(s.st.markSent).Exec(string(arg)); err != nil {
			return fmt.Errorf("%s: MarkSent: %w", pkg, err)
		}
		return nil
	})
}

// RetryOutbox implements jobs.Store.
func (s *Store) RetryOutbox(ctx context.Context, p jobs.RetryOutboxParams) error {
	if err := storekit.CheckRetryOutbox(pkg, p); err != nil {
		return err
	}
	return s.write(ctx, "RetryOutbox", true, func(w *wtx) error {
		var (
			seq, due int64
			key      string
		)
		err := w.stmt(s.st.retryOutbox).QueryRow(storekit.Round(p.Due).UnixMicro(), storekit.Message(p.Error), p.ID).Scan(&seq, &key, &due)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%s: RetryOutbox: job %s has no outbox entry: %w", pkg, p.ID, jobs.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("%s: RetryOutbox: job %s: %w", pkg, p.ID, err)
		}
		if key == "" {
			return nil
		}
		if _, err := w.stmt(s.st.retryKey).Exec(due, key, seq); err != nil {
			return fmt.Errorf("%s: RetryOutbox: later entries of ordering key of job %s: %w", pkg, p.ID, err)
		}
		return nil
	})
}

// OutboxStats implements jobs.Store.
func (s *Store) OutboxStats(ctx context.Context) (int, time.Time, error) {
	if err := s.checkOpen("OutboxStats"); err != nil {
		return 0, time.Time{}, err
	}
	var (
		n      int
		oldest sql.NullInt64
	)
	if err := s.st.outboxStats.QueryRowContext(ctx).Scan(&n, &oldest); err != nil {
		return 0, time.Time{}, fmt.Errorf("%s: outbox stats: %w", pkg, err)
	}
	return n, nullTime(oldest), nil
}

// deleteChunk is how many jobs one write request of DeleteFinished deletes,
// so that a large sweep does not hold up other writes for long.
const deleteChunk = 1000

// DeleteFinished implements jobs.Store.
func (s *Store) DeleteFinished(ctx context.Context, cutoff time.Time) (int, error) {
	cut := storekit.Round(cutoff).UnixMicro()
	total := 0
	for {
		var n int64
		err := s.write(ctx, "DeleteFinished", true, func(w *wtx) error {
			if _, err := w.stmt(s.st.delKeys).Exec(cut, deleteChunk); err != nil {
				return fmt.Errorf("%s: DeleteFinished: idempotency keys: %w", pkg, err)
			}
			if _, err := w.stmt(s.st.delLabels).Exec(cut, deleteChunk); err != nil {
				return fmt.Errorf("%s: DeleteFinished: labels: %w", pkg, err)
			}
			if _, err := w.stmt(s.st.delOutbox).Exec(cut, deleteChunk); err != nil {
				return fmt.Errorf("%s: DeleteFinished: outbox: %w", pkg, err)
			}
			if _, err := w.stmt(s.st.delEvents).Exec(cut, deleteChunk); err != nil {
				return fmt.Errorf("%s: DeleteFinished: events: %w", pkg, err)
			}
			rows, err := w.stmt(s.st.delJobs).Query(cut, deleteChunk)
			if err != nil {
				return fmt.Errorf("%s: DeleteFinished: jobs: %w", pkg, err)
			}
			defer rows.Close()
			n = 0
			now := s.now()
			for rows.Next() {
				var typ, state string
				if err := rows.Scan(&typ, &state); err != nil {
					return fmt.Errorf("%s: DeleteFinished: jobs: %w", pkg, err)
				}
				w.move(typ, jobs.State(state), "", now)
				n++
			}
			if err := rows.Err(); err != nil {
				return fmt.Errorf("%s: DeleteFinished: jobs: %w", pkg, err)
			}
			if n < deleteChunk {
				if _, err := w.stmt(s.st.delThroughput).Exec(storekit.Minute(cutoff).UnixMicro()); err != nil {
					return fmt.Errorf("%s: DeleteFinished: throughput: %w", pkg, err)
				}
			}
			return nil
		})
		total += int(n)
		if err != nil {
			return total, err
		}
		if n < deleteChunk {
			return total, nil
		}
	}
}
