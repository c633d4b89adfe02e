package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/internal/storekit"
)

// MarkSeen implements jobs.Store.
func (s *Store) MarkSeen(ctx context.Context, ids []string) error {
	if err := storekit.CheckIDs(pkg, "MarkSeen", ids, jobs.MaxBatchIDs); err != nil {
		return err
	}
	if len(ids) == 0 {
		return s.checkOpen("MarkSeen")
	}
	arg, _ := json.Marshal(ids)
	return s.write(ctx, "MarkSeen", false, func(w *wtx) error {
		if _, err := w.stmt(s.st.markSeen).Exec(s.now().UnixMicro(), string(arg)); err != nil {
			return fmt.Errorf("%s: MarkSeen: %w", pkg, err)
		}
		return nil
	})
}

// Rescue implements jobs.Store, in one write request (one transaction).
func (s *Store) Rescue(ctx context.Context, p jobs.RescueParams) (jobs.RescueResult, error) {
	if err := storekit.CheckRescue(pkg, p); err != nil {
		return jobs.RescueResult{}, err
	}
	var res jobs.RescueResult
	err := s.write(ctx, "Rescue", true, func(w *wtx) error {
		res = jobs.RescueResult{}
		now := s.now()
		us := now.UnixMicro()
		// Running jobs whose lease lapsed: back to Queued, republished.
		type lapsed struct {
			id      string
			attempt int
			expiry  int64
		}
		var ls []lapsed
		rows, err := w.stmt(s.st.lapsed).Query(storekit.Round(p.LapsedBefore).UnixMicro(), p.Limit)
		if err != nil {
			return fmt.Errorf("%s: Rescue: find lapsed leases: %w", pkg, err)
		}
		for rows.Next() {
			var l lapsed
			if err := rows.Scan(&l.id, &l.attempt, &l.expiry); err != nil {
				rows.Close()
				return fmt.Errorf("%s: Rescue: find lapsed leases: %w", pkg, err)
			}
			ls = append(ls, l)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("%s: Rescue: find lapsed leases: %w", pkg, err)
		}
		for _, l := range ls {
			msg := storekit.LapsedMessage(l.attempt, storekit.FromMicros(l.expiry))
			var typ, key string
			err := w.stmt(s.st.release1).QueryRow(storekit.LapsedCode, msg, us, l.id).Scan(&typ, &key)
			if errors.Is(err, sql.ErrNoRows) {
				continue
			}
			if err != nil {
				return fmt.Errorf("%s: Rescue: release job %s: %w", pkg, l.id, err)
			}
			if _, err := w.stmt(s.st.requeueOutbox).Exec(l.id, us, nil, key); err != nil {
				return fmt.Errorf("%s: Rescue: republish job %s: %w", pkg, l.id, err)
			}
			w.move(typ, jobs.Running, jobs.Queued, now)
			w.changed = append(w.changed, l.id)
			res.Released = append(res.Released, l.id)
		}
		// Queued jobs nothing is about to deliver: republished.
		rows, err = w.stmt(s.st.lost).Query(storekit.Round(p.QueuedBefore).UnixMicro(), p.Limit)
		if err != nil {
			return fmt.Errorf("%s: Rescue: find lost jobs: %w", pkg, err)
		}
		type lost struct{ id, key string }
		var lo []lost
		for rows.Next() {
			var l lost
			if err := rows.Scan(&l.id, &l.key); err != nil {
				rows.Close()
				return fmt.Errorf("%s: Rescue: find lost jobs: %w", pkg, err)
			}
			lo = append(lo, l)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("%s: Rescue: find lost jobs: %w", pkg, err)
		}
		for _, l := range lo {
			if _, err := w.stmt(s.st.requeueOutbox).Exec(l.id, us, nil, l.key); err != nil {
				return fmt.Errorf("%s: Rescue: republish job %s: %w", pkg, l.id, err)
			}
			if _, err := w.stmt(s.st.seen).Exec(us, l.id); err != nil {
				return fmt.Errorf("%s: Rescue: mark job %s seen: %w", pkg, l.id, err)
			}
			res.Requeued = append(res.Requeued, l.id)
		}
		return nil
	})
	if err != nil {
		return jobs.RescueResult{}, err
	}
	return res, nil
}

// Counts implements jobs.Store.
func (s *Store) Counts(ctx context.Context) ([]jobs.TypeCounts, error) {
	if err := s.checkOpen("Counts"); err != nil {
		return nil, err
	}
	rows, err := s.st.counts.QueryContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: Counts: %w", pkg, err)
	}
	defer rows.Close()
	var out []jobs.TypeCounts
	for rows.Next() {
		var (
			typ, state string
			n          int
			oldest     sql.NullInt64
		)
		if err := rows.Scan(&typ, &state, &n, &oldest); err != nil {
			return nil, fmt.Errorf("%s: Counts: %w", pkg, err)
		}
		out = storekit.AddCount(out, typ, jobs.State(state), n, nullTime(oldest))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: Counts: %w", pkg, err)
	}
	return out, nil
}

// Throughput implements jobs.Store.
func (s *Store) Throughput(ctx context.Context, p jobs.ThroughputParams) ([]jobs.ThroughputPoint, error) {
	if err := s.checkOpen("Throughput"); err != nil {
		return nil, err
	}
	if err := storekit.CheckThroughput(pkg, p); err != nil {
		return nil, err
	}
	rows, err := s.st.throughput.QueryContext(ctx, p.Step.Microseconds(), storekit.Bucket(p.Since, p.Step).UnixMicro())
	if err != nil {
		return nil, fmt.Errorf("%s: Throughput: %w", pkg, err)
	}
	defer rows.Close()
	var out []jobs.ThroughputPoint
	for rows.Next() {
		var (
			pt jobs.ThroughputPoint
			b  int64
		)
		if err := rows.Scan(&b, &pt.Type, &pt.Succeeded, &pt.Failed); err != nil {
			return nil, fmt.Errorf("%s: Throughput: %w", pkg, err)
		}
		if pt.Succeeded == 0 && pt.Failed == 0 {
			continue
		}
		pt.Time = storekit.FromMicros(b)
		out = append(out, pt)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: Throughput: %w", pkg, err)
	}
	return out, nil
}

var _ jobs.Deferrer = (*Store)(nil)

// Defer implements jobs.Deferrer, in one write request.
func (s *Store) Defer(ctx context.Context, id string, due time.Time) error {
	if err := storekit.CheckID(pkg, "Defer", id); err != nil {
		return err
	}
	var n int64
	err := s.write(ctx, "Defer", false, func(w *wtx) error {
		r, err := w.tx.ExecContext(w.ctx, `INSERT INTO outbox (job_id, due, created)
			SELECT id, ?2, ?3 FROM jobs WHERE id = ?1 AND state = 'QUEUED' AND ordering_key = ''
			ON CONFLICT (job_id) DO NOTHING`, id, storekit.Round(due).UnixMicro(), s.now().UnixMicro())
		if err != nil {
			return fmt.Errorf("%s: Defer %s: %w", pkg, id, err)
		}
		n, err = r.RowsAffected()
		return err
	})
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%s: Defer %s: the job is not QUEUED, has an ordering key, or already has an outbox entry: %w", pkg, id, jobs.ErrConflict)
	}
	return nil
}
