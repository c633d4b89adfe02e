package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/internal/storekit"
)

const cols = `id, type, state, attempt, max_attempts, payload, result_type, result, error_code, error_message,
	progress_fraction, progress_message, labels, idempotency_key, run_after, create_time, start_time, end_time, update_time`

const terminal = `('SUCCEEDED', 'FAILED', 'CANCELLED')`

// stmts are prepared once: the write ones on the writer's connection, the
// read ones on the read pool.
type stmts struct {
	savepoint, rollbackTo, release *sql.Stmt

	insertJob, insertLabel, insertOutbox *sql.Stmt
	byIDW, byKeyW                        *sql.Stmt
	start, progress, succeed             *sql.Stmt
	failRetry, failFinal, cancel         *sql.Stmt
	deleteOutbox                         *sql.Stmt
	delLabels, delOutbox, delEvents      *sql.Stmt
	delJobs                              *sql.Stmt

	byID, dueOutbox, outboxStats, events *sql.Stmt
}

func (st *stmts) prepare(ctx context.Context, wdb, rdb *sql.DB) error {
	var errs []error
	p := func(db *sql.DB, q string) *sql.Stmt {
		s, err := db.PrepareContext(ctx, q)
		if err != nil {
			errs = append(errs, fmt.Errorf("%q: %w", q, err))
		}
		return s
	}
	st.savepoint = p(wdb, `SAVEPOINT req`)
	st.rollbackTo = p(wdb, `ROLLBACK TO req`)
	st.release = p(wdb, `RELEASE req`)
	st.insertJob = p(wdb, `INSERT INTO jobs (id, type, state, max_attempts, payload, labels, idempotency_key, run_after, create_time, update_time)
		VALUES (?, ?, 'QUEUED', ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING `+cols)
	st.insertLabel = p(wdb, `INSERT INTO job_labels (job_id, key, value) VALUES (?, ?, ?)`)
	st.insertOutbox = p(wdb, `INSERT INTO outbox (job_id, due, created) VALUES (?, ?, ?)`)
	st.byIDW = p(wdb, `SELECT `+cols+` FROM jobs WHERE id = ?`)
	st.byKeyW = p(wdb, `SELECT `+cols+` FROM jobs WHERE type = ? AND idempotency_key = ? AND idempotency_key <> ''`)
	st.start = p(wdb, `UPDATE jobs SET state = 'RUNNING', attempt = ?, start_time = coalesce(start_time, ?), update_time = ?
		WHERE id = ? AND state IN ('QUEUED', 'RUNNING') RETURNING `+cols)
	st.progress = p(wdb, `UPDATE jobs SET progress_fraction = ?, progress_message = ?, update_time = ?
		WHERE id = ? AND state = 'RUNNING'`)
	st.succeed = p(wdb, `UPDATE jobs SET state = 'SUCCEEDED', result_type = ?, result = ?, end_time = ?, update_time = ?
		WHERE id = ? AND state = 'RUNNING' RETURNING `+cols)
	st.failRetry = p(wdb, `UPDATE jobs SET state = 'QUEUED', error_code = ?, error_message = ?, update_time = ?
		WHERE id = ? AND state = 'RUNNING' RETURNING `+cols)
	st.failFinal = p(wdb, `UPDATE jobs SET state = 'FAILED', error_code = ?, error_message = ?, end_time = ?, update_time = ?
		WHERE id = ? AND state IN ('QUEUED', 'RUNNING') RETURNING `+cols)
	st.cancel = p(wdb, `UPDATE jobs SET state = 'CANCELLED', end_time = ?, update_time = ?
		WHERE id = ? AND state IN ('QUEUED', 'RUNNING') RETURNING `+cols)
	st.deleteOutbox = p(wdb, `DELETE FROM outbox WHERE job_id = ?`)
	const doomed = `SELECT id FROM jobs WHERE end_time < ?1 AND state IN ` + terminal + ` ORDER BY end_time LIMIT ?2`
	st.delLabels = p(wdb, `DELETE FROM job_labels WHERE job_id IN (`+doomed+`)`)
	st.delOutbox = p(wdb, `DELETE FROM outbox WHERE job_id IN (`+doomed+`)`)
	st.delEvents = p(wdb, `DELETE FROM job_events WHERE job_id IN (`+doomed+`)`)
	st.delJobs = p(wdb, `DELETE FROM jobs WHERE id IN (`+doomed+`)`)

	st.byID = p(rdb, `SELECT `+cols+` FROM jobs WHERE id = ?`)
	st.dueOutbox = p(rdb, `SELECT o.job_id, j.type, j.payload, j.labels, j.run_after, o.created
		FROM outbox o JOIN jobs j ON j.id = o.job_id WHERE o.due <= ? ORDER BY o.due, o.seq LIMIT ?`)
	st.outboxStats = p(rdb, `SELECT count(*), min(created) FROM outbox`)
	st.events = p(rdb, `SELECT time, state, attempt, message FROM job_events WHERE job_id = ? ORDER BY seq`)
	if len(errs) > 0 {
		st.close()
		return fmt.Errorf("%s: prepare statements: %w", pkg, errors.Join(errs...))
	}
	return nil
}

func (st *stmts) close() {
	for _, s := range []*sql.Stmt{st.savepoint, st.rollbackTo, st.release, st.insertJob, st.insertLabel, st.insertOutbox,
		st.byIDW, st.byKeyW, st.start, st.progress, st.succeed, st.failRetry, st.failFinal, st.cancel, st.deleteOutbox,
		st.delLabels, st.delOutbox, st.delEvents, st.delJobs, st.byID, st.dueOutbox, st.outboxStats, st.events} {
		if s != nil {
			s.Close()
		}
	}
}

type scanner interface{ Scan(dest ...any) error }

func scanJob(row scanner) (*jobs.Job, error) {
	var (
		j                               jobs.Job
		state, labels                   string
		runAfter, startTime, endTime    sql.NullInt64
		createTime, updateTime, errCode int64
		payload, result                 []byte
		attempt, maxAttempts            int64
	)
	err := row.Scan(&j.ID, &j.Type, &state, &attempt, &maxAttempts, &payload, &j.ResultType, &result, &errCode,
		&j.ErrorMessage, &j.ProgressFraction, &j.ProgressMessage, &labels, &j.IdempotencyKey, &runAfter,
		&createTime, &startTime, &endTime, &updateTime)
	if err != nil {
		return nil, err
	}
	j.State = jobs.State(state)
	j.Attempt, j.MaxAttempts = int(attempt), int(maxAttempts)
	j.ErrorCode = int32(errCode)
	j.Payload, j.Result = storekit.Bytes(payload), storekit.Bytes(result)
	if j.Labels, err = storekit.DecodeLabels(pkg, labels); err != nil {
		return nil, err
	}
	j.RunAfter = nullTime(runAfter)
	j.CreateTime = storekit.FromMicros(createTime)
	j.StartTime = nullTime(startTime)
	j.EndTime = nullTime(endTime)
	j.UpdateTime = storekit.FromMicros(updateTime)
	return &j, nil
}

func nullTime(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return storekit.FromMicros(n.Int64)
}

func micros(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}
