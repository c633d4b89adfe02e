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
	progress_fraction, progress_message, labels, idempotency_key, run_after, create_time, start_time, end_time, update_time,
	trace_parent, trace_state, ordering_key, timeout_us, lease, lease_expiry`

// colsPrev is what a write returns: the job and the state it was in before
// (for the counters).
const colsPrev = cols + `, prev_state`

const terminal = `('SUCCEEDED', 'FAILED', 'CANCELLED')`

// activity is a QUEUED job's last sign of life, as the jobs_queued_activity
// index has it: Rescue's queries must spell it exactly so.
const activity = `max(coalesce(seen_time, 0), coalesce(run_after, 0))`

// keyDue is the due time of a new outbox entry: ?2, or for an entry with an
// ordering key (?4) no earlier than the due time of the key's last entry.
// So the entries of a key are due in seq order (RetryOutbox keeps it so),
// and ClaimOutbox, which takes entries by due time, meets the earlier
// entries of a key first.
const keyDue = `CASE WHEN ?4 = '' THEN ?2 ELSE max(?2,
	coalesce((SELECT k.due FROM outbox k WHERE k.ordering_key = ?4 AND k.ordering_key <> '' ORDER BY k.seq DESC LIMIT 1), ?2)) END`

// outboxCols are the columns of an OutboxEntry, from outbox o joined with
// jobs j.
const outboxCols = `o.job_id, j.type, j.payload, j.labels, j.run_after, o.created,
	j.trace_parent, j.trace_state, o.ordering_key, o.due, o.attempts, o.last_error`

// stmts are prepared once: the write ones on the writer's connection, the
// read ones on the read pool.
type stmts struct {
	savepoint, rollbackTo, release *sql.Stmt

	insertJob, insertLabel, insertOutbox *sql.Stmt
	byIDW, byKeyW, holdKey, delKeys      *sql.Stmt
	start, progress, succeed             *sql.Stmt
	startSucceed                         *sql.Stmt
	failRetry, failFinal, cancel         *sql.Stmt
	heartbeat, markSeen                  *sql.Stmt
	deleteOutbox, markSent, retryOutbox  *sql.Stmt
	retryKey, claim                      *sql.Stmt
	lapsed, release1, requeueOutbox      *sql.Stmt
	lost, seen                           *sql.Stmt
	delLabels, delOutbox, delEvents      *sql.Stmt
	delJobs, delThroughput               *sql.Stmt
	addCount, addEnds                    *sql.Stmt

	byID, claimed, outboxStats, events *sql.Stmt
	cancelled, counts, throughput      *sql.Stmt
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
	st.insertJob = p(wdb, `INSERT INTO jobs (id, type, state, max_attempts, payload, labels, idempotency_key, run_after,
			trace_parent, trace_state, ordering_key, timeout_us, create_time, update_time, seen_time)
		VALUES (?1, ?2, 'QUEUED', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?12) ON CONFLICT DO NOTHING`)
	st.insertLabel = p(wdb, `INSERT INTO job_labels (job_id, key, value) VALUES (?, ?, ?)`)
	// ?1 job, ?2 due, ?3 now, ?4 ordering key. An entry with a key is due
	// no earlier than the key's last entry (see keyDue).
	st.insertOutbox = p(wdb, `INSERT INTO outbox (job_id, due, created, ordering_key) VALUES (?1, `+keyDue+`, ?3, ?4)`)
	st.byIDW = p(wdb, `SELECT `+cols+` FROM jobs WHERE id = ?`)
	// ?1 type, ?2 key, ?3 now: the job that holds the key (see job_keys).
	st.byKeyW = p(wdb, `SELECT `+cols+` FROM jobs WHERE id = (SELECT k.job_id FROM job_keys k WHERE k.type = ?1 AND k.key = ?2
		AND (k.held_until IS NULL OR k.held_until > ?3)
		AND (k.while_active = 0 OR EXISTS (SELECT 1 FROM jobs a WHERE a.id = k.job_id AND a.state IN ('QUEUED', 'RUNNING'))))`)
	st.holdKey = p(wdb, `INSERT INTO job_keys (type, key, job_id, held_until, while_active) VALUES (?1, ?2, ?3, ?4, ?5)
		ON CONFLICT (type, key) DO UPDATE SET job_id = excluded.job_id, held_until = excluded.held_until, while_active = excluded.while_active`)
	// ?1 attempt, ?2 lease, ?3 lease expiry, ?4 now, ?5 id. A RUNNING job
	// with no lease expiry was started before leases existed: its lease
	// counts as lapsed.
	st.start = p(wdb, `UPDATE jobs SET prev_state = state, state = 'RUNNING', attempt = max(?1, attempt + 1),
			lease = ?2, lease_expiry = ?3, start_time = coalesce(start_time, ?4), update_time = ?4
		WHERE id = ?5 AND (state = 'QUEUED'
			OR (state = 'RUNNING' AND lease <> ?2 AND (lease_expiry IS NULL OR lease_expiry <= ?4)))
		RETURNING `+colsPrev)
	// ?1 attempt, ?2 started, ?3 result type, ?4 result, ?5 now, ?6 id. The
	// job_events_quick trigger records the RUNNING event (at attempt_start).
	st.startSucceed = p(wdb, `UPDATE jobs SET prev_state = state, state = 'SUCCEEDED', attempt = max(?1, attempt + 1),
			attempt_start = ?2, start_time = coalesce(start_time, ?2), result_type = ?3, result = ?4,
			end_time = ?5, update_time = ?5, lease = '', lease_expiry = NULL
		WHERE id = ?6 AND state = 'QUEUED' RETURNING type, attempt, create_time, run_after, start_time`)
	// The lease (the last argument) is checked only when it is not ''.
	st.progress = p(wdb, `UPDATE jobs SET progress_fraction = ?1, progress_message = ?2, update_time = ?3
		WHERE id = ?4 AND state = 'RUNNING' AND (?5 = '' OR lease = ?5)`)
	st.succeed = p(wdb, `UPDATE jobs SET prev_state = state, state = 'SUCCEEDED', result_type = ?1, result = ?2,
			end_time = ?3, update_time = ?3, lease = '', lease_expiry = NULL
		WHERE id = ?4 AND state = 'RUNNING' AND (?5 = '' OR lease = ?5) RETURNING `+colsPrev)
	st.failRetry = p(wdb, `UPDATE jobs SET prev_state = state, state = 'QUEUED', error_code = ?1, error_message = ?2,
			update_time = ?3, seen_time = ?3, lease = '', lease_expiry = NULL
		WHERE id = ?4 AND state = 'RUNNING' AND (?5 = '' OR lease = ?5) RETURNING `+colsPrev)
	st.failFinal = p(wdb, `UPDATE jobs SET prev_state = state, state = 'FAILED', error_code = ?1, error_message = ?2,
			end_time = ?3, update_time = ?3, lease = '', lease_expiry = NULL
		WHERE id = ?4 AND (?5 = '' AND state IN ('QUEUED', 'RUNNING') OR state = 'RUNNING' AND lease = ?5)
		RETURNING `+colsPrev)
	st.cancel = p(wdb, `UPDATE jobs SET prev_state = state, state = 'CANCELLED', end_time = ?1, update_time = ?1,
			lease = '', lease_expiry = NULL
		WHERE id = ?2 AND state IN ('QUEUED', 'RUNNING') RETURNING `+colsPrev)
	// ?2 is a JSON array of [id, lease] pairs.
	st.heartbeat = p(wdb, `UPDATE jobs SET lease_expiry = ?1
		FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS lease FROM json_each(?2)) AS r
		WHERE jobs.id = r.id AND jobs.state = 'RUNNING' AND jobs.lease = r.lease
		RETURNING jobs.id`)
	st.markSeen = p(wdb, `UPDATE jobs SET seen_time = ?1 WHERE id IN (SELECT value FROM json_each(?2)) AND state = 'QUEUED'`)
	st.deleteOutbox = p(wdb, `DELETE FROM outbox WHERE job_id = ?`)
	st.markSent = p(wdb, `DELETE FROM outbox WHERE job_id IN (SELECT value FROM json_each(?))`)
	st.retryOutbox = p(wdb, `UPDATE outbox SET claim_owner = '', claim_until = NULL, due = ?1, attempts = attempts + 1,
		last_error = ?2 WHERE job_id = ?3 RETURNING seq, ordering_key, due`)
	// Keeps the entries of a key due in seq order (see keyDue).
	st.retryKey = p(wdb, `UPDATE outbox SET due = max(due, ?1) WHERE ordering_key = ?2 AND ordering_key <> '' AND seq > ?3`)
	// ?1 now, ?2 limit, ?3 owner, ?4 claim until. An entry with an ordering
	// key waits while an earlier entry of its key is held by a claim (or
	// not due): the earlier ones are claimed first, in the same call if they
	// can be, since they come first in (due, seq) order.
	st.claim = p(wdb, `UPDATE outbox SET claim_owner = ?3, claim_until = ?4 WHERE seq IN (
			SELECT seq FROM outbox o WHERE due <= ?1 AND (claim_until IS NULL OR claim_until <= ?1)
				AND (ordering_key = '' OR NOT EXISTS (SELECT 1 FROM outbox p
					WHERE p.ordering_key = o.ordering_key AND p.ordering_key <> '' AND p.seq < o.seq AND (p.due > ?1 OR p.claim_until > ?1)))
			ORDER BY due, seq LIMIT ?2)
		RETURNING seq`)
	// Rescue. ?1 lapsed before, ?2 limit.
	st.lapsed = p(wdb, `SELECT id, attempt, lease_expiry FROM jobs
		WHERE state = 'RUNNING' AND lease_expiry < ?1 ORDER BY lease_expiry LIMIT ?2`)
	st.release1 = p(wdb, `UPDATE jobs SET prev_state = state, state = 'QUEUED', error_code = ?1, error_message = ?2,
			update_time = ?3, seen_time = ?3, lease = '', lease_expiry = NULL
		WHERE id = ?4 AND state = 'RUNNING' RETURNING type, ordering_key`)
	// ?1 job, ?2 now, ?4 ordering key (?3 unused: keyDue's).
	st.requeueOutbox = p(wdb, `INSERT INTO outbox (job_id, due, created, ordering_key) VALUES (?1, `+keyDue+`, ?2, ?4)
		ON CONFLICT (job_id) DO UPDATE SET due = excluded.due, claim_owner = '', claim_until = NULL`)
	st.lost = p(wdb, `SELECT id, ordering_key FROM jobs
		WHERE state = 'QUEUED' AND `+activity+` < ?1 AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.job_id = jobs.id)
		ORDER BY `+activity+` LIMIT ?2`)
	st.seen = p(wdb, `UPDATE jobs SET seen_time = ?1 WHERE id = ?2`)
	const doomed = `SELECT id FROM jobs WHERE end_time < ?1 AND state IN ` + terminal + ` ORDER BY end_time LIMIT ?2`
	st.delKeys = p(wdb, `DELETE FROM job_keys WHERE job_id IN (`+doomed+`)`)
	st.delLabels = p(wdb, `DELETE FROM job_labels WHERE job_id IN (`+doomed+`)`)
	st.delOutbox = p(wdb, `DELETE FROM outbox WHERE job_id IN (`+doomed+`)`)
	st.delEvents = p(wdb, `DELETE FROM job_events WHERE job_id IN (`+doomed+`)`)
	st.delJobs = p(wdb, `DELETE FROM jobs WHERE id IN (`+doomed+`) RETURNING type, state`)
	st.delThroughput = p(wdb, `DELETE FROM job_throughput WHERE minute < ?`)
	st.addCount = p(wdb, `INSERT INTO job_counts (type, state, n) VALUES (?, ?, ?)
		ON CONFLICT (type, state) DO UPDATE SET n = n + excluded.n`)
	st.addEnds = p(wdb, `INSERT INTO job_throughput (minute, type, succeeded, failed) VALUES (?, ?, ?, ?)
		ON CONFLICT (minute, type) DO UPDATE SET succeeded = succeeded + excluded.succeeded, failed = failed + excluded.failed`)

	st.byID = p(rdb, `SELECT `+cols+` FROM jobs WHERE id = ?`)
	st.claimed = p(rdb, `SELECT `+outboxCols+` FROM outbox o JOIN jobs j ON j.id = o.job_id
		WHERE o.seq IN (SELECT value FROM json_each(?1)) AND o.claim_owner = ?2 ORDER BY o.due, o.seq`)
	st.outboxStats = p(rdb, `SELECT count(*), min(created) FROM outbox`)
	st.events = p(rdb, `SELECT time, state, attempt, message FROM job_events WHERE job_id = ? ORDER BY seq`)
	st.cancelled = p(rdb, `SELECT id FROM jobs WHERE id IN (SELECT value FROM json_each(?)) AND state = 'CANCELLED'`)
	st.counts = p(rdb, `SELECT c.type, c.state, c.n,
			CASE WHEN c.state = 'QUEUED' THEN (SELECT min(create_time) FROM jobs j WHERE j.type = c.type AND j.state = 'QUEUED') END
		FROM job_counts c WHERE c.n <> 0 ORDER BY c.type`)
	st.throughput = p(rdb, `SELECT minute - minute % ?1 AS b, type, sum(succeeded), sum(failed) FROM job_throughput
		WHERE minute >= ?2 GROUP BY b, type ORDER BY b, type`)
	if len(errs) > 0 {
		st.close()
		return fmt.Errorf("%s: prepare statements: %w", pkg, errors.Join(errs...))
	}
	return nil
}

func (st *stmts) close() {
	for _, s := range []*sql.Stmt{st.savepoint, st.rollbackTo, st.release, st.insertJob, st.insertLabel, st.insertOutbox,
		st.byIDW, st.byKeyW, st.holdKey, st.delKeys, st.start, st.progress, st.succeed, st.startSucceed, st.failRetry, st.failFinal, st.cancel,
		st.heartbeat, st.markSeen, st.deleteOutbox, st.markSent, st.retryOutbox, st.retryKey,
		st.claim, st.lapsed, st.release1, st.requeueOutbox, st.lost, st.seen,
		st.delLabels, st.delOutbox, st.delEvents, st.delJobs, st.delThroughput, st.addCount, st.addEnds,
		st.byID, st.claimed, st.outboxStats, st.events, st.cancelled, st.counts, st.throughput} {
		if s != nil {
			s.Close()
		}
	}
}

type scanner interface{ Scan(dest ...any) error }

func scanJob(row scanner) (*jobs.Job, error) {
	j, _, err := scanJobPrev(row, false)
	return j, err
}

// scanJobPrev scans cols and, with prev, the prev_state after them.
func scanJobPrev(row scanner, prev bool) (*jobs.Job, jobs.State, error) {
	var (
		j                                         jobs.Job
		state, labels, prevState                  string
		runAfter, startTime, endTime, leaseExpiry sql.NullInt64
		createTime, updateTime, errCode, timeout  int64
		payload, result                           []byte
		attempt, maxAttempts                      int64
	)
	dest := []any{&j.ID, &j.Type, &state, &attempt, &maxAttempts, &payload, &j.ResultType, &result, &errCode,
		&j.ErrorMessage, &j.ProgressFraction, &j.ProgressMessage, &labels, &j.IdempotencyKey, &runAfter,
		&createTime, &startTime, &endTime, &updateTime,
		&j.TraceParent, &j.TraceState, &j.OrderingKey, &timeout, &j.Lease, &leaseExpiry}
	if prev {
		dest = append(dest, &prevState)
	}
	if err := row.Scan(dest...); err != nil {
		return nil, "", err
	}
	j.State = jobs.State(state)
	j.Attempt, j.MaxAttempts = int(attempt), int(maxAttempts)
	j.ErrorCode = int32(errCode)
	j.Payload, j.Result = storekit.Bytes(payload), storekit.Bytes(result)
	var err error
	if j.Labels, err = storekit.DecodeLabels(pkg, labels); err != nil {
		return nil, "", err
	}
	j.RunAfter = nullTime(runAfter)
	j.CreateTime = storekit.FromMicros(createTime)
	j.StartTime = nullTime(startTime)
	j.EndTime = nullTime(endTime)
	j.UpdateTime = storekit.FromMicros(updateTime)
	j.Timeout = time.Duration(timeout) * time.Microsecond
	j.LeaseExpiry = nullTime(leaseExpiry)
	return &j, jobs.State(prevState), nil
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
