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

// The job controls (jobs.Schedules, jobs.TypePauser, jobs.Snoozer): rare
// writes, so plain statements through the writer rather than prepared ones.

var (
	_ jobs.Schedules  = (*Store)(nil)
	_ jobs.TypePauser = (*Store)(nil)
	_ jobs.Snoozer    = (*Store)(nil)
)

const scheduleCols = `name, type, payload, labels, max_attempts, cron, time_zone, every_us, missed, paused, from_config,
	next_time, last_time, last_job_id, create_time, update_time`

func scanSchedule(row scanner) (*jobs.Schedule, error) {
	var (
		s                            jobs.Schedule
		labels, missed               string
		every, next, create, update  int64
		last                         sql.NullInt64
		paused, fromConfig, maxAttem int64
		payload                      []byte
	)
	if err := row.Scan(&s.Name, &s.Type, &payload, &labels, &maxAttem, &s.Cron, &s.TimeZone, &every, &missed, &paused, &fromConfig,
		&next, &last, &s.LastJobID, &create, &update); err != nil {
		return nil, err
	}
	var err error
	if s.Labels, err = storekit.DecodeLabels(pkg, labels); err != nil {
		return nil, err
	}
	s.Payload = storekit.Bytes(payload)
	s.MaxAttempts = int(maxAttem)
	s.Every = time.Duration(every) * time.Microsecond
	s.Missed = jobs.Missed(missed)
	s.Paused, s.FromConfig = paused != 0, fromConfig != 0
	s.NextTime, s.LastTime = storekit.FromMicros(next), nullTime(last)
	s.CreateTime, s.UpdateTime = storekit.FromMicros(create), storekit.FromMicros(update)
	return &s, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// putSchedule inserts sc, or (replace) updates the definition of the one
// of its name. It returns nil when create found the name taken.
func (s *Store) putSchedule(ctx context.Context, method string, sc jobs.Schedule, replace bool) (*jobs.Schedule, error) {
	sc, err := storekit.NewSchedule(pkg, method, sc)
	if err != nil {
		return nil, err
	}
	sc.FromConfig = replace
	conflict := `DO NOTHING`
	if replace {
		conflict = `DO UPDATE SET type = excluded.type, payload = excluded.payload, labels = excluded.labels,
			max_attempts = excluded.max_attempts, missed = excluded.missed, from_config = 1,
			next_time = CASE WHEN cron = excluded.cron AND time_zone = excluded.time_zone AND every_us = excluded.every_us
				THEN next_time ELSE excluded.next_time END,
			cron = excluded.cron, time_zone = excluded.time_zone, every_us = excluded.every_us, update_time = excluded.update_time`
	}
	var out *jobs.Schedule
	err = s.write(ctx, method, false, func(w *wtx) error {
		now := s.now().UnixMicro()
		row := w.tx.QueryRowContext(w.ctx, `INSERT INTO schedules (name, type, payload, labels, max_attempts, cron, time_zone, every_us,
				missed, paused, from_config, next_time, create_time, update_time)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) `+conflict+` RETURNING `+scheduleCols,
			sc.Name, sc.Type, sc.Payload, storekit.EncodeLabels(sc.Labels), sc.MaxAttempts, sc.Cron, sc.TimeZone, sc.Every.Microseconds(),
			string(sc.Missed), b2i(sc.Paused), b2i(sc.FromConfig), sc.NextTime.UnixMicro(), now, now)
		got, err := scanSchedule(row)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%s: %s: schedule %s: %w", pkg, method, storekit.Clip(sc.Name), jobs.ErrExists)
		}
		if err != nil {
			return fmt.Errorf("%s: %s: schedule %s: %w", pkg, method, storekit.Clip(sc.Name), err)
		}
		out = got
		return nil
	})
	return out, err
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
	sc, err := scanSchedule(s.rdb.QueryRowContext(ctx, `SELECT `+scheduleCols+` FROM schedules WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
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
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+scheduleCols+` FROM schedules ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("%s: list schedules: %w", pkg, err)
	}
	defer rows.Close()
	var out []*jobs.Schedule
	for rows.Next() {
		sc, err := scanSchedule(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: list schedules: %w", pkg, err)
		}
		out = append(out, sc)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: list schedules: %w", pkg, err)
	}
	return out, nil
}

// PauseSchedule implements jobs.Schedules.
func (s *Store) PauseSchedule(ctx context.Context, name string, paused bool, next time.Time) (*jobs.Schedule, error) {
	if err := storekit.CheckName(pkg, "PauseSchedule", name); err != nil {
		return nil, err
	}
	var out *jobs.Schedule
	err := s.write(ctx, "PauseSchedule", false, func(w *wtx) error {
		row := w.tx.QueryRowContext(w.ctx, `UPDATE schedules SET paused = ?1, next_time = coalesce(?2, next_time), update_time = ?3
			WHERE name = ?4 RETURNING `+scheduleCols, b2i(paused), micros(storekit.Round(next)), s.now().UnixMicro(), name)
		sc, err := scanSchedule(row)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%s: schedule %s: %w", pkg, storekit.Clip(name), jobs.ErrNotFound)
		}
		out = sc
		return err
	})
	return out, err
}

// DeleteSchedule implements jobs.Schedules.
func (s *Store) DeleteSchedule(ctx context.Context, name string) error {
	if err := storekit.CheckName(pkg, "DeleteSchedule", name); err != nil {
		return err
	}
	return s.write(ctx, "DeleteSchedule", false, func(w *wtx) error {
		res, err := w.tx.ExecContext(w.ctx, `DELETE FROM schedules WHERE name = ?`, name)
		if err != nil {
			return fmt.Errorf("%s: delete schedule %s: %w", pkg, storekit.Clip(name), err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%s: schedule %s: %w", pkg, storekit.Clip(name), jobs.ErrNotFound)
		}
		return nil
	})
}

// FireSchedule implements jobs.Schedules.
func (s *Store) FireSchedule(ctx context.Context, p jobs.FireParams) (*jobs.Job, bool, error) {
	p, err := storekit.CheckFire(pkg, p)
	if err != nil {
		return nil, false, err
	}
	var (
		out   *jobs.Job
		fired bool
	)
	err = s.write(ctx, "FireSchedule", true, func(w *wtx) error {
		now := s.now()
		res, err := w.tx.ExecContext(w.ctx, `UPDATE schedules SET next_time = ?1, last_time = ?2,
				last_job_id = CASE WHEN ?3 = '' THEN last_job_id ELSE ?3 END, update_time = ?4
			WHERE name = ?5 AND next_time = ?2 AND paused = 0`,
			p.Next.UnixMicro(), p.Tick.UnixMicro(), jobID(p), now.UnixMicro(), p.Name)
		if err != nil {
			return fmt.Errorf("%s: FireSchedule %s: %w", pkg, storekit.Clip(p.Name), err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		fired = true
		if p.Job.Type == "" {
			return nil
		}
		// The job holds its idempotency key as an enqueue's does; a key held
		// by another job makes the tick fire without a job.
		got, dup, err := s.enqueue(w, "FireSchedule", jobs.EnqueueParams{Job: p.Job}, true, now)
		if err == nil && !dup {
			out = got
		}
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return out, fired, nil
}

// jobID is the job a fire enqueues, "" for a skip.
func jobID(p jobs.FireParams) string {
	if p.Job.Type == "" {
		return ""
	}
	return p.Job.ID
}

// PauseType implements jobs.TypePauser.
func (s *Store) PauseType(ctx context.Context, typ string) (jobs.PausedType, error) {
	if err := storekit.CheckType(pkg, "PauseType", typ); err != nil {
		return jobs.PausedType{}, err
	}
	var out jobs.PausedType
	err := s.write(ctx, "PauseType", false, func(w *wtx) error {
		var since int64
		err := w.tx.QueryRowContext(w.ctx, `INSERT INTO paused_types (type, since) VALUES (?1, ?2)
			ON CONFLICT (type) DO UPDATE SET since = since RETURNING since`, typ, s.now().UnixMicro()).Scan(&since)
		if err != nil {
			return fmt.Errorf("%s: pause type %s: %w", pkg, storekit.Clip(typ), err)
		}
		out = jobs.PausedType{Type: typ, Since: storekit.FromMicros(since)}
		return nil
	})
	return out, err
}

// ResumeType implements jobs.TypePauser.
func (s *Store) ResumeType(ctx context.Context, typ string) (bool, error) {
	if err := storekit.CheckType(pkg, "ResumeType", typ); err != nil {
		return false, err
	}
	var resumed bool
	err := s.write(ctx, "ResumeType", false, func(w *wtx) error {
		res, err := w.tx.ExecContext(w.ctx, `DELETE FROM paused_types WHERE type = ?`, typ)
		if err != nil {
			return fmt.Errorf("%s: resume type %s: %w", pkg, storekit.Clip(typ), err)
		}
		n, _ := res.RowsAffected()
		resumed = n > 0
		return nil
	})
	return resumed, err
}

// PausedTypes implements jobs.TypePauser.
func (s *Store) PausedTypes(ctx context.Context) ([]jobs.PausedType, error) {
	if err := s.checkOpen("PausedTypes"); err != nil {
		return nil, err
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT type, since FROM paused_types ORDER BY type`)
	if err != nil {
		return nil, fmt.Errorf("%s: paused types: %w", pkg, err)
	}
	defer rows.Close()
	var out []jobs.PausedType
	for rows.Next() {
		var (
			t     string
			since int64
		)
		if err := rows.Scan(&t, &since); err != nil {
			return nil, fmt.Errorf("%s: paused types: %w", pkg, err)
		}
		out = append(out, jobs.PausedType{Type: t, Since: storekit.FromMicros(since)})
	}
	return out, rows.Err()
}

// Snooze implements jobs.Snoozer.
func (s *Store) Snooze(ctx context.Context, p jobs.SnoozeParams) (*jobs.Job, error) {
	if err := storekit.CheckSnooze(pkg, p); err != nil {
		return nil, err
	}
	until := storekit.Round(p.Until)
	var out *jobs.Job
	err := s.write(ctx, "Snooze", true, func(w *wtx) error {
		now := s.now()
		var busy int
		if err := w.tx.QueryRowContext(w.ctx, `SELECT count(*) FROM outbox WHERE job_id = ? AND claim_owner <> '' AND claim_until > ?`,
			p.ID, now.UnixMicro()).Scan(&busy); err != nil {
			return fmt.Errorf("%s: Snooze job %s: %w", pkg, p.ID, err)
		}
		if busy > 0 {
			return fmt.Errorf("%s: Snooze job %s: %w", pkg, p.ID, jobs.ErrOutboxBusy)
		}
		row := w.tx.QueryRowContext(w.ctx, `UPDATE jobs SET prev_state = state, state = 'QUEUED',
				attempt = CASE WHEN ?1 THEN attempt ELSE max(attempt - 1, 0) END, error_code = ?2, error_message = ?3,
				run_after = ?4, update_time = ?5, seen_time = ?5, lease = '', lease_expiry = NULL
			WHERE id = ?6 AND state = 'RUNNING' AND lease = ?7 RETURNING `+colsPrev,
			b2i(p.CountAttempt), p.Code, storekit.Message(p.Message), until.UnixMicro(), now.UnixMicro(), p.ID, p.Lease)
		j, prev, err := scanJobPrev(row, true)
		if errors.Is(err, sql.ErrNoRows) {
			out, err = s.refused(w, "Snooze", p.ID, p.Lease)
			return err
		}
		if err != nil {
			return fmt.Errorf("%s: Snooze job %s: %w", pkg, p.ID, err)
		}
		w.move(j.Type, prev, j.State, now)
		w.changed = append(w.changed, p.ID)
		out = j
		if _, err := w.tx.ExecContext(w.ctx, `INSERT INTO outbox (job_id, due, created, ordering_key) VALUES (?1, `+keyDue+`, ?3, ?4)
			ON CONFLICT (job_id) DO UPDATE SET due = excluded.due, claim_owner = '', claim_until = NULL`,
			p.ID, until.UnixMicro(), now.UnixMicro(), j.OrderingKey); err != nil {
			return fmt.Errorf("%s: Snooze: outbox entry of job %s: %w", pkg, p.ID, err)
		}
		return nil
	})
	if err != nil && out == nil {
		return nil, err
	}
	return out, err
}
