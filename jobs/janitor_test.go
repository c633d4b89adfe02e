package jobs_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/sqlite"
)

func openStore(t *testing.T, now func() time.Time) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "jobs.db"), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// finished records a job that ends at the store's current instant.
func finished(ctx context.Context, t *testing.T, s jobs.Store) *jobs.Job {
	t.Helper()
	j, _, err := s.Enqueue(ctx, jobs.EnqueueParams{Job: jobs.Job{Type: "test.v1.Janitor"}})
	if err != nil {
		t.Fatal(err)
	}
	if j, err = s.Cancel(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	return j
}

func TestJanitorSweep(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := t0
	s := openStore(t, func() time.Time { return clock })
	old := finished(ctx, t, s) // ends at t0
	clock = t0.Add(6 * 24 * time.Hour)
	young := finished(ctx, t, s) // ends at t0+6d
	queued, _, err := s.Enqueue(ctx, jobs.EnqueueParams{Job: jobs.Job{Type: "test.v1.Janitor"}})
	if err != nil {
		t.Fatal(err)
	}

	janitorNow := t0.Add(7*24*time.Hour + time.Second)
	jn, err := jobs.NewJanitor(jobs.JanitorConfig{Store: s, Now: func() time.Time { return janitorNow }})
	if err != nil {
		t.Fatal(err)
	}
	n, err := jn.Sweep(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Sweep at 7d+1s = %d, %v; want 1 (only the job that ended 7d+1s ago)", n, err)
	}
	if _, err := s.Get(ctx, old.ID); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("old job after Sweep: %v, want ErrNotFound", err)
	}
	for _, j := range []*jobs.Job{young, queued} {
		if _, err := s.Get(ctx, j.ID); err != nil {
			t.Fatalf("job %s after Sweep: %v", j.ID, err)
		}
	}
	// Far later, the young finished job goes too; the queued one never does.
	janitorNow = t0.Add(365 * 24 * time.Hour)
	if n, err := jn.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("second Sweep = %d, %v; want 1", n, err)
	}
	if _, err := s.Get(ctx, queued.ID); err != nil {
		t.Fatalf("queued job after Sweep: %v", err)
	}
}

func TestJanitorRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := openStore(t, func() time.Time { return t0 })
	j := finished(ctx, t, s)
	swept := make(chan int, 10)
	jn, err := jobs.NewJanitor(jobs.JanitorConfig{
		Store:     s,
		Retention: time.Hour,
		Interval:  time.Millisecond,
		Now:       func() time.Time { return t0.Add(2 * time.Hour) },
		OnSweep: func(n int, err error) {
			if err == nil {
				swept <- n
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- jn.Run(ctx) }()
	// The first sweep runs at once and deletes the job; later ones find nothing.
	for i, want := range []int{1, 0} {
		select {
		case n := <-swept:
			if n != want {
				t.Fatalf("sweep %d deleted %d, want %d", i+1, n, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no sweep within 10s")
		}
	}
	if _, err := s.Get(ctx, j.ID); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("job after Run: %v, want ErrNotFound", err)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run returned %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestJanitorStopsWhenStoreCloses(t *testing.T) {
	s := openStore(t, nil)
	jn, err := jobs.NewJanitor(jobs.JanitorConfig{Store: s, Interval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := jn.Run(context.Background()); !errors.Is(err, jobs.ErrClosed) {
		t.Fatalf("Run on a closed store = %v, want ErrClosed", err)
	}
}

func TestJanitorConfig(t *testing.T) {
	s := openStore(t, nil)
	for _, tc := range []struct {
		cfg  jobs.JanitorConfig
		want string
	}{
		{jobs.JanitorConfig{}, "Store"},
		{jobs.JanitorConfig{Store: s, Retention: -time.Second}, "Retention"},
		{jobs.JanitorConfig{Store: s, Interval: -time.Second}, "Interval"},
	} {
		_, err := jobs.NewJanitor(tc.cfg)
		if err == nil || !strings.HasPrefix(err.Error(), "jobs: ") || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("NewJanitor(%+v) = %v, want an error naming %s", tc.cfg, err, tc.want)
		}
	}
}
