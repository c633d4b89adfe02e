package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/internal/storekit"
	"github.com/jackc/pgx/v5"
)

// The job controls (jobs.Schedules, jobs.TypePauser, jobs.Snoozer).
// Schedules and paused types are rare writes on their own tables: they go
// to the pool directly. A fire (which enqueues a job) and a snooze (which
// moves one) go through the writers, so that their jobs are counted and
// announced like any other change.

var (
	_ jobs.Schedules  = (*Store)(nil)
	_ jobs.TypePauser = (*Store)(nil)
	_ jobs.Snoozer    = (*Store)(nil)
)

const scheduleCols = `name, type, payload, labels, max_attempts, cron, time_zone, every_us, missed, paused, from_config,
	next_time, last_time, last_job_id, create_time, update_time`

func scanSchedule(row pgx.Row) (*jobs.Schedule, error) {
	var (
		s                    jobs.Schedule
		labels               []byte
		missed               string
		every                int64
		next, create, update time.Time
		last                 *time.Time
		payload              []byte
	)
	if err := row.Scan(&s.Name, &s.Type, &payload, &labels, &s.MaxAttempts, &s.Cron, &s.TimeZone, &every, &missed, &s.Paused, &s.FromConfig,
		&next, &last, &s.LastJobID, &create, &update); err != nil {
		return nil, err
	}
	var err error
	if s.Labels, err = storekit.DecodeLabels(pkg, string(labels)); err != nil {
		return nil, err
	}
	s.Payload = storekit.Bytes(payload)
	s.Every = time.Duration(every) * time.Microsecond
	s.Missed = jobs.Missed(missed)
	s.NextTime, s.LastTime = storekit.Round(next), ptrTime(last)
	s.CreateTime, s.UpdateTime = storekit.Round(create), storekit.Round(update)
	return &s, nil
}

func (s *Store) putSchedule(ctx context.Context, method string, sc jobs.Schedule, replace bool) (*jobs.Schedule, error) {
	if err := s.checkOpen(method); err != nil {
		return nil, err
	}
	sc, err := storekit.NewSchedule(pkg, method, sc)
	if err != nil {
		return nil, err
	}
	sc.FromConfig = replace
	conflict := `DO NOTHING`
	if replace {
		conflict = `DO UPDATE SET type = excluded.type, payload = excluded.payload, labels = excluded.labels,
			max_attempts = excluded.max_attempts, missed = excluded.missed, from_config = true,
			next_time = CASE WHEN schedules.cron = excluded.cron AND schedules.time_zone = excluded.time_zone
				AND schedules.every_us = excluded.every_us THEN schedules.next_time ELSE excluded.next_time END,
			cron = excluded.cron, time_zone = excluded.time_zone, every_us = excluded.every_us, update_time = excluded.update_time`
	}
	now := s.now()
	out, err := scanSchedule(s.pool.QueryRow(ctx, `INSERT INTO schedules (name, type, payload, labels, max_attempts, cron, time_zone, every_us,
			missed, paused, from_config, next_time, create_time, update_time)
		VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13) ON CONFLICT (name) `+conflict+` RETURNING `+scheduleCols,
		sc.Name, sc.Type, sc.Payload, labelsArg(sc.Labels), sc.MaxAttempts, sc.Cron, sc.TimeZone, sc.Every.Microseconds(),
		string(sc.Missed), sc.Paused, sc.FromConfig, sc.NextTime, now))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%s: %s: schedule %s: %w", pkg, method, storekit.Clip(sc.Name), jobs.ErrExists)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %s: schedule %s: %w", pkg, method, storekit.Clip(sc.Name), err)
	}
	return out, nil
}

// CreateSchedule implements jobs.Schedules.
func (s *Store) CreateSchedule(ctx context.Context, sc jobs.Schedule) (*jobs.Schedule, error) {
	return s.putSchedule(ctx, "CreateSchedule", sc, false)
}

// PutSchedule implements jobs.Schedules.
func (s *Store) PutSchedule(ctx context.Context, sc jobs.Schedule) (*jobs.Schedule, error) {
	return s.putSchedule(ctx, "PutSchedule", sc, true)
}

// GetSchedule implements jobs.Schedules.
func (s *Store) GetSchedule(ctx context.Context, name string) (*jobs.Schedule, error) {
	if err := s.checkOpen("GetSchedule"); err != nil {
		return nil, err
	}
	if err := storekit.CheckName(pkg, "GetSchedule", name); err != nil {
		return nil, err
	}
	sc, err := scanSchedule(s.pool.QueryRow(ctx, `SELECT `+scheduleCols+` FROM schedules WHERE name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%s: schedule %s: %w", pkg, storekit.Clip(name), jobs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: get schedule %s: %w", pkg, storekit.Clip(name), err)
	}
	return sc, nil
}

// ListSchedules implements jobs.Schedules.
func (s *Store) ListSchedules(ctx context.Context) ([]*jobs.Schedule, error) {
	if err := s.checkOpen("ListSchedules"); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT `+scheduleCols+` FROM schedules ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("%s: list schedules: %w", pkg, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*jobs.Schedule, error) { return scanSchedule(r) })
	if err != nil {
		return nil, fmt.Errorf("%s: list schedules: %w", pkg, err)
	}
	return out, nil
}

// PauseSchedule implements jobs.Schedules.
func (s *Store) PauseSchedule(ctx context.Context, name string, paused bool, next time.Time) (*jobs.Schedule, error) {
	if err := s.checkOpen("PauseSchedule"); err != nil {
		return nil, err
	}
	if err := storekit.CheckName(pkg, "PauseSchedule", name); err != nil {
		return nil, err
	}
	sc, err := scanSchedule(s.pool.QueryRow(ctx, `UPDATE schedules SET paused = $1, next_time = coalesce($2, next_time), update_time = $3
		WHERE name = $4 RETURNING `+scheduleCols, paused, tsArg(storekit.Round(next)), s.now(), name))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%s: schedule %s: %w", pkg, storekit.Clip(name), jobs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: pause schedule %s: %w", pkg, storekit.Clip(name), err)
	}
	return sc, nil
}

// DeleteSchedule implements jobs.Schedules.
func (s *Store) DeleteSchedule(ctx context.Context, name string) error {
	if err := s.checkOpen("DeleteSchedule"); err != nil {
		return err
	}
	if err := storekit.CheckName(pkg, "DeleteSchedule", name); err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM schedules WHERE name = $1`, name)
	if err != nil {
		return fmt.Errorf("%s: delete schedule %s: %w", pkg, storekit.Clip(name), err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%s: schedule %s: %w", pkg, storekit.Clip(name), jobs.ErrNotFound)
	}
	return nil
}

// FireSchedule implements jobs.Schedules, in one statement: the
// conditional update of the schedule, and the job and its outbox entry only
// when it applied.
func (s *Store) FireSchedule(ctx context.Context, p jobs.FireParams) (*jobs.Job, bool, error) {
	p, err := storekit.CheckFire(pkg, p)
	if err != nil {
		return nil, false, err
	}
	now := s.now()
	var (
		fired bool
		id    *string
		q     string
		args  []any
	)
	const advance = `UPDATE schedules SET next_time = $14, last_time = $15,
			last_job_id = CASE WHEN $16 THEN $1 ELSE last_job_id END, update_time = $8
		WHERE name = $17 AND next_time = $15 AND NOT paused RETURNING name`
	j := p.Job
	due := now
	if j.RunAfter.After(due) {
		due = j.RunAfter
	}
	args = append(insertArgs(j, now), due, p.Next, p.Tick, j.Type != "", p.Name)
	if j.Type == "" {
		q = `WITH s AS (UPDATE schedules SET next_time = $1, last_time = $2, update_time = $3
				WHERE name = $4 AND next_time = $2 AND NOT paused RETURNING name)
			SELECT (SELECT count(*) FROM s) > 0, NULL::text`
		args = []any{p.Next, p.Tick, now, p.Name}
	} else {
		// The job holds its idempotency key (job_keys) as an enqueue's does,
		// for as long as it is kept; a key held by another job makes the
		// tick fire without a job (enqueueSQL's takeover rules).
		q = `WITH s AS (` + advance + `),
			k AS (INSERT INTO job_keys AS h (type, key, job_id, held_until, while_active)
				SELECT $2::text, $6::text, $1::text, NULL::timestamptz, false FROM s
				WHERE $6::text <> '' AND NOT EXISTS (SELECT 1 FROM jobs WHERE id = $1::text)
				ON CONFLICT (type, key) DO UPDATE SET job_id = excluded.job_id, held_until = excluded.held_until, while_active = excluded.while_active
				WHERE h.held_until <= $8::timestamptz OR (h.while_active AND EXISTS (SELECT 1 FROM jobs a WHERE a.id = h.job_id AND a.state IN ` + terminal + `))
				RETURNING job_id),
			j AS (INSERT INTO jobs (id, type, state, max_attempts, payload, labels, idempotency_key, run_after, create_time, update_time,
					seen_time, trace_parent, trace_state, ordering_key, timeout_us)
				SELECT $1::text, $2::text, 'QUEUED', $3::int, $4::bytea, $5::jsonb, $6::text, $7::timestamptz, $8::timestamptz, $8, $8,
					$9::text, $10::text, $11::text, $12::bigint FROM s
				WHERE $6::text = '' OR EXISTS (SELECT 1 FROM k)
				ON CONFLICT DO NOTHING RETURNING id, ordering_key),
			o AS (INSERT INTO outbox (job_id, due, created, ordering_key)
				SELECT id, ` + keyDue("$13::timestamptz", "j.ordering_key") + `, $8, ordering_key FROM j)
			SELECT (SELECT count(*) FROM s) > 0, (SELECT id FROM j)`
	}
	scan := func(row pgx.Row) error {
		fired, id = false, nil
		return row.Scan(&fired, &id)
	}
	count := func(t *storekit.Tally) {
		if id != nil {
			t.Move(j.Type, "", jobs.Queued, now)
		}
	}
	if err := s.write(ctx, "FireSchedule", j.ID, q, args, scan, count); err != nil {
		return nil, false, err
	}
	if id == nil {
		return nil, fired, nil
	}
	s.hub.Notify(*id)
	out, err := s.lookup(ctx, `id = $1`, *id)
	if err != nil {
		return nil, fired, err
	}
	return out, fired, nil
}

// PauseType implements jobs.TypePauser.
func (s *Store) PauseType(ctx context.Context, typ string) (jobs.PausedType, error) {
	if err := s.checkOpen("PauseType"); err != nil {
		return jobs.PausedType{}, err
	}
	if err := storekit.CheckType(pkg, "PauseType", typ); err != nil {
		return jobs.PausedType{}, err
	}
	var since time.Time
	err := s.pool.QueryRow(ctx, `INSERT INTO paused_types (type, since) VALUES ($1, $2)
		ON CONFLICT (type) DO UPDATE SET since = paused_types.since RETURNING since`, typ, s.now()).Scan(&since)
	if err != nil {
		return jobs.PausedType{}, fmt.Errorf("%s: pause type %s: %w", pkg, storekit.Clip(typ), err)
	}
	return jobs.PausedType{Type: typ, Since: storekit.Round(since)}, nil
}

// ResumeType implements jobs.TypePauser.
func (s *Store) ResumeType(ctx context.Context, typ string) (bool, error) {
	if err := s.checkOpen("ResumeType"); err != nil {
		return false, err
	}
	if err := storekit.CheckType(pkg, "ResumeType", typ); err != nil {
		return false, err
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM paused_types WHERE type = $1`, typ)
	if err != nil {
		return false, fmt.Errorf("%s: resume type %s: %w", pkg, storekit.Clip(typ), err)
	}
	return tag.RowsAffected() > 0, nil
}

// PausedTypes implements jobs.TypePauser.
func (s *Store) PausedTypes(ctx context.Context) ([]jobs.PausedType, error) {
	if err := s.checkOpen("PausedTypes"); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT type, since FROM paused_types ORDER BY type`)
	if err != nil {
		return nil, fmt.Errorf("%s: paused types: %w", pkg, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (jobs.PausedType, error) {
		var p jobs.PausedType
		err := r.Scan(&p.Type, &p.Since)
		p.Since = storekit.Round(p.Since)
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: paused types: %w", pkg, err)
	}
	return out, nil
}

// Snooze implements jobs.Snoozer: the job and its outbox entry in one
// statement.
func (s *Store) Snooze(ctx context.Context, p jobs.SnoozeParams) (*jobs.Job, error) {
	if err := storekit.CheckSnooze(pkg, p); err != nil {
		return nil, err
	}
	now := s.now()
	until := storekit.Round(p.Until)
	j, err := s.update(ctx, "Snooze", p.ID, p.Lease, now, `WITH u AS (
			UPDATE jobs SET prev_state = state, state = 'QUEUED',
				attempt = CASE WHEN $2 THEN attempt ELSE greatest(attempt - 1, 0) END, error_code = $3, error_message = $4,
				run_after = $5, update_time = $6, seen_time = $6, lease = '', lease_expiry = NULL
			WHERE id = $1 AND state = 'RUNNING' AND lease = $7
				AND NOT EXISTS (SELECT 1 FROM outbox b WHERE b.job_id = $1 AND b.claim_owner <> '' AND b.claim_until > $6)
			RETURNING `+colsPrev+`),
		o AS (INSERT INTO outbox (job_id, due, created, ordering_key)
			SELECT id, `+keyDue("$5::timestamptz", "u.ordering_key")+`, $6, ordering_key FROM u
			ON CONFLICT (job_id) DO UPDATE SET due = excluded.due, claim_owner = '', claim_until = NULL)
		SELECT `+colsPrev+` FROM u`, p.ID, p.CountAttempt, p.Code, storekit.Message(p.Message), until, now, p.Lease)
	if err != nil && j != nil && j.State == jobs.Running && j.Lease == p.Lease {
		// Refused while running under the caller's lease: the claim.
		return nil, fmt.Errorf("%s: Snooze job %s: %w", pkg, p.ID, jobs.ErrOutboxBusy)
	}
	return j, err
}
