package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/internal/storekit"
	"github.com/jackc/pgx/v5"
)

const cols = `id, type, state, attempt, max_attempts, payload, result_type, result, error_code, error_message,
	progress_fraction, progress_message, labels, idempotency_key, run_after, create_time, start_time, end_time, update_time`

const terminal = `('SUCCEEDED', 'FAILED', 'CANCELLED')`

func scanJob(row pgx.Row) (*jobs.Job, error) {
	var (
		j                            jobs.Job
		state                        string
		labels                       []byte
		runAfter, startTime, endTime *time.Time
		createTime, updateTime       time.Time
		payload, result              []byte
	)
	err := row.Scan(&j.ID, &j.Type, &state, &j.Attempt, &j.MaxAttempts, &payload, &j.ResultType, &result, &j.ErrorCode,
		&j.ErrorMessage, &j.ProgressFraction, &j.ProgressMessage, &labels, &j.IdempotencyKey, &runAfter,
		&createTime, &startTime, &endTime, &updateTime)
	if err != nil {
		return nil, err
	}
	j.State = jobs.State(state)
	j.Payload, j.Result = storekit.Bytes(payload), storekit.Bytes(result)
	if j.Labels, err = storekit.DecodeLabels(pkg, string(labels)); err != nil {
		return nil, err
	}
	j.RunAfter = ptrTime(runAfter)
	j.CreateTime = storekit.Round(createTime)
	j.StartTime = ptrTime(startTime)
	j.EndTime = ptrTime(endTime)
	j.UpdateTime = storekit.Round(updateTime)
	return &j, nil
}

func ptrTime(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return storekit.Round(*t)
}

func tsArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

func labelsArg(m map[string]string) string {
	if s := storekit.EncodeLabels(m); s != "" {
		return s
	}
	return "{}"
}

func (s *Store) now() time.Time { return storekit.Round(s.cfg.Now()) }

// scanInto returns a scan function that stores the returned job (nil when
// the statement changed no row) in *out.
func scanInto(out **jobs.Job) func(pgx.Row) error {
	return func(row pgx.Row) error {
		j, err := scanJob(row)
		if errors.Is(err, pgx.ErrNoRows) {
			*out = nil
			return nil
		}
		*out = j
		return err
	}
}

// lookup reads a job outside the write path; nil when there is none.
func (s *Store) lookup(ctx context.Context, where string, args ...any) (*jobs.Job, error) {
	j, err := scanJob(s.pool.QueryRow(ctx, `SELECT `+cols+` FROM jobs WHERE `+where, args...))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: read job: %w", pkg, err)
	}
	return j, nil
}

const insertJob = `INSERT INTO jobs (id, type, state, max_attempts, payload, labels, idempotency_key, run_after, create_time, update_time)
	VALUES ($1, $2, 'QUEUED', $3, $4, $5::jsonb, $6, $7, $8, $8) ON CONFLICT DO NOTHING RETURNING ` + cols

// Enqueue implements jobs.Store. The job and its outbox row are written by
// one statement, hence in one transaction.
func (s *Store) Enqueue(ctx context.Context, p jobs.EnqueueParams) (*jobs.Job, bool, error) {
	j, err := storekit.NewJob(pkg, "Enqueue", p.Job, false)
	if err != nil {
		return nil, false, err
	}
	now := s.now()
	due := now
	if j.RunAfter.After(due) {
		due = j.RunAfter
	}
	q := `WITH j AS (` + insertJob + `),
		o AS (INSERT INTO outbox (job_id, due, created) SELECT id, $9, $8 FROM j)
		SELECT ` + cols + ` FROM j`
	var out *jobs.Job
	err = s.write(ctx, "Enqueue", j.ID, q, []any{j.ID, j.Type, j.MaxAttempts, j.Payload, labelsArg(j.Labels),
		j.IdempotencyKey, tsArg(j.RunAfter), now, due}, scanInto(&out))
	if err != nil {
		return nil, false, err
	}
	if out != nil {
		s.hub.Notify(out.ID)
		return out, false, nil
	}
	if j.IdempotencyKey != "" {
		dup, err := s.lookup(ctx, `type = $1 AND idempotency_key = $2 AND idempotency_key <> ''`, j.Type, j.IdempotencyKey)
		if err != nil || dup != nil {
			return dup, dup != nil, err
		}
	}
	return nil, false, fmt.Errorf("%s: Enqueue: job ID %s is taken by another job: %w", pkg, j.ID, jobs.ErrConflict)
}

// Ensure implements jobs.Store.
func (s *Store) Ensure(ctx context.Context, p jobs.EnsureParams) (*jobs.Job, error) {
	j, err := storekit.NewJob(pkg, "Ensure", p.Job, true)
	if err != nil {
		return nil, err
	}
	// Most calls find the job already recorded.
	if got, err := s.Get(ctx, j.ID); err == nil {
		return got, nil
	} else if !errors.Is(err, jobs.ErrNotFound) {
		return nil, err
	}
	var out *jobs.Job
	err = s.write(ctx, "Ensure", j.ID, insertJob, []any{j.ID, j.Type, j.MaxAttempts, j.Payload, labelsArg(j.Labels),
		j.IdempotencyKey, tsArg(j.RunAfter), s.now()}, scanInto(&out))
	if err != nil {
		return nil, err
	}
	if out != nil {
		s.hub.Notify(out.ID)
		return out, nil
	}
	if out, err = s.lookup(ctx, `id = $1`, j.ID); err != nil || out != nil {
		return out, err
	}
	if j.IdempotencyKey != "" {
		if out, err = s.lookup(ctx, `type = $1 AND idempotency_key = $2 AND idempotency_key <> ''`, j.Type, j.IdempotencyKey); err != nil || out != nil {
			return out, err
		}
	}
	return nil, fmt.Errorf("%s: Ensure: job %s was neither inserted nor found; try again", pkg, j.ID)
}

// Get implements jobs.Store.
func (s *Store) Get(ctx context.Context, id string) (*jobs.Job, error) {
	if err := s.checkOpen("Get"); err != nil {
		return nil, err
	}
	if err := storekit.CheckID(pkg, "Get", id); err != nil {
		return nil, err
	}
	j, err := s.lookup(ctx, `id = $1`, id)
	if err != nil {
		return nil, err
	}
	if j == nil {
		return nil, fmt.Errorf("%s: job %s: %w", pkg, id, jobs.ErrNotFound)
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
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if p.Type != "" {
		where = append(where, "type = "+arg(p.Type))
	}
	if p.State != "" {
		where = append(where, "state = "+arg(string(p.State)))
	}
	if len(p.Labels) > 0 {
		where = append(where, "labels @> "+arg(storekit.EncodeLabels(p.Labels))+"::jsonb")
	}
	if hasCur {
		where = append(where, fmt.Sprintf("(create_time, id) < (%s, %s)", arg(cur.CreateTime), arg(cur.ID)))
	}
	q := "SELECT " + cols + " FROM jobs"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY create_time DESC, id DESC LIMIT " + arg(size+1)
	rows, err := s.pool.Query(ctx, q, args...)
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

// update runs a conditional UPDATE ... RETURNING through the writers; when
// it changes no row it tells ErrNotFound from ErrConflict, and returns the
// job as it is with the latter.
func (s *Store) update(ctx context.Context, method, id, q string, args ...any) (*jobs.Job, error) {
	var out *jobs.Job
	if err := s.write(ctx, method, id, q, args, scanInto(&out)); err != nil {
		return nil, err
	}
	if out != nil {
		s.hub.Notify(id)
		return out, nil
	}
	return s.refused(ctx, method, id)
}

func (s *Store) refused(ctx context.Context, method, id string) (*jobs.Job, error) {
	cur, err := s.lookup(ctx, `id = $1`, id)
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
	j, err := s.update(ctx, "Start", p.ID, `UPDATE jobs SET state = 'RUNNING', attempt = $2, start_time = coalesce(start_time, $3), update_time = $3
		WHERE id = $1 AND state IN ('QUEUED', 'RUNNING') RETURNING `+cols, p.ID, p.Attempt, s.now())
	if err != nil {
		return nil, err
	}
	return j, nil
}

// Progress implements jobs.Store.
func (s *Store) Progress(ctx context.Context, p jobs.ProgressParams) error {
	if err := storekit.CheckProgress(pkg, p); err != nil {
		return err
	}
	_, err := s.update(ctx, "Progress", p.ID, `UPDATE jobs SET progress_fraction = $2, progress_message = $3, update_time = $4
		WHERE id = $1 AND state = 'RUNNING' RETURNING `+cols, p.ID, p.Fraction, storekit.Message(p.Message), s.now())
	return err
}

// Succeed implements jobs.Store.
func (s *Store) Succeed(ctx context.Context, p jobs.SucceedParams) (*jobs.Job, error) {
	if err := storekit.CheckID(pkg, "Succeed", p.ID); err != nil {
		return nil, err
	}
	j, err := s.update(ctx, "Succeed", p.ID, `UPDATE jobs SET state = 'SUCCEEDED', result_type = $2, result = $3, end_time = $4, update_time = $4
		WHERE id = $1 AND state = 'RUNNING' RETURNING `+cols, p.ID, storekit.Message(p.ResultType), storekit.Bytes(p.Result), s.now())
	if err != nil {
		return nil, err
	}
	return j, nil
}

// Fail implements jobs.Store.
func (s *Store) Fail(ctx context.Context, p jobs.FailParams) (*jobs.Job, error) {
	if err := storekit.CheckID(pkg, "Fail", p.ID); err != nil {
		return nil, err
	}
	var (
		j   *jobs.Job
		err error
	)
	if p.Retry {
		j, err = s.update(ctx, "Fail", p.ID, `UPDATE jobs SET state = 'QUEUED', error_code = $2, error_message = $3, update_time = $4
			WHERE id = $1 AND state = 'RUNNING' RETURNING `+cols, p.ID, p.Code, storekit.Message(p.Message), s.now())
	} else {
		j, err = s.update(ctx, "Fail", p.ID, `UPDATE jobs SET state = 'FAILED', error_code = $2, error_message = $3, end_time = $4, update_time = $4
			WHERE id = $1 AND state IN ('QUEUED', 'RUNNING') RETURNING `+cols, p.ID, p.Code, storekit.Message(p.Message), s.now())
	}
	if err != nil {
		return nil, err
	}
	return j, nil
}

// Cancel implements jobs.Store.
func (s *Store) Cancel(ctx context.Context, id string) (*jobs.Job, error) {
	if err := storekit.CheckID(pkg, "Cancel", id); err != nil {
		return nil, err
	}
	return s.update(ctx, "Cancel", id, `WITH u AS (
			UPDATE jobs SET state = 'CANCELLED', end_time = $2, update_time = $2
			WHERE id = $1 AND state IN ('QUEUED', 'RUNNING') RETURNING `+cols+`),
		o AS (DELETE FROM outbox WHERE job_id IN (SELECT id FROM u))
		SELECT `+cols+` FROM u`, id, s.now())
}

// Events implements jobs.Store.
func (s *Store) Events(ctx context.Context, id string) ([]jobs.Event, error) {
	if err := s.checkOpen("Events"); err != nil {
		return nil, err
	}
	if err := storekit.CheckID(pkg, "Events", id); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT time, state, attempt, message FROM job_events WHERE job_id = $1 ORDER BY seq`, id)
	if err != nil {
		return nil, fmt.Errorf("%s: read events of job %s: %w", pkg, id, err)
	}
	defer rows.Close()
	var out []jobs.Event
	for rows.Next() {
		var (
			e     jobs.Event
			t     time.Time
			state string
		)
		if err := rows.Scan(&t, &state, &e.Attempt, &e.Message); err != nil {
			return nil, fmt.Errorf("%s: read events of job %s: %w", pkg, id, err)
		}
		e.Time, e.State = storekit.Round(t), jobs.State(state)
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
	rows, err := s.pool.Query(ctx, `SELECT o.job_id, j.type, j.payload, j.labels, j.run_after, o.created
		FROM outbox o JOIN jobs j ON j.id = o.job_id WHERE o.due <= $1 ORDER BY o.due, o.seq LIMIT $2`,
		storekit.Round(now), limit)
	if err != nil {
		return nil, fmt.Errorf("%s: read outbox: %w", pkg, err)
	}
	defer rows.Close()
	var out []jobs.OutboxEntry
	for rows.Next() {
		var (
			e               jobs.OutboxEntry
			payload, labels []byte
			runAfter        *time.Time
			created         time.Time
		)
		if err := rows.Scan(&e.JobID, &e.Type, &payload, &labels, &runAfter, &created); err != nil {
			return nil, fmt.Errorf("%s: read outbox: %w", pkg, err)
		}
		e.Payload = storekit.Bytes(payload)
		if e.Labels, err = storekit.DecodeLabels(pkg, string(labels)); err != nil {
			return nil, err
		}
		e.RunAfter = ptrTime(runAfter)
		e.Created = storekit.Round(created)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: read outbox: %w", pkg, err)
	}
	return out, nil
}

// MarkSent implements jobs.Store.
func (s *Store) MarkSent(ctx context.Context, jobIDs []string) error {
	if err := s.checkOpen("MarkSent"); err != nil {
		return err
	}
	if len(jobIDs) == 0 {
		return nil
	}
	ids := slices.Sorted(slices.Values(jobIDs)) // one lock order
	if _, err := s.pool.Exec(ctx, `DELETE FROM outbox WHERE job_id = ANY($1)`, ids); err != nil {
		return fmt.Errorf("%s: MarkSent: %w", pkg, err)
	}
	return nil
}

// OutboxStats implements jobs.Store.
func (s *Store) OutboxStats(ctx context.Context) (int, time.Time, error) {
	if err := s.checkOpen("OutboxStats"); err != nil {
		return 0, time.Time{}, err
	}
	var (
		n      int
		oldest *time.Time
	)
	if err := s.pool.QueryRow(ctx, `SELECT count(*), min(created) FROM outbox`).Scan(&n, &oldest); err != nil {
		return 0, time.Time{}, fmt.Errorf("%s: outbox stats: %w", pkg, err)
	}
	return n, ptrTime(oldest), nil
}

// deleteChunk is how many jobs one DeleteFinished statement deletes, so
// that a large sweep holds its locks briefly.
const deleteChunk = 1000

// DeleteFinished implements jobs.Store.
func (s *Store) DeleteFinished(ctx context.Context, cutoff time.Time) (int, error) {
	if err := s.checkOpen("DeleteFinished"); err != nil {
		return 0, err
	}
	total := 0
	for {
		var n int
		err := s.pool.QueryRow(ctx, `WITH d AS (
				SELECT id FROM jobs WHERE end_time < $1 AND state IN `+terminal+`
				ORDER BY end_time LIMIT $2 FOR UPDATE SKIP LOCKED),
			o AS (DELETE FROM outbox WHERE job_id IN (SELECT id FROM d)),
			e AS (DELETE FROM job_events WHERE job_id IN (SELECT id FROM d)),
			j AS (DELETE FROM jobs WHERE id IN (SELECT id FROM d) RETURNING 1)
			SELECT count(*) FROM j`, storekit.Round(cutoff), deleteChunk).Scan(&n)
		total += n
		if err != nil {
			return total, fmt.Errorf("%s: DeleteFinished: %w", pkg, err)
		}
		if n < deleteChunk {
			return total, nil
		}
	}
}
