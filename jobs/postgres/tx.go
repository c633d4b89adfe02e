package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/internal/storekit"
	"github.com/jackc/pgx/v5"
)

// EnqueueTx records a job as Store.Enqueue does (the job, its outbox entry,
// its hold on its idempotency key, the counters, the change notification)
// in the caller's transaction tx, on the courier tables in schema (the
// Config.Schema of the courier deployment; "" means "public", as Config's).
// It is for applications that share courier's PostgreSQL database: the job
// is committed with the application's own writes, or rolled back with
// them, like River's InsertTx. Once tx commits, any courier replica's
// outbox relay publishes the job (within its poll interval).
//
// The schema must have been migrated (a courier Store opened on it once).
// tx's search_path is changed for the statements of EnqueueTx only and put
// back after. Until tx ends it holds the row locks of its writes: another
// enqueue with the same idempotency key waits for it, so keep such
// transactions short. An error (other than a duplicate, which is not one)
// leaves tx aborted, as any failed statement does.
//
// EnqueueTx checks the job as Enqueue does but knows nothing of job types:
// Type must name a type that courier's workers handle, and Payload must be
// a valid message of it (client/pgtx checks what it can from a
// proto.Message).
func EnqueueTx(ctx context.Context, tx pgx.Tx, schema string, p jobs.EnqueueParams) (job *jobs.Job, duplicate bool, err error) {
	if schema == "" {
		schema = "public"
	}
	if !schemaRE.MatchString(schema) {
		return nil, false, storekit.Invalid(pkg, "EnqueueTx: schema %q is not a plain schema name: pass the Config.Schema of the courier deployment (lower-case letters, digits and '_')", storekit.Clip(schema))
	}
	j, err := storekit.NewJob(pkg, "EnqueueTx", p.Job, false)
	if err != nil {
		return nil, false, err
	}
	if err := storekit.CheckUnique(pkg, "EnqueueTx", p); err != nil {
		return nil, false, err
	}
	p.Job = j
	var old string
	if err := tx.QueryRow(ctx, `SELECT current_setting('search_path')`).Scan(&old); err != nil {
		return nil, false, fmt.Errorf("%s: EnqueueTx: read search_path: %w", pkg, err)
	}
	if _, err := tx.Exec(ctx, `SELECT set_config('search_path', $1, true)`, pgx.Identifier{schema}.Sanitize()); err != nil {
		return nil, false, fmt.Errorf("%s: EnqueueTx: set search_path: %w", pkg, err)
	}
	defer func() {
		if err == nil {
			if _, rerr := tx.Exec(ctx, `SELECT set_config('search_path', $1, true)`, old); rerr != nil {
				err = fmt.Errorf("%s: EnqueueTx: put search_path back: %w", pkg, rerr)
			}
		}
	}()
	now := storekit.Round(time.Now())
	out, err := scanJob(tx.QueryRow(ctx, enqueueJob, enqueueArgs(p, now, true)...))
	if errors.Is(err, pgx.ErrNoRows) {
		if j.IdempotencyKey != "" {
			held, herr := scanJob(tx.QueryRow(ctx, `SELECT `+cols+` FROM jobs WHERE `+keyHolder, j.Type, j.IdempotencyKey, now))
			if herr == nil {
				return held, true, nil
			}
			if !errors.Is(herr, pgx.ErrNoRows) {
				return nil, false, fmt.Errorf("%s: EnqueueTx: read the holder of the idempotency key: %w", pkg, herr)
			}
		}
		return nil, false, fmt.Errorf("%s: EnqueueTx: job ID %s is taken by another job: %w", pkg, j.ID, jobs.ErrConflict)
	}
	if err != nil {
		return nil, false, fmt.Errorf("%s: EnqueueTx: %w (is schema %s a courier job store? open a Store on it once to migrate it)", pkg, err, schema)
	}
	var t storekit.Tally
	t.Move(out.Type, "", jobs.Queued, now)
	b := &pgx.Batch{}
	queueTally(b, &t, rand.IntN(counterShards))
	for _, pl := range notifyPayloads([]string{out.ID}) {
		b.Queue(`SELECT pg_notify($1, $2)`, "courier_jobs:"+schema, pl)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, false, fmt.Errorf("%s: EnqueueTx: update counters: %w", pkg, err)
	}
	return out, false, nil
}
