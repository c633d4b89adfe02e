package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/internal/storekit"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const cols = `id, type, state, attempt, max_attempts, payload, result_type, result, error_code, error_message,
	progress_fraction, progress_message, labels, idempotency_key, run_after, create_time, start_time, end_time, update_time,
	trace_parent, trace_state, ordering_key, timeout_us, lease, lease_expiry`

// colsPrev is what a write returns: the job and the state it was in before
// (for the counters).
const colsPrev = cols + `, prev_state`

const terminal = `('SUCCEEDED', 'FAILED', 'CANCELLED')`

// keyDue is the due time of a new outbox entry: due, or for an entry with an
// ordering key (the column or parameter key) no earlier than the due time
// of the key's last entry. So the entries of a key are due in seq order
// (RetryOutbox keeps it so), and ClaimOutbox, which takes entries by due
// time, meets the earlier entries of a key first. (Two transactions that
// enqueue on one key at once may not see each other's entry; ClaimOutbox
// still never claims an entry before an earlier one of its key.)
func keyDue(due, key string) string {
	return `CASE WHEN ` + key + ` = '' THEN ` + due + ` ELSE greatest(` + due + `,
		(SELECT k.due FROM outbox k WHERE k.ordering_key = ` + key + ` AND k.ordering_key <> '' ORDER BY k.seq DESC LIMIT 1)) END`
}

func scanJob(row pgx.Row) (*jobs.Job, error) {
	j, _, err := scanJobPrev(row, false)
	return j, err
}

// scanJobPrev scans cols and, with prev, the prev_state after them.
func scanJobPrev(row pgx.Row, prev bool) (*jobs.Job, jobs.State, error) {
	var (
		j                                         jobs.Job
		state, prevState                          string
		labels                                    []byte
		runAfter, startTime, endTime, leaseExpiry *time.Time
		createTime, updateTime                    time.Time
		payload, result                           []byte
		timeout                                   int64
	)
	dest := []any{&j.ID, &j.Type, &state, &j.Attempt, &j.MaxAttempts, &payload, &j.ResultType, &result, &j.ErrorCode,
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
	j.Payload, j.Result = storekit.Bytes(payload), storekit.Bytes(result)
	var err error
	if j.Labels, err = storekit.DecodeLabels(pkg, string(labels)); err != nil {
		return nil, "", err
	}
	j.RunAfter = ptrTime(runAfter)
	j.CreateTime = storekit.Round(createTime)
	j.StartTime = ptrTime(startTime)
	j.EndTime = ptrTime(endTime)
	j.UpdateTime = storekit.Round(updateTime)
	j.Timeout = time.Duration(timeout) * time.Microsecond
	j.LeaseExpiry = ptrTime(leaseExpiry)
	return &j, jobs.State(prevState), nil
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

// change is the outcome of a conditional write that returns colsPrev: the
// job after it (nil when it changed no row) and the state before.
type change struct {
	job  *jobs.Job
	prev jobs.State
	now  time.Time
}

// scan reads the result row of the write.
func (c *change) scan(row pgx.Row) error {
	j, prev, err := scanJobPrev(row, true)
	if errors.Is(err, pgx.ErrNoRows) {
		c.job, c.prev = nil, ""
		return nil
	}
	c.job, c.prev = j, prev
	return err
}

// count records the state change for the counters.
func (c *change) count(t *storekit.Tally) {
	if c.job != nil {
		t.Move(c.job.Type, c.prev, c.job.State, c.now)
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

// insertArgs are the arguments $1..$12 of enqueueSQL.
func insertArgs(j jobs.Job, now time.Time) []any {
	return []any{j.ID, j.Type, j.MaxAttempts, j.Payload, labelsArg(j.Labels), j.IdempotencyKey, tsArg(j.RunAfter), now,
		j.TraceParent, j.TraceState, j.OrderingKey, j.Timeout.Microseconds()}
}

// countInsert returns the count function of an insert that stored *out
// (nil when it inserted nothing).
func countInsert(out **jobs.Job, now time.Time) func(*storekit.Tally) {
	return func(t *storekit.Tally) {
		if *out != nil {
			t.Move((*out).Type, "", jobs.Queued, now)
		}
	}
}

// enqueueSQL records a job (see Enqueue) in one statement: its hold on its
// idempotency key (job_keys: taken when free, or over from a holder that no
// longer holds it), the job, and with outbox its outbox entry; it returns
// the job, or no row when the key is held or the ID taken. Arguments:
// $1..$12 insertArgs, $13 the key's held_until, $14 its while_active, and
// with outbox $15 the entry's due time (enqueueArgs).
//
// The takeover asks whether the holder has ended, not whether it is still
// active: under READ COMMITTED the ON CONFLICT condition sees the key row
// as of now but other tables as of the statement's start, so a holder
// committed meanwhile is invisible to it, and must count as holding.
// (DeleteFinished deletes the key rows of the jobs it deletes, so a row's
// holder always exists.)
func enqueueSQL(outbox bool) string {
	q := `WITH k AS (INSERT INTO job_keys AS h (type, key, job_id, held_until, while_active)
			SELECT $2::text, $6::text, $1::text, $13::timestamptz, $14::boolean
			WHERE $6::text <> '' AND NOT EXISTS (SELECT 1 FROM jobs WHERE id = $1::text)
			ON CONFLICT (type, key) DO UPDATE SET job_id = excluded.job_id, held_until = excluded.held_until, while_active = excluded.while_active
			WHERE h.held_until <= $8::timestamptz OR (h.while_active AND EXISTS (SELECT 1 FROM jobs a WHERE a.id = h.job_id AND a.state IN ` + terminal + `))
			RETURNING job_id),
		j AS (INSERT INTO jobs (id, type, state, max_attempts, payload, labels, idempotency_key, run_after, create_time, update_time,
				seen_time, trace_parent, trace_state, ordering_key, timeout_us)
			SELECT $1, $2, 'QUEUED', $3, $4, $5::jsonb, $6, $7, $8, $8, $8, $9, $10, $11, $12
			WHERE $6::text = '' OR EXISTS (SELECT 1 FROM k)
			ON CONFLICT DO NOTHING RETURNING ` + cols + `)`
	if outbox {
		q += `,
		o AS (INSERT INTO outbox (job_id, due, created, ordering_key) SELECT id, ` + keyDue("$15::timestamptz", "j.ordering_key") + `, $8, ordering_key FROM j)`
	}
	return q + `
		SELECT ` + cols + ` FROM j`
}

var enqueueJob, ensureJob = enqueueSQL(true), enqueueSQL(false)

// enqueueArgs are the arguments of enqueueSQL(outbox).
func enqueueArgs(p jobs.EnqueueParams, now time.Time, outbox bool) []any {
	args := append(insertArgs(p.Job, now), tsArg(storekit.KeyHeldUntil(p, now)), p.UniqueWhileActive)
	if outbox {
		due := now
		if p.Job.RunAfter.After(due) {
			due = p.Job.RunAfter
		}
		args = append(args, due)
	}
	return args
}

// keyHolder is the WHERE clause of the job that holds key $2 of type $1 at
// time $3.
const keyHolder = `id = (SELECT k.job_id FROM job_keys k WHERE k.type = $1 AND k.key = $2
	AND (k.held_until IS NULL OR k.held_until > $3)
	AND (NOT k.while_active OR EXISTS (SELECT 1 FROM jobs a WHERE a.id = k.job_id AND a.state IN ('QUEUED', 'RUNNING'))))`

// SupportsUniqueScopes implements jobs.UniqueScopes: true.
func (s *Store) SupportsUniqueScopes() bool { return true }

var (
	_ jobs.UniqueScopes  = (*Store)(nil)
	_ jobs.BatchEnqueuer = (*Store)(nil)
)

// Enqueue implements jobs.Store. The job, its outbox row and its hold on
// its idempotency key are written by one statement, hence in one
// transaction.
func (s *Store) Enqueue(ctx context.Context, p jobs.EnqueueParams) (*jobs.Job, bool, error) {
	j, err := storekit.NewJob(pkg, "Enqueue", p.Job, false)
	if err != nil {
		return nil, false, err
	}
	if err := storekit.CheckUnique(pkg, "Enqueue", p); err != nil {
		return nil, false, err
	}
	p.Job = j
	// A key that is released between the write (held) and the read of its
	// holder (none) is tried again.
	for range 3 {
		now := s.now()
		var out *jobs.Job
		err = s.write(ctx, "Enqueue", j.ID, enqueueJob, enqueueArgs(p, now, true), scanInto(&out), countInsert(&out, now))
		if err != nil {
			return nil, false, err
		}
		if out != nil {
			s.hub.Notify(out.ID)
			return out, false, nil
		}
		if j.IdempotencyKey == "" {
			break
		}
		dup, err := s.lookup(ctx, keyHolder, j.Type, j.IdempotencyKey, s.now())
		if err != nil || dup != nil {
			return dup, dup != nil, err
		}
		if taken, err := s.lookup(ctx, `id = $1`, j.ID); err != nil || taken != nil {
			if err == nil {
				err = fmt.Errorf("%s: Enqueue: job ID %s is taken by another job: %w", pkg, j.ID, jobs.ErrConflict)
			}
			return nil, false, err
		}
	}
	return nil, false, fmt.Errorf("%s: Enqueue: job ID %s is taken by another job: %w", pkg, j.ID, jobs.ErrConflict)
}

// EnqueueBatch implements jobs.BatchEnqueuer: one explicit transaction on
// a connection of its own (not the writers' batches), one pipelined
// statement per job, then the counters, the notification and COMMIT.
func (s *Store) EnqueueBatch(ctx context.Context, ps []jobs.EnqueueParams) ([]jobs.EnqueueResult, error) {
	if err := s.checkOpen("EnqueueBatch"); err != nil {
		return nil, err
	}
	ps, err := storekit.NewBatch(pkg, ps)
	if err != nil {
		return nil, err
	}
	out := make([]jobs.EnqueueResult, len(ps))
	if len(ps) == 0 {
		return out, nil
	}
	ctx, cancel := context.WithTimeout(ctx, batchTimeout)
	defer cancel()
	// The statements run in request order (a batch's jobs of one ordering
	// key go out in that order), so two batches could take the row locks
	// of the same idempotency keys in opposite orders. Each batch first
	// takes a transaction advisory lock per key, in one order for every
	// batch, so batches do not deadlock on each other; a deadlock with the
	// writers' batches (PostgreSQL aborts one) runs the batch again.
	for try := 1; ; try++ {
		err = s.enqueueBatch(ctx, ps, out)
		var pe *pgconn.PgError
		if try < 3 && errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001") {
			continue
		}
		break
	}
	if err != nil {
		return nil, fmt.Errorf("%s: EnqueueBatch: %w", pkg, err)
	}
	for _, r := range out {
		if !r.Duplicate {
			s.hub.Notify(r.Job.ID)
		}
	}
	return out, nil
}

// enqueueBatch is one try of EnqueueBatch: it fills out.
func (s *Store) enqueueBatch(ctx context.Context, ps []jobs.EnqueueParams, out []jobs.EnqueueResult) error {
	now := s.now()
	clear(out)
	var keys []string
	for _, p := range ps {
		if p.Job.IdempotencyKey != "" {
			keys = append(keys, p.Job.Type+"/"+p.Job.IdempotencyKey)
		}
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for _, k := range keys {
			b.Queue(`SELECT pg_advisory_xact_lock(hashtextextended($1, 7))`, k)
		}
		for _, p := range ps {
			b.Queue(enqueueJob, enqueueArgs(p, now, true)...)
		}
		br := tx.SendBatch(ctx, b)
		for range keys {
			if _, err := br.Exec(); err != nil {
				br.Close()
				return fmt.Errorf("lock the idempotency keys: %w", err)
			}
		}
		for i := range ps {
			var j *jobs.Job
			if err := scanInto(&j)(br.QueryRow()); err != nil {
				br.Close()
				return fmt.Errorf("jobs[%d]: %w", i, err)
			}
			out[i].Job = j
		}
		if err := br.Close(); err != nil {
			return err
		}
		var (
			tally storekit.Tally
			ids   []string
		)
		for i, p := range ps {
			if out[i].Job != nil {
				tally.Move(p.Job.Type, "", jobs.Queued, now)
				ids = append(ids, p.Job.ID)
				continue
			}
			// Held key (by a job before the batch, or earlier in it), or a
			// taken ID: this transaction's statements see each other.
			if p.Job.IdempotencyKey != "" {
				held, err := scanJob(tx.QueryRow(ctx, `SELECT `+cols+` FROM jobs WHERE `+keyHolder, p.Job.Type, p.Job.IdempotencyKey, now))
				if err == nil {
					out[i] = jobs.EnqueueResult{Job: held, Duplicate: true}
					continue
				}
				if !errors.Is(err, pgx.ErrNoRows) {
					return fmt.Errorf("jobs[%d]: read the holder of its idempotency key: %w", i, err)
				}
			}
			return fmt.Errorf("jobs[%d]: job ID %s is taken by another job: %w", i, p.Job.ID, jobs.ErrConflict)
		}
		b = &pgx.Batch{}
		queueTally(b, &tally, rand.IntN(counterShards))
		for _, pl := range notifyPayloads(ids) {
			b.Queue(`SELECT pg_notify($1, $2)`, s.channel, pl)
		}
		return tx.SendBatch(ctx, b).Close()
	})
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
	now := s.now()
	err = s.write(ctx, "Ensure", j.ID, ensureJob, enqueueArgs(jobs.EnqueueParams{Job: j}, now, false), scanInto(&out), countInsert(&out, now))
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
		if out, err = s.lookup(ctx, keyHolder, j.Type, j.IdempotencyKey, s.now()); err != nil || out != nil {
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

// update runs a conditional UPDATE ... RETURNING colsPrev through the
// writers, with now as its time; when it changes no row it tells
// ErrNotFound from ErrConflict (see refused).
func (s *Store) update(ctx context.Context, method, id, lease string, now time.Time, q string, args ...any) (*jobs.Job, error) {
	c := &change{now: now}
	if err := s.write(ctx, method, id, q, args, c.scan, c.count); err != nil {
		return nil, err
	}
	if c.job != nil {
		s.hub.Notify(id)
		return c.job, nil
	}
	return s.refused(ctx, method, id, lease)
}

// refused explains a conditional change that applied to no row: the job is
// missing (ErrNotFound), or returned as it is with an error wrapping
// ErrConflict.
func (s *Store) refused(ctx context.Context, method, id, lease string) (*jobs.Job, error) {
	cur, err := s.lookup(ctx, `id = $1`, id)
	if err != nil {
		return nil, err
	}
	return storekit.Refused(pkg, method, id, lease, cur)
}

// Start implements jobs.Store. A RUNNING job with no lease expiry was
// started before leases existed: its lease counts as lapsed.
func (s *Store) Start(ctx context.Context, p jobs.StartParams) (*jobs.Job, error) {
	if err := storekit.CheckStart(pkg, p); err != nil {
		return nil, err
	}
	now := s.now()
	c := &change{now: now}
	err := s.write(ctx, "Start", p.ID, `UPDATE jobs SET prev_state = state, state = 'RUNNING', attempt = greatest($2, attempt + 1),
			lease = $3, lease_expiry = $4, start_time = coalesce(start_time, $5), update_time = $5
		WHERE id = $1 AND (state = 'QUEUED'
			OR (state = 'RUNNING' AND lease <> $3 AND (lease_expiry IS NULL OR lease_expiry <= $5)))
		RETURNING `+colsPrev, []any{p.ID, p.Attempt, p.Lease, now.Add(p.LeaseFor), now}, c.scan, c.count)
	if err != nil {
		return nil, err
	}
	if c.job != nil {
		s.hub.Notify(p.ID)
		return c.job, nil
	}
	cur, err := s.lookup(ctx, `id = $1`, p.ID)
	if err != nil {
		return nil, err
	}
	return storekit.StartRefused(pkg, p, cur)
}

// Heartbeat implements jobs.Store, in one statement. The IDs go in sorted
// (one lock order); $3 maps each ID to its lease.
func (s *Store) Heartbeat(ctx context.Context, p jobs.HeartbeatParams) ([]string, error) {
	if err := s.checkOpen("Heartbeat"); err != nil {
		return nil, err
	}
	if err := storekit.CheckHeartbeat(pkg, p); err != nil {
		return nil, err
	}
	if len(p.Leases) == 0 {
		return nil, nil
	}
	ids := make([]string, len(p.Leases))
	leases := make(map[string]string, len(p.Leases))
	for i, l := range p.Leases {
		ids[i] = l.ID
		leases[l.ID] = l.Lease
	}
	slices.Sort(ids)
	rows, err := s.pool.Query(ctx, `UPDATE jobs SET lease_expiry = $1
		WHERE id = ANY($2) AND state = 'RUNNING' AND lease = ($3::jsonb ->> id) RETURNING id`,
		s.now().Add(p.LeaseFor), slices.Compact(ids), leases)
	if err != nil {
		return nil, fmt.Errorf("%s: Heartbeat: %w", pkg, err)
	}
	held, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("%s: Heartbeat: %w", pkg, err)
	}
	return storekit.Lost(p.Leases, held), nil
}

// Progress implements jobs.Store.
func (s *Store) Progress(ctx context.Context, p jobs.ProgressParams) error {
	if err := storekit.CheckProgress(pkg, p); err != nil {
		return err
	}
	var out *jobs.Job
	err := s.write(ctx, "Progress", p.ID, `UPDATE jobs SET progress_fraction = $2, progress_message = $3, update_time = $4
		WHERE id = $1 AND state = 'RUNNING' AND ($5 = '' OR lease = $5) RETURNING `+cols,
		[]any{p.ID, p.Fraction, storekit.Message(p.Message), s.now(), p.Lease}, scanInto(&out), nil)
	if err != nil {
		return err
	}
	if out != nil {
		s.hub.Notify(p.ID)
		return nil
	}
	_, err = s.refused(ctx, "Progress", p.ID, p.Lease)
	return err
}

// Succeed implements jobs.Store.
func (s *Store) Succeed(ctx context.Context, p jobs.SucceedParams) (*jobs.Job, error) {
	if err := storekit.CheckEnd(pkg, "Succeed", p.ID, p.Lease); err != nil {
		return nil, err
	}
	now := s.now()
	j, err := s.update(ctx, "Succeed", p.ID, p.Lease, now, `UPDATE jobs SET prev_state = state, state = 'SUCCEEDED',
			result_type = $2, result = $3, end_time = $4, update_time = $4, lease = '', lease_expiry = NULL
		WHERE id = $1 AND state = 'RUNNING' AND ($5 = '' OR lease = $5) RETURNING `+colsPrev,
		p.ID, storekit.Message(p.ResultType), storekit.Bytes(p.Result), now, p.Lease)
	if err != nil {
		return nil, err
	}
	return j, nil
}

// Fail implements jobs.Store. A final failure drops the job's outbox entry
// in the same statement.
func (s *Store) Fail(ctx context.Context, p jobs.FailParams) (*jobs.Job, error) {
	if err := storekit.CheckEnd(pkg, "Fail", p.ID, p.Lease); err != nil {
		return nil, err
	}
	var (
		j   *jobs.Job
		err error
		now = s.now()
		msg = storekit.Message(p.Message)
	)
	if p.Retry {
		j, err = s.update(ctx, "Fail", p.ID, p.Lease, now, `UPDATE jobs SET prev_state = state, state = 'QUEUED',
				error_code = $2, error_message = $3, update_time = $4, seen_time = $4, lease = '', lease_expiry = NULL
			WHERE id = $1 AND state = 'RUNNING' AND ($5 = '' OR lease = $5) RETURNING `+colsPrev,
			p.ID, p.Code, msg, now, p.Lease)
	} else {
		j, err = s.update(ctx, "Fail", p.ID, p.Lease, now, `WITH u AS (
				UPDATE jobs SET prev_state = state, state = 'FAILED', error_code = $2, error_message = $3,
					end_time = $4, update_time = $4, lease = '', lease_expiry = NULL
				WHERE id = $1 AND ($5 = '' AND state IN ('QUEUED', 'RUNNING') OR state = 'RUNNING' AND lease = $5)
				RETURNING `+colsPrev+`),
			o AS (DELETE FROM outbox WHERE job_id IN (SELECT id FROM u))
			SELECT `+colsPrev+` FROM u`, p.ID, p.Code, msg, now, p.Lease)
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
	return s.update(ctx, "Cancel", id, "", s.now(), `WITH u AS (
			UPDATE jobs SET prev_state = state, state = 'CANCELLED', end_time = $2, update_time = $2,
				lease = '', lease_expiry = NULL
			WHERE id = $1 AND state IN ('QUEUED', 'RUNNING') RETURNING `+colsPrev+`),
		o AS (DELETE FROM outbox WHERE job_id IN (SELECT id FROM u))
		SELECT `+colsPrev+` FROM u`, id, s.now())
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
	rows, err := s.pool.Query(ctx, `SELECT id FROM jobs WHERE id = ANY($1) AND state = 'CANCELLED'`, ids)
	if err != nil {
		return nil, fmt.Errorf("%s: Cancelled: %w", pkg, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("%s: Cancelled: %w", pkg, err)
	}
	return out, nil
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

// ClaimOutbox implements jobs.Store in one statement: the candidates are
// locked with SKIP LOCKED (so relays never wait for, or get, each other's
// entries); one with an ordering key is kept only when every earlier entry
// of its key is among them (another relay may have locked one that its
// snapshot shows unclaimed); those are claimed and returned.
func (s *Store) ClaimOutbox(ctx context.Context, p jobs.ClaimOutboxParams) ([]jobs.OutboxEntry, error) {
	if err := s.checkOpen("ClaimOutbox"); err != nil {
		return nil, err
	}
	if err := storekit.CheckClaim(pkg, p); err != nil {
		return nil, err
	}
	now := s.now()
	rows, err := s.pool.Query(ctx, `WITH c AS MATERIALIZED (
			SELECT job_id, seq, ordering_key FROM outbox o
			WHERE due <= $1 AND (claim_until IS NULL OR claim_until <= $1)
				AND (ordering_key = '' OR NOT EXISTS (SELECT 1 FROM outbox p
					WHERE p.ordering_key = o.ordering_key AND p.ordering_key <> '' AND p.seq < o.seq AND (p.due > $1 OR p.claim_until > $1)))
			ORDER BY due, seq LIMIT $2 FOR UPDATE SKIP LOCKED),
		ok AS (
			SELECT c.job_id FROM c WHERE c.ordering_key = '' OR NOT EXISTS (
				SELECT 1 FROM outbox p WHERE p.ordering_key = c.ordering_key AND p.ordering_key <> '' AND p.seq < c.seq
					AND NOT EXISTS (SELECT 1 FROM c c2 WHERE c2.job_id = p.job_id))),
		u AS (
			UPDATE outbox o SET claim_owner = $3, claim_until = $4 FROM ok WHERE o.job_id = ok.job_id
			RETURNING o.job_id, o.seq, o.created, o.ordering_key, o.due, o.attempts, o.last_error)
		SELECT u.job_id, j.type, j.payload, j.labels, j.run_after, u.created, j.trace_parent, j.trace_state,
			u.ordering_key, u.due, u.attempts, u.last_error
		FROM u JOIN jobs j ON j.id = u.job_id ORDER BY u.due, u.seq`,
		now, p.Limit, p.Owner, now.Add(p.LeaseFor))
	if err != nil {
		return nil, fmt.Errorf("%s: ClaimOutbox: %w", pkg, err)
	}
	defer rows.Close()
	var out []jobs.OutboxEntry
	for rows.Next() {
		var (
			e               jobs.OutboxEntry
			payload, labels []byte
			runAfter        *time.Time
			created, due    time.Time
		)
		if err := rows.Scan(&e.JobID, &e.Type, &payload, &labels, &runAfter, &created,
			&e.TraceParent, &e.TraceState, &e.OrderingKey, &due, &e.Attempts, &e.LastError); err != nil {
			return nil, fmt.Errorf("%s: ClaimOutbox: %w", pkg, err)
		}
		e.Payload = storekit.Bytes(payload)
		if e.Labels, err = storekit.DecodeLabels(pkg, string(labels)); err != nil {
			return nil, err
		}
		e.RunAfter = ptrTime(runAfter)
		e.Created, e.Due = storekit.Round(created), storekit.Round(due)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: ClaimOutbox: %w", pkg, err)
	}
	return out, nil
}

// MarkSent implements jobs.Store.
func (s *Store) MarkSent(ctx context.Context, jobIDs []string) error {
	if err := s.checkOpen("MarkSent"); err != nil {
		return err
	}
	if err := storekit.CheckIDs(pkg, "MarkSent", jobIDs, jobs.MaxBatchIDs); err != nil {
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

// RetryOutbox implements jobs.Store.
func (s *Store) RetryOutbox(ctx context.Context, p jobs.RetryOutboxParams) error {
	if err := s.checkOpen("RetryOutbox"); err != nil {
		return err
	}
	if err := storekit.CheckRetryOutbox(pkg, p); err != nil {
		return err
	}
	// The later entries of the entry's ordering key become due no earlier.
	var n int
	err := s.pool.QueryRow(ctx, `WITH r AS (
			UPDATE outbox SET claim_owner = '', claim_until = NULL, due = $2, attempts = attempts + 1, last_error = $3
			WHERE job_id = $1 RETURNING seq, ordering_key, due),
		k AS (UPDATE outbox o SET due = greatest(o.due, r.due) FROM r
			WHERE r.ordering_key <> '' AND o.ordering_key = r.ordering_key AND o.ordering_key <> '' AND o.seq > r.seq)
		SELECT count(*) FROM r`, p.ID, storekit.Round(p.Due), storekit.Message(p.Error)).Scan(&n)
	if err != nil {
		return fmt.Errorf("%s: RetryOutbox: job %s: %w", pkg, p.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("%s: RetryOutbox: job %s has no outbox entry: %w", pkg, p.ID, jobs.ErrNotFound)
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
			k AS (DELETE FROM job_keys WHERE job_id IN (SELECT id FROM d)),
			e AS (DELETE FROM job_events WHERE job_id IN (SELECT id FROM d)),
			j AS (DELETE FROM jobs WHERE id IN (SELECT id FROM d) RETURNING type, state),
			c AS (INSERT INTO job_counts (type, state, shard, n)
				SELECT type, state, $3, -count(*) FROM j GROUP BY type, state ORDER BY type, state
				ON CONFLICT (type, state, shard) DO UPDATE SET n = job_counts.n + excluded.n)
			SELECT count(*) FROM j`, storekit.Round(cutoff), deleteChunk, rand.IntN(counterShards)).Scan(&n)
		total += n
		if err != nil {
			return total, fmt.Errorf("%s: DeleteFinished: %w", pkg, err)
		}
		if n < deleteChunk {
			if _, err := s.pool.Exec(ctx, `DELETE FROM job_throughput WHERE minute < $1`, storekit.Minute(cutoff)); err != nil {
				return total, fmt.Errorf("%s: DeleteFinished: throughput: %w", pkg, err)
			}
			return total, nil
		}
	}
}
