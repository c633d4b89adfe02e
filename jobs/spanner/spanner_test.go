package spanner_test

import (
	"context"
	"strings"
	"testing"
	"time"

	gs "cloud.google.com/go/spanner"

	"github.com/courierq/courier/internal/testenv"
	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/jobstest"
	"github.com/courierq/courier/jobs/spanner"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func open(tb testing.TB) jobs.Store { return openAt(tb, nil) }

// openAt opens a store on a fresh emulator database whose clock is now
// (nil: time.Now).
func openAt(tb testing.TB, now func() time.Time) jobs.Store {
	tb.Helper()
	return openConfig(tb, spanner.Config{Database: testenv.SpannerDatabase(tb), Now: now, PollInterval: 50 * time.Millisecond})
}

func openConfig(tb testing.TB, cfg spanner.Config) *spanner.Store {
	tb.Helper()
	s, err := spanner.Open(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	jobstest.Exercise(context.Background(), t, func(t *testing.T, now func() time.Time) jobs.Store { return openAt(t, now) }, jobstest.Features{
		NewPeer: func(t *testing.T, s jobs.Store) jobs.Store {
			return openConfig(t, s.(*spanner.Store).Config())
		},
	})
}

func BenchmarkStore(b *testing.B) {
	jobstest.BenchmarkStore(b, open)
}

func TestConfigValidation(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		cfg  spanner.Config
		want string
	}{
		{spanner.Config{}, "Config.Database"},
		{spanner.Config{Database: "projects/p/instances/i"}, "Config.Database"},
		{spanner.Config{Database: "projects/p/instances/i/databases/d/extra"}, "Config.Database"},
		{spanner.Config{Database: "projects/p/instances/i/databases/d", PollInterval: -1}, "Config.PollInterval"},
	} {
		s, err := spanner.Open(ctx, tc.cfg)
		if err == nil {
			s.Close()
			t.Fatalf("Open(%+v) succeeded, want an error naming %s", tc.cfg, tc.want)
		}
		if !strings.HasPrefix(err.Error(), "jobs/spanner: ") || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("Open(%+v) = %q, want an error starting with the package and naming %s", tc.cfg, err, tc.want)
		}
	}
}

// TestConcurrentOpen opens several stores on one new database at once, as
// replicas starting together do: each migration is applied once, and every
// store works.
func TestConcurrentOpen(t *testing.T) {
	db := testenv.SpannerDatabase(t)
	const n = 4
	stores := make(chan *spanner.Store, n)
	errs := make(chan error, n)
	for range n {
		go func() {
			s, err := spanner.Open(context.Background(), spanner.Config{Database: db})
			if err != nil {
				errs <- err
				return
			}
			stores <- s
		}()
	}
	for range n {
		select {
		case err := <-errs:
			t.Fatalf("concurrent Open: %v", err)
		case s := <-stores:
			t.Cleanup(func() { s.Close() })
			if _, _, err := s.Enqueue(context.Background(), jobs.EnqueueParams{Job: jobs.Job{Type: "test.v1.Open"}}); err != nil {
				t.Fatalf("Enqueue after a concurrent Open: %v", err)
			}
		}
	}
	c, err := gs.NewClient(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var rows, applied int64
	err = c.Single().Query(context.Background(), gs.Statement{SQL: `SELECT COUNT(*), COUNTIF(applied_at IS NOT NULL) FROM schema_migrations`}).
		Do(func(r *gs.Row) error { return r.Columns(&rows, &applied) })
	if err != nil {
		t.Fatal(err)
	}
	if rows == 0 || rows != applied {
		t.Fatalf("schema_migrations has %d rows, %d applied; want every migration applied once", rows, applied)
	}
}

// TestReopenAndNewerSchema: jobs survive a reopen (which finds the schema
// up to date), and a database migrated by a newer build is refused.
func TestReopenAndNewerSchema(t *testing.T) {
	ctx := context.Background()
	db := testenv.SpannerDatabase(t)
	s, err := spanner.Open(ctx, spanner.Config{Database: db})
	if err != nil {
		t.Fatal(err)
	}
	j, _, err := s.Enqueue(ctx, jobs.EnqueueParams{Job: jobs.Job{Type: "test.v1.Reopen"}})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openConfig(t, spanner.Config{Database: db})
	if got, err := s.Get(ctx, j.ID); err != nil || got.Type != j.Type {
		t.Fatalf("Get after reopen = %+v, %v", got, err)
	}
	c, err := gs.NewClient(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.ReadWriteTransaction(ctx, func(_ context.Context, tx *gs.ReadWriteTransaction) error {
		return tx.BufferWrite([]*gs.Mutation{gs.Insert("schema_migrations", []string{"version", "name", "owner", "lease", "applied_at"},
			[]any{int64(999), "0999_future.sql", "test", time.Now(), time.Now()})})
	})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := spanner.Open(ctx, spanner.Config{Database: db})
	if err == nil {
		s2.Close()
		t.Fatal("Open of a database from a newer build succeeded")
	}
	if !strings.Contains(err.Error(), "newer than this build") {
		t.Fatalf("Open = %v, want an error saying the schema is newer", err)
	}
}
