package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/jobstest"
	"github.com/courierq/courier/jobs/sqlite"
)

func open(tb testing.TB) jobs.Store { return openAt(tb, nil) }

// openAt opens a store in a temp dir whose clock is now (nil: time.Now).
func openAt(tb testing.TB, now func() time.Time) jobs.Store {
	tb.Helper()
	s, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(tb.TempDir(), "jobs.db"), Now: now})
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	jobstest.Exercise(context.Background(), t, func(t *testing.T, now func() time.Time) jobs.Store { return openAt(t, now) })
}

func BenchmarkStore(b *testing.B) {
	jobstest.BenchmarkStore(b, open)
}

func TestConfigValidation(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, tc := range []struct {
		cfg  sqlite.Config
		want string
	}{
		{sqlite.Config{Path: ":memory:"}, "Config.Path"},
		{sqlite.Config{Path: "file:x.db?mode=memory"}, "Config.Path"},
		{sqlite.Config{Path: filepath.Join(dir, "a.db"), BusyTimeout: -1}, "Config.BusyTimeout"},
		{sqlite.Config{Path: filepath.Join(dir, "a.db"), ReadConns: -1}, "Config.ReadConns"},
		{sqlite.Config{Path: filepath.Join(dir, "a.db"), MaxBatch: -1}, "Config.MaxBatch"},
	} {
		s, err := sqlite.Open(ctx, tc.cfg)
		if err == nil {
			s.Close()
			t.Fatalf("Open(%+v) succeeded, want an error naming %s", tc.cfg, tc.want)
		}
		if !strings.HasPrefix(err.Error(), "jobs/sqlite: ") || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("Open(%+v) = %q, want an error starting with the package and naming %s", tc.cfg, err, tc.want)
		}
	}
}

// TestReopen checks that jobs survive Close and that migrations are not
// applied twice.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sub", "jobs.db")
	s, err := sqlite.Open(ctx, sqlite.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	j, _, err := s.Enqueue(ctx, jobs.EnqueueParams{Job: jobs.Job{Type: "test.v1.Reopen", Payload: []byte("x")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := sqlite.Open(ctx, sqlite.Config{Path: path})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s2.Close()
	got, err := s2.Get(ctx, j.ID)
	if err != nil || got.Type != j.Type {
		t.Fatalf("Get after reopen = %+v, %v", got, err)
	}
	if _, err := s.Get(ctx, j.ID); !errors.Is(err, jobs.ErrClosed) {
		t.Fatalf("Get on the closed store = %v, want ErrClosed", err)
	}
}

// TestTwoStoresOneFile writes through two stores on one file at once, as two
// processes would: the write lock and busy timeout serialize them, and each
// reads the other's jobs.
func TestTwoStoresOneFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "jobs.db")
	var stores [2]*sqlite.Store
	for i := range stores {
		s, err := sqlite.Open(ctx, sqlite.Config{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores[i] = s
	}
	const perStore = 200
	errs := make(chan error, 2*perStore)
	for _, s := range stores {
		for range perStore {
			go func() {
				_, _, err := s.Enqueue(ctx, jobs.EnqueueParams{Job: jobs.Job{Type: "test.v1.Two"}})
				errs <- err
			}()
		}
	}
	for range 2 * perStore {
		if err := <-errs; err != nil {
			t.Fatalf("Enqueue: %v", err)
		}
	}
	for i, s := range stores {
		list, _, err := s.List(ctx, jobs.ListParams{PageSize: 1000})
		if err != nil || len(list) != 2*perStore {
			t.Fatalf("store %d lists %d jobs, %v; want %d", i, len(list), err, 2*perStore)
		}
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "jobs.db")
	s, err := sqlite.Open(ctx, sqlite.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, '0999_future.sql', 0)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err = sqlite.Open(ctx, sqlite.Config{Path: path})
	if err == nil {
		s.Close()
		t.Fatal("Open of a database from a newer build succeeded")
	}
	if !strings.Contains(err.Error(), "newer than this build") {
		t.Fatalf("Open = %v, want an error saying the schema is newer", err)
	}
}

// BenchmarkCounts measures Counts on a store of a million jobs, written by
// one INSERT ... SELECT on a second connection to the file (with the job
// events the triggers write), the counters then rebuilt from them.
func BenchmarkCounts(b *testing.B) {
	path := filepath.Join(b.TempDir(), "jobs.db")
	jobstest.BenchmarkCounts(b, func(tb testing.TB) jobs.Store {
		s, err := sqlite.Open(context.Background(), sqlite.Config{Path: path})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { s.Close() })
		return s
	}, func(tb testing.TB, _ jobs.Store, n int) {
		db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
		if err != nil {
			tb.Fatal(err)
		}
		defer db.Close()
		base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
		state := jobstest.SeedStateSQL("i")
		for i, q := range []string{
			`WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?1),
			s(i, state) AS (SELECT i, ` + state + ` FROM n)
			INSERT INTO jobs (id, type, state, attempt, payload, create_time, update_time, start_time, end_time, lease, lease_expiry)
			SELECT printf('seed-%08d', i), 'bench.v1.T' || (i % ` + fmt.Sprint(jobstest.CountsTypes) + `), state,
				CASE WHEN state = 'QUEUED' THEN 0 ELSE 1 END, x'0a0568656c6c6f', ?2 + i, ?2 + i,
				CASE WHEN state = 'QUEUED' THEN NULL ELSE ?2 + i END,
				CASE WHEN state IN ('SUCCEEDED', 'FAILED', 'CANCELLED') THEN ?2 + i END,
				CASE WHEN state = 'RUNNING' THEN 'seed' ELSE '' END,
				CASE WHEN state = 'RUNNING' THEN ?2 + i + 3600000000 END
			FROM s`,
			`DELETE FROM job_counts`,
			`INSERT INTO job_counts (type, state, n) SELECT type, state, count(*) FROM jobs GROUP BY type, state`,
		} {
			args := []any{n, base}
			if i > 0 {
				args = nil
			}
			if _, err := db.Exec(q, args...); err != nil {
				tb.Fatalf("seed: %v", err)
			}
		}
	})
}

// TestFailedWritesInABatchLeaveNoTrace: writes of several statements that
// fail (a taken job ID), sent at once with ones that succeed, so that they
// share the writer's batches: each failure reports its error and leaves
// nothing behind, and every success is kept whole (the writer runs a batch
// again with savepoints when one of them fails).
func TestFailedWritesInABatchLeaveNoTrace(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	const n = 200
	for i := range n / 2 {
		if _, _, err := s.Enqueue(ctx, jobs.EnqueueParams{Job: jobs.Job{ID: fmt.Sprintf("taken-%d", i), Type: "test.v1.Batch"}}); err != nil {
			t.Fatal(err)
		}
	}
	errs := make(chan error, n)
	for i := range n {
		go func() {
			id := fmt.Sprintf("new-%d", i)
			if i%2 == 0 {
				id = fmt.Sprintf("taken-%d", i/2)
			}
			_, _, err := s.Enqueue(ctx, jobs.EnqueueParams{Job: jobs.Job{ID: id, Type: "test.v1.Batch", Labels: map[string]string{"i": fmt.Sprint(i)}}})
			errs <- err
		}()
	}
	conflicts := 0
	for range n {
		err := <-errs
		switch {
		case errors.Is(err, jobs.ErrConflict):
			conflicts++
		case err != nil:
			t.Fatalf("Enqueue: %v", err)
		}
	}
	if conflicts != n/2 {
		t.Fatalf("%d Enqueues of taken IDs failed, want %d", conflicts, n/2)
	}
	list, _, err := s.List(ctx, jobs.ListParams{PageSize: 1000})
	if err != nil || len(list) != n {
		t.Fatalf("List: %d jobs, %v; want %d", len(list), err, n)
	}
	for _, j := range list {
		if strings.HasPrefix(j.ID, "taken-") && len(j.Labels) != 0 {
			t.Fatalf("job %s has labels %v from a failed Enqueue", j.ID, j.Labels)
		}
		if strings.HasPrefix(j.ID, "new-") && j.Labels["i"] == "" {
			t.Fatalf("job %s lost its labels", j.ID)
		}
	}
	if count, _, err := s.OutboxStats(ctx); err != nil || count != n {
		t.Fatalf("OutboxStats = %d, %v; want %d entries, one a job", count, err, n)
	}
	cs, err := s.Counts(ctx)
	if err != nil || len(cs) != 1 || cs[0].States[jobs.Queued] != n {
		t.Fatalf("Counts = %+v, %v; want %d QUEUED", cs, err, n)
	}
}
