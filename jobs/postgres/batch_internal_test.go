package postgres

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/courierq/courier/jobs"
	"github.com/jackc/pgx/v5"
)

// TestBatchFailureIsolated sends many writes at once, one of which fails in
// PostgreSQL: the failed batch is retried statement by statement, so only
// that write reports an error and every other one applies.
func TestBatchFailureIsolated(t *testing.T) {
	url := os.Getenv("COURIER_TEST_POSTGRES_URL")
	if url == "" {
		url = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	ctx := context.Background()
	schema := fmt.Sprintf("jobstest_batch_%d", os.Getpid())
	s, err := Open(ctx, Config{URL: url, Schema: schema, Writers: 1})
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Open: %v", err)
		}
		t.Skipf("PostgreSQL not reachable: %v", err)
	}
	t.Cleanup(func() {
		s.Close()
		if conn, err := pgx.Connect(ctx, url); err == nil {
			conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
			conn.Close(ctx)
		}
	})
	const n = 200
	ids := make([]string, n)
	for i := range ids {
		j, _, err := s.Enqueue(ctx, jobs.EnqueueParams{Job: jobs.Job{Type: "test.v1.Batch"}})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = j.ID
	}
	var (
		wg      sync.WaitGroup
		errs    = make([]error, n)
		badErrs = make(chan error, 5)
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Start(ctx, jobs.StartParams{ID: ids[i], Attempt: 1, Lease: "bench", LeaseFor: time.Minute})
		}()
		if i%50 == 0 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				badErrs <- s.write(ctx, "Bad", "bad", `SELECT 1/0`, nil, func(row pgx.Row) error {
					var x int
					return row.Scan(&x)
				}, nil)
			}()
		}
	}
	wg.Wait()
	close(badErrs)
	for err := range badErrs {
		if err == nil {
			t.Fatal("a failing statement reported success")
		}
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Start %d beside a failing write: %v", i, err)
		}
	}
	list, _, err := s.List(ctx, jobs.ListParams{State: jobs.Running, PageSize: 1000})
	if err != nil || len(list) != n {
		t.Fatalf("List(Running) = %d jobs, %v; want %d", len(list), err, n)
	}
}

func TestNotifyPayloads(t *testing.T) {
	var ids []string
	for i := range 1000 {
		ids = append(ids, fmt.Sprintf("job-%04d-\"quoted\"\n", i))
	}
	ps := notifyPayloads(append(ids, ids[len(ids)-1])) // a repeated ID is sent once
	if len(ps) < 2 {
		t.Fatalf("%d IDs in %d payloads: want them split", len(ids), len(ps))
	}
	var got []string
	for _, p := range ps {
		if len(p) > maxPayload {
			t.Fatalf("payload of %d bytes, limit %d", len(p), maxPayload)
		}
		got = append(got, parsePayload(p)...)
	}
	if fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Fatalf("round trip lost or reordered IDs: got %d, want %d", len(got), len(ids))
	}
	if got := parsePayload("plain-id"); len(got) != 1 || got[0] != "plain-id" {
		t.Fatalf("parsePayload(plain) = %v", got)
	}
}
