package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/postgres"
)

// TestEnqueueTx: a job enqueued in an application's transaction is
// invisible until the commit and gone with a rollback (job, outbox entry,
// counters, idempotency key); the transaction's own search_path is left as
// it was.
func TestEnqueueTx(t *testing.T) {
	ctx := context.Background()
	s := open(t).(*postgres.Store)
	schema := s.Config().Schema
	pool, err := pgxpool.New(ctx, testURL())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS public.enqueue_tx_app (id text PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	job := jobs.Job{ID: "tx-job-1", Type: "test.v1.Tx", Payload: []byte("p"), IdempotencyKey: "order-1", Labels: map[string]string{"app": "shop"}}

	// Rolled back: nothing is left.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	j, dup, err := postgres.EnqueueTx(ctx, tx, schema, jobs.EnqueueParams{Job: job})
	if err != nil || dup || j.State != jobs.Queued {
		t.Fatalf("EnqueueTx: %+v %v %v", j, dup, err)
	}
	var path string
	if err := tx.QueryRow(ctx, `SELECT current_setting('search_path')`).Scan(&path); err != nil || strings.Contains(path, schema) {
		t.Fatalf("search_path after EnqueueTx = %q, %v; want the transaction's own", path, err)
	}
	if _, err := s.Get(ctx, j.ID); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("Get before the commit: %v, want not found", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, j.ID); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("Get after the rollback: %v, want not found", err)
	}
	if n, _, err := s.OutboxStats(ctx); err != nil || n != 0 {
		t.Fatalf("outbox after the rollback: %d %v", n, err)
	}
	if c, err := s.Counts(ctx); err != nil || len(c) != 0 {
		t.Fatalf("Counts after the rollback: %v %v", c, err)
	}

	// Committed with the application's own row: both are there.
	changed, cancel := s.Subscribe(job.ID)
	defer cancel()
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO public.enqueue_tx_app (id) VALUES ($1)`, "order-1"); err != nil {
			return err
		}
		j, dup, err = postgres.EnqueueTx(ctx, tx, schema, jobs.EnqueueParams{Job: job})
		if err != nil || dup {
			t.Errorf("EnqueueTx: %v %v", dup, err)
		}
		// A duplicate in the same transaction.
		again, dup, err := postgres.EnqueueTx(ctx, tx, schema, jobs.EnqueueParams{Job: job})
		if err != nil || !dup || again.ID != j.ID {
			t.Errorf("second EnqueueTx with the key: %+v %v %v", again, dup, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Exec(ctx, `DELETE FROM public.enqueue_tx_app WHERE id = 'order-1'`)
	select { // the commit notified the store's watchers
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("no change notification after the commit")
	}
	got, err := s.Get(ctx, j.ID)
	if err != nil || got.State != jobs.Queued || got.Labels["app"] != "shop" {
		t.Fatalf("Get after the commit: %+v %v", got, err)
	}
	entries, err := s.ClaimOutbox(ctx, jobs.ClaimOutboxParams{Limit: 10, Owner: "test", LeaseFor: time.Minute})
	if err != nil || len(entries) != 1 || entries[0].JobID != j.ID {
		t.Fatalf("outbox after the commit: %v %v", entries, err)
	}
	c, err := s.Counts(ctx)
	if err != nil || len(c) != 1 || c[0].States[jobs.Queued] != 1 {
		t.Fatalf("Counts after the commit: %v %v", c, err)
	}
	// The key is held, for Store.Enqueue too.
	if _, dup, err := s.Enqueue(ctx, jobs.EnqueueParams{Job: job}); err != nil || !dup {
		t.Fatalf("Enqueue with the key after EnqueueTx: %v %v", dup, err)
	}

	// Bad input names what is wrong.
	tx, err = pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, _, err := postgres.EnqueueTx(ctx, tx, "no such; schema", jobs.EnqueueParams{Job: job}); !errors.Is(err, jobs.ErrInvalidArgument) || !strings.Contains(err.Error(), "schema") {
		t.Fatalf("bad schema: %v", err)
	}
	if _, _, err := postgres.EnqueueTx(ctx, tx, schema, jobs.EnqueueParams{Job: jobs.Job{}}); !errors.Is(err, jobs.ErrInvalidArgument) || !strings.Contains(err.Error(), "Type") {
		t.Fatalf("no type: %v", err)
	}
}
