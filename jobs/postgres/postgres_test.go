package postgres_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/jobstest"
	"github.com/courierq/courier/jobs/postgres"
	"github.com/jackc/pgx/v5"
)

func testURL() string {
	if u := os.Getenv("COURIER_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// requirePostgres skips (or, under CI=true, fails) when PostgreSQL is not
// reachable.
func requirePostgres(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, testURL())
	if err == nil {
		conn.Close(ctx)
		return
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("PostgreSQL at %s is not reachable (CI=true, so this is a failure): %v", testURL(), err)
	}
	tb.Skipf("PostgreSQL at %s is not reachable (set COURIER_TEST_POSTGRES_URL): %v", testURL(), err)
}

var schemaSeq atomic.Int64

// open returns a store in a fresh schema, dropped on cleanup.
func open(tb testing.TB) jobs.Store { return openAt(tb, nil) }

// openAt is open with the store's clock now (nil: time.Now).
func openAt(tb testing.TB, now func() time.Time) jobs.Store {
	tb.Helper()
	requirePostgres(tb)
	schema := fmt.Sprintf("jobstest_%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9, schemaSeq.Add(1))
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, testURL())
		if err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return openConfig(tb, postgres.Config{URL: testURL(), Schema: schema, MaxConns: 8, Now: now})
}

func openConfig(tb testing.TB, cfg postgres.Config) *postgres.Store {
	tb.Helper()
	s, err := postgres.Open(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	requirePostgres(t)
	jobstest.Exercise(context.Background(), t, func(t *testing.T, now func() time.Time) jobs.Store { return openAt(t, now) }, jobstest.Features{
		NewPeer: func(t *testing.T, s jobs.Store) jobs.Store {
			return openConfig(t, s.(*postgres.Store).Config())
		},
	})
}

func BenchmarkStore(b *testing.B) {
	requirePostgres(b)
	jobstest.BenchmarkStore(b, func(tb testing.TB) jobs.Store {
		s := open(tb)
		return s
	})
}

func TestConfigValidation(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		cfg  postgres.Config
		want string
	}{
		{postgres.Config{}, "Config.URL"},
		{postgres.Config{URL: testURL(), Schema: "Bad-Name"}, "Config.Schema"},
		{postgres.Config{URL: testURL(), Schema: "x; DROP TABLE y"}, "Config.Schema"},
		{postgres.Config{URL: testURL(), MaxConns: -1}, "Config.MaxConns"},
		{postgres.Config{URL: testURL(), Writers: -1}, "Config.Writers"},
		{postgres.Config{URL: testURL(), MaxConns: 4, Writers: 4}, "Config.Writers"},
		{postgres.Config{URL: testURL(), MaxBatch: -1}, "Config.MaxBatch"},
		{postgres.Config{URL: testURL(), MaxConns: 1}, "Config.MaxConns"},
		{postgres.Config{URL: "mysql://nope"}, "Config.URL"},
	} {
		s, err := postgres.Open(ctx, tc.cfg)
		if err == nil {
			s.Close()
			t.Fatalf("Open(%+v) succeeded, want an error naming %s", tc.cfg, tc.want)
		}
		if !strings.HasPrefix(err.Error(), "jobs/postgres: ") || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("Open(%+v) = %q, want an error starting with the package and naming %s", tc.cfg, err, tc.want)
		}
	}
}

// TestConcurrentOpen opens several stores on one new schema at once, as
// replicas starting together do: the advisory lock lets exactly one apply
// each migration.
func TestConcurrentOpen(t *testing.T) {
	requirePostgres(t)
	first := open(t).(*postgres.Store)
	cfg := first.Config()
	cfg.Schema += "_c"
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), testURL())
		if err == nil {
			conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+cfg.Schema+" CASCADE")
			conn.Close(context.Background())
		}
	})
	const n = 4
	errs := make(chan error, n)
	for range n {
		go func() {
			s, err := postgres.Open(context.Background(), cfg)
			if err == nil {
				t.Cleanup(func() { s.Close() })
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent Open: %v", err)
		}
	}
	conn, err := pgx.Connect(context.Background(), testURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var versions, latest int
	if err := conn.QueryRow(context.Background(), "SELECT count(*), max(version) FROM "+cfg.Schema+".schema_migrations").Scan(&versions, &latest); err != nil {
		t.Fatal(err)
	}
	// One row per embedded migration (numbers may have gaps: branches
	// reserve theirs).
	files, err := filepath.Glob("migrations/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	if versions != len(files) || latest < 2 {
		t.Fatalf("schema_migrations has %d rows up to version %d, want one per migration (%d files, at least 2)", versions, latest, len(files))
	}
}

// TestListenerReconnects kills the store's listening connection: the store
// reconnects, wakes every watcher (changes may have been missed), and then
// sees changes made by another replica again.
func TestListenerReconnects(t *testing.T) {
	ctx := context.Background()
	s := open(t).(*postgres.Store)
	peer := openConfig(t, s.Config())
	changed, cancel := s.Subscribe("reconnect-1")
	defer cancel()
	// Enqueued through the peer, so that s learns of it only by listening:
	// once that wake has come, nothing else is pending.
	j, _, err := peer.Enqueue(ctx, jobs.EnqueueParams{Job: jobs.Job{ID: "reconnect-1", Type: "test.v1.Reconnect"}})
	if err != nil {
		t.Fatal(err)
	}
	awaitWake(t, "wake for the other replica's Enqueue", changed)

	conn, err := pgx.Connect(ctx, testURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var killed int
	err = conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = $1 AND query = $2`,
		postgres.ListenerApplicationName, `LISTEN `+pgx.Identifier{"courier_jobs:" + s.Config().Schema}.Sanitize()).Scan(&killed)
	if err != nil {
		t.Fatal(err)
	}
	if killed != 2 { // both replicas listen on the schema
		t.Fatalf("terminated %d listening connections of schema %s, want 2", killed, s.Config().Schema)
	}
	// The wake that follows the reconnect also tells that s listens again.
	awaitWake(t, "wake after the listener reconnected", changed)
	if _, err := peer.Start(ctx, jobs.StartParams{ID: j.ID, Attempt: 1, Lease: "l", LeaseFor: time.Minute}); err != nil {
		t.Fatal(err)
	}
	awaitWake(t, "wake for the other replica's change after reconnecting", changed)
}

func awaitWake(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no notification within 10s", what)
	}
}

// BenchmarkCounts measures Counts on a store of a million jobs, written by
// one INSERT ... SELECT (with the job events the triggers write), the
// counters then rebuilt from them.
func BenchmarkCounts(b *testing.B) {
	requirePostgres(b)
	jobstest.BenchmarkCounts(b, open, func(tb testing.TB, s jobs.Store, n int) {
		ctx := context.Background()
		cfg, err := pgx.ParseConfig(testURL())
		if err != nil {
			tb.Fatal(err)
		}
		cfg.RuntimeParams["search_path"] = s.(*postgres.Store).Config().Schema
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			tb.Fatal(err)
		}
		defer conn.Close(ctx)
		state := jobstest.SeedStateSQL("i")
		for i, q := range []string{
			`WITH s AS (SELECT i, ` + state + ` AS state FROM generate_series(0, $1 - 1) AS i)
			INSERT INTO jobs (id, type, state, attempt, payload, create_time, update_time, start_time, end_time, lease, lease_expiry)
			SELECT format('seed-%s', lpad(i::text, 8, '0')), 'bench.v1.T' || (i % ` + fmt.Sprint(jobstest.CountsTypes) + `), state,
				CASE WHEN state = 'QUEUED' THEN 0 ELSE 1 END, '\x0a0568656c6c6f'::bytea,
				$2::timestamptz + i * interval '1 microsecond', $2::timestamptz + i * interval '1 microsecond',
				CASE WHEN state <> 'QUEUED' THEN $2::timestamptz + i * interval '1 microsecond' END,
				CASE WHEN state IN ('SUCCEEDED', 'FAILED', 'CANCELLED') THEN $2::timestamptz + i * interval '1 microsecond' END,
				CASE WHEN state = 'RUNNING' THEN 'seed' ELSE '' END,
				CASE WHEN state = 'RUNNING' THEN $2::timestamptz + interval '1 hour' END
			FROM s`,
			`TRUNCATE job_counts`,
			`INSERT INTO job_counts (type, state, shard, n) SELECT type, state, 0, count(*) FROM jobs GROUP BY type, state`,
			`ANALYZE`,
		} {
			args := []any{n, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			if i > 0 {
				args = nil
			}
			if _, err := conn.Exec(ctx, q, args...); err != nil {
				tb.Fatalf("seed: %v", err)
			}
		}
	})
}
