package sqlite_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/jobstest"
	"github.com/courierq/courier/jobs/sqlite"
)

func open(tb testing.TB) jobs.Store {
	tb.Helper()
	s, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(tb.TempDir(), "jobs.db")})
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	jobstest.Exercise(context.Background(), t, func(t *testing.T) jobs.Store { return open(t) })
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
