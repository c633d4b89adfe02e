package postgres

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/internal/storekit"
	"github.com/jackc/pgx/v5"
)

// MarkSeen implements jobs.Store, in one statement.
func (s *Store) MarkSeen(ctx context.Context, ids []string) error {
	if err := s.checkOpen("MarkSeen"); err != nil {
		return err
	}
	if err := storekit.CheckIDs(pkg, "MarkSeen", ids, jobs.MaxBatchIDs); err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	sorted := slices.Compact(slices.Sorted(slices.Values(ids))) // one lock order
	if _, err := s.pool.Exec(ctx, `UPDATE jobs SET seen_time = $1 WHERE id = ANY($2) AND state = 'QUEUED'`, s.now(), sorted); err != nil {
		return fmt.Errorf("%s: MarkSeen: %w", pkg, err)
	}
	return nil
}

// activity is a QUEUED job's last sign of life, as the jobs_queued_activity
// index has it: Rescue's query must spell it exactly so.
const activity = `greatest(seen_time, run_after)`

// Rescue implements jobs.Store, in one transaction. Rows are locked with
// SKIP LOCKED: a job another transaction is changing is left for the next
// Rescue, and replicas rescuing at once never wait for each other.
func (s *Store) Rescue(ctx context.Context, p jobs.RescueParams) (jobs.RescueResult, error) {
	if err := s.checkOpen("Rescue"); err != nil {
		return jobs.RescueResult{}, err
	}
	if err := storekit.CheckRescue(pkg, p); err != nil {
		return jobs.RescueResult{}, err
	}
	var res jobs.RescueResult
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		res = jobs.RescueResult{}
		now := s.now()
		var tally storekit.Tally

		// Running jobs whose lease lapsed: back to Queued, republished.
		var ids, msgs []string
		rows, err := tx.Query(ctx, `SELECT id, attempt, lease_expiry FROM jobs
			WHERE state = 'RUNNING' AND lease_expiry < $1 ORDER BY lease_expiry LIMIT $2 FOR UPDATE SKIP LOCKED`,
			storekit.Round(p.LapsedBefore), p.Limit)
		if err != nil {
			return fmt.Errorf("find lapsed leases: %w", err)
		}
		var (
			id      string
			attempt int
			expiry  time.Time
		)
		_, err = pgx.ForEachRow(rows, []any{&id, &attempt, &expiry}, func() error {
			ids = append(ids, id)
			msgs = append(msgs, storekit.LapsedMessage(attempt, expiry))
			return nil
		})
		if err != nil {
			return fmt.Errorf("find lapsed leases: %w", err)
		}
		if len(ids) > 0 {
			rows, err := tx.Query(ctx, `WITH r AS (SELECT * FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS r(id, msg, i)),
				u AS (
					UPDATE jobs j SET prev_state = j.state, state = 'QUEUED', error_code = $3, error_message = r.msg,
						update_time = $4, seen_time = $4, lease = '', lease_expiry = NULL
					FROM r WHERE j.id = r.id AND j.state = 'RUNNING' RETURNING j.id, j.type, j.ordering_key, r.i),
				o AS (
					INSERT INTO outbox (job_id, due, created, ordering_key)
					SELECT id, `+keyDue("$4::timestamptz", "u.ordering_key")+`, $4, ordering_key FROM u ORDER BY i
					ON CONFLICT (job_id) DO UPDATE SET due = excluded.due, claim_owner = '', claim_until = NULL)
				SELECT id, type FROM u ORDER BY i`, ids, msgs, storekit.LapsedCode, now)
			if err != nil {
				return fmt.Errorf("release lapsed leases: %w", err)
			}
			var typ string
			_, err = pgx.ForEachRow(rows, []any{&id, &typ}, func() error {
				res.Released = append(res.Released, id)
				tally.Move(typ, jobs.Running, jobs.Queued, now)
				return nil
			})
			if err != nil {
				return fmt.Errorf("release lapsed leases: %w", err)
			}
		}

		// Queued jobs nothing is about to deliver: republished.
		rows, err = tx.Query(ctx, `WITH l AS (
				SELECT id, ordering_key, `+activity+` AS a FROM jobs
				WHERE state = 'QUEUED' AND `+activity+` < $1
					AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.job_id = jobs.id)
				ORDER BY `+activity+` LIMIT $2 FOR UPDATE SKIP LOCKED),
			o AS (
				INSERT INTO outbox (job_id, due, created, ordering_key)
				SELECT id, `+keyDue("$3::timestamptz", "l.ordering_key")+`, $3, ordering_key FROM l ORDER BY a
				ON CONFLICT (job_id) DO NOTHING),
			u AS (UPDATE jobs j SET seen_time = $3 FROM l WHERE j.id = l.id)
			SELECT id FROM l ORDER BY a`, storekit.Round(p.QueuedBefore), p.Limit, now)
		if err != nil {
			return fmt.Errorf("find lost jobs: %w", err)
		}
		if res.Requeued, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return fmt.Errorf("find lost jobs: %w", err)
		}

		b := &pgx.Batch{}
		queueTally(b, &tally, rand.IntN(counterShards))
		for _, pl := range notifyPayloads(res.Released) {
			b.Queue(`SELECT pg_notify($1, $2)`, s.channel, pl)
		}
		if b.Len() == 0 {
			return nil
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return jobs.RescueResult{}, fmt.Errorf("%s: Rescue: %w", pkg, err)
	}
	for _, id := range res.Released {
		s.hub.Notify(id)
	}
	return res, nil
}

// Counts implements jobs.Store: the counter shards summed, and the oldest
// Queued job of each type from the jobs_queued_type index.
func (s *Store) Counts(ctx context.Context) ([]jobs.TypeCounts, error) {
	if err := s.checkOpen("Counts"); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT c.type, c.state, c.n,
			CASE WHEN c.state = 'QUEUED' THEN (SELECT min(create_time) FROM jobs j WHERE j.type = c.type AND j.state = 'QUEUED') END
		FROM (SELECT type, state, sum(n)::bigint AS n FROM job_counts GROUP BY type, state) c
		WHERE c.n <> 0 ORDER BY c.type`)
	if err != nil {
		return nil, fmt.Errorf("%s: Counts: %w", pkg, err)
	}
	var (
		out        []jobs.TypeCounts
		typ, state string
		n          int
		oldest     *time.Time
	)
	_, err = pgx.ForEachRow(rows, []any{&typ, &state, &n, &oldest}, func() error {
		out = storekit.AddCount(out, typ, jobs.State(state), n, ptrTime(oldest))
		return nil
	})
	if err != nil {
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
	rows, err := s.pool.Query(ctx, `SELECT date_bin($1::interval, minute, timestamptz 'epoch') AS b, type,
			sum(succeeded)::bigint, sum(failed)::bigint
		FROM job_throughput WHERE minute >= $2 GROUP BY b, type ORDER BY b, type`,
		p.Step, storekit.Bucket(p.Since, p.Step))
	if err != nil {
		return nil, fmt.Errorf("%s: Throughput: %w", pkg, err)
	}
	var (
		out []jobs.ThroughputPoint
		pt  jobs.ThroughputPoint
	)
	_, err = pgx.ForEachRow(rows, []any{&pt.Time, &pt.Type, &pt.Succeeded, &pt.Failed}, func() error {
		if pt.Succeeded != 0 || pt.Failed != 0 {
			pt.Time = storekit.Round(pt.Time)
			out = append(out, pt)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: Throughput: %w", pkg, err)
	}
	return out, nil
}
