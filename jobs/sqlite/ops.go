package sqlite

import (
	"context"
	"database/sql"
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

// insert writes a new job (and, with outbox, its outbox row). It returns
// the stored job and whether it was inserted.
func (s *Store) insert(w *wtx, j jobs.Job, outbox bool, now time.Time) (*jobs.Job, bool, error) {
	row := w.stmt(s.st.insertJob).QueryRow(j.ID, j.Type, j.MaxAttempts, j.Payload, storekit.EncodeLabels(j.Labels),
		j.IdempotencyKey, micros(j.RunAfter), now.UnixMicro(), now.UnixMicro())
	got, err := scanJob(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("%s: insert job %s: %w", pkg, j.ID, err)
	}
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
		if _, err := w.stmt(s.st.insertOutbox).Exec(j.ID, due.UnixMicro(), now.UnixMicro()); err != nil {
			return nil, false, fmt.Errorf("%s: insert outbox entry of job %s: %w", pkg, j.ID, err)
		}
	}
	w.changed = append(w.changed, j.ID)
	return got, true, nil
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

// Enqueue implements jobs.Store.
func (s *Store) Enqueue(ctx context.Context, p jobs.EnqueueParams) (*jobs.Job, bool, error) {
	j, err := storekit.NewJob(pkg, "Enqueue", p.Job, false)
	if err != nil {
		return nil, false, err
	}
	var (
		out *jobs.Job
		dup bool
	)
	err = s.write(ctx, "Enqueue", true, func(w *wtx) error {
		got, ok, err := s.insert(w, j, true, s.now())
		if err != nil || ok {
			out = got
			return err
		}
		if j.IdempotencyKey != "" {
			if out, err = s.lookup(w, s.st.byKeyW, j.Type, j.IdempotencyKey); err != nil || out != nil {
				dup = out != nil
				return err
			}
		}
		return fmt.Errorf("%s: Enqueue: job ID %s is taken by another job: %w", pkg, j.ID, jobs.ErrConflict)
	})
	if err != nil {
		return nil, false, err
	}
	return out, dup, nil
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
		got, ok, err := s.insert(w, j, false, s.now())
		if err != nil || ok {
			out = got
			return err
		}
		if out, err = s.lookup(w, s.st.byIDW, j.ID); err != nil || out != nil {
			return err
		}
		if j.IdempotencyKey != "" {
			if out, err = s.lookup(w, s.st.byKeyW, j.Type, j.IdempotencyKey); err != nil || out != nil {
				return err
			}
		}
		return fmt.Errorf("%s: Ensure: job %s was neither inserted nor found", pkg, j.ID)
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

// update runs a conditional UPDATE ... RETURNING for job id; when it applies
// to no row it tells ErrNotFound from ErrConflict, and returns the job as it
// is with the latter.
func (s *Store) update(w *wtx, method, id string, st *sql.Stmt, args ...any) (*jobs.Job, error) {
	j, err := scanJob(w.stmt(st).QueryRow(args...))
	if err == nil {
		w.changed = append(w.changed, id)
		return j, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%s: %s job %s: %w", pkg, method, id, err)
	}
	return s.refused(w, method, id)
}

func (s *Store) refused(w *wtx, method, id string) (*jobs.Job, error) {
	cur, err := s.lookup(w, s.st.byIDW, id)
	if err != nil {
		return nil, err
	}
	if cur == nil {
		return nil, fmt.Errorf("%s: %s: job %s: %w", pkg, method, id, jobs.ErrNotFound)
	}
	return cur, fmt.Errorf("%s: %s: job %s is %s: %w", pkg, method, id, cur.State, jobs.ErrConflict)
}

// Start implements jobs.Store.
func (s *Store) Start(ctx context.Context, p jobs.StartParams) (*jobs.Job, error) {
	if err := storekit.CheckStart(pkg, p); err != nil {
		return nil, err
	}
	var out *jobs.Job
	err := s.write(ctx, "Start", false, func(w *wtx) error {
		now := s.now().UnixMicro()
		j, err := s.update(w, "Start", p.ID, s.st.start, p.Attempt, now, now, p.ID)
		out = j
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Progress implements jobs.Store.
func (s *Store) Progress(ctx context.Context, p jobs.ProgressParams) error {
	if err := storekit.CheckProgress(pkg, p); err != nil {
		return err
	}
	return s.write(ctx, "Progress", false, func(w *wtx) error {
		res, err := w.stmt(s.st.progress).Exec(p.Fraction, storekit.Message(p.Message), s.now().UnixMicro(), p.ID)
		if err != nil {
			return fmt.Errorf("%s: Progress job %s: %w", pkg, p.ID, err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			w.changed = append(w.changed, p.ID)
			return nil
		}
		_, err = s.refused(w, "Progress", p.ID)
		return err
	})
}

// Succeed implements jobs.Store.
func (s *Store) Succeed(ctx context.Context, p jobs.SucceedParams) (*jobs.Job, error) {
	if err := storekit.CheckID(pkg, "Succeed", p.ID); err != nil {
		return nil, err
	}
	var out *jobs.Job
	err := s.write(ctx, "Succeed", false, func(w *wtx) error {
		now := s.now().UnixMicro()
		j, err := s.update(w, "Succeed", p.ID, s.st.succeed, storekit.Message(p.ResultType), storekit.Bytes(p.Result), now, now, p.ID)
		out = j
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Fail implements jobs.Store.
func (s *Store) Fail(ctx context.Context, p jobs.FailParams) (*jobs.Job, error) {
	if err := storekit.CheckID(pkg, "Fail", p.ID); err != nil {
		return nil, err
	}
	var out *jobs.Job
	err := s.write(ctx, "Fail", false, func(w *wtx) error {
		now := s.now().UnixMicro()
		var err error
		if p.Retry {
			out, err = s.update(w, "Fail", p.ID, s.st.failRetry, p.Code, storekit.Message(p.Message), now, p.ID)
		} else {
			out, err = s.update(w, "Fail", p.ID, s.st.failFinal, p.Code, storekit.Message(p.Message), now, now, p.ID)
		}
		return err
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
		now := s.now().UnixMicro()
		j, err := s.update(w, "Cancel", id, s.st.cancel, now, now, id)
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

// DueOutbox implements jobs.Store.
func (s *Store) DueOutbox(ctx context.Context, now time.Time, limit int) ([]jobs.OutboxEntry, error) {
	if err := s.checkOpen("DueOutbox"); err != nil {
		return nil, err
	}
	limit, err := storekit.CheckLimit(pkg, limit)
	if err != nil {
		return nil, err
	}
	rows, err := s.st.dueOutbox.QueryContext(ctx, storekit.Round(now).UnixMicro(), limit)
	if err != nil {
		return nil, fmt.Errorf("%s: read outbox: %w", pkg, err)
	}
	defer rows.Close()
	var out []jobs.OutboxEntry
	for rows.Next() {
		var (
			e        jobs.OutboxEntry
			payload  []byte
			labels   string
			runAfter sql.NullInt64
			created  int64
		)
		if err := rows.Scan(&e.JobID, &e.Type, &payload, &labels, &runAfter, &created); err != nil {
			return nil, fmt.Errorf("%s: read outbox: %w", pkg, err)
		}
		e.Payload = storekit.Bytes(payload)
		if e.Labels, err = storekit.DecodeLabels(pkg, labels); err != nil {
			return nil, err
		}
		e.RunAfter = nullTime(runAfter)
		e.Created = storekit.FromMicros(created)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: read outbox: %w", pkg, err)
	}
	return out, nil
}

// MarkSent implements jobs.Store.
func (s *Store) MarkSent(ctx context.Context, jobIDs []string) error {
	if len(jobIDs) == 0 {
		return s.checkOpen("MarkSent")
	}
	return s.write(ctx, "MarkSent", true, func(w *wtx) error {
		for _, id := range jobIDs {
			if _, err := w.stmt(s.st.deleteOutbox).Exec(id); err != nil {
				return fmt.Errorf("%s: MarkSent: delete outbox entry of job %s: %w", pkg, id, err)
			}
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
			if _, err := w.stmt(s.st.delLabels).Exec(cut, deleteChunk); err != nil {
				return fmt.Errorf("%s: DeleteFinished: labels: %w", pkg, err)
			}
			if _, err := w.stmt(s.st.delOutbox).Exec(cut, deleteChunk); err != nil {
				return fmt.Errorf("%s: DeleteFinished: outbox: %w", pkg, err)
			}
			if _, err := w.stmt(s.st.delEvents).Exec(cut, deleteChunk); err != nil {
				return fmt.Errorf("%s: DeleteFinished: events: %w", pkg, err)
			}
			res, err := w.stmt(s.st.delJobs).Exec(cut, deleteChunk)
			if err != nil {
				return fmt.Errorf("%s: DeleteFinished: jobs: %w", pkg, err)
			}
			n, err = res.RowsAffected()
			return err
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
