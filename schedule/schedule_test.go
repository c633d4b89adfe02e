package schedule_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/courierq/courier/internal/testenv"
	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/jobstest"
	"github.com/courierq/courier/jobs/postgres"
	"github.com/courierq/courier/jobs/sqlite"
	"github.com/courierq/courier/schedule"
)

func TestParseErrorsNameTheField(t *testing.T) {
	for _, c := range []struct {
		expr, tz string
		every    time.Duration
		field    string
	}{
		{"", "", 0, "cron"},
		{"* * * * *", "", time.Minute, "every"},
		{"61 * * * *", "", 0, "cron"},
		{"not cron", "", 0, "cron"},
		{"* * * * *", "Mars/Olympus", 0, "timeZone"},
		{"CRON_TZ=UTC * * * * *", "", 0, "cron"},
		{"@every 1h", "", 0, "cron"},
		{"", "", time.Millisecond, "every"},
		{"", "UTC", time.Hour, "timeZone"},
	} {
		_, err := schedule.Parse(c.expr, c.tz, c.every)
		var se *schedule.Error
		if !errors.As(err, &se) || se.Field != c.field {
			t.Errorf("Parse(%q, %q, %v) = %v; want an error naming %s", c.expr, c.tz, c.every, err, c.field)
		}
	}
}

func TestNext(t *testing.T) {
	paris, _ := time.LoadLocation("Europe/Paris")
	spec, err := schedule.Parse("0 2 * * *", "Europe/Paris", 0)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 28, 12, 0, 0, 0, time.UTC)
	for _, want := range []time.Time{
		time.Date(2026, 3, 28, 2, 0, 0, 0, paris).AddDate(0, 0, 2), // 02:00 does not exist on 29 March (DST): robfig/cron skips that day
		time.Date(2026, 3, 31, 2, 0, 0, 0, paris),
	} {
		got := spec.Next(at)
		if !got.Equal(want) || got.Location() != time.UTC {
			t.Fatalf("Next(%v) = %v, want %v in UTC", at, got, want)
		}
		at = got
	}
	every, err := schedule.Parse("", "", 90*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(900, 0).UTC()
	if got := every.Next(t0); !got.Equal(time.Unix(990, 0)) {
		t.Fatalf("every 90s: Next(%v) = %v, want 990s after the epoch", t0, got)
	}
	if got := every.Next(t0.Add(-time.Nanosecond)); !got.Equal(t0) {
		t.Fatalf("every 90s: Next just before a tick = %v, want the tick %v", got, t0)
	}
}

func open(t *testing.T, now func() time.Time) *sqlite.Store {
	s, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "jobs.db"), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestMissedTicks(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		missed jobs.Missed
		want   int
	}{{jobs.MissedSkip, 1}, {jobs.MissedCatchUp, 11}} {
		t.Run(string(tc.missed), func(t *testing.T) {
			clk := jobstest.NewClock(time.Date(2026, 1, 1, 0, 0, 30, 0, time.UTC))
			s := open(t, clk.Now)
			sch, err := schedule.New(schedule.Config{Store: s, Now: clk.Now, Grace: 30 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			first := time.Date(2026, 1, 1, 0, 1, 0, 0, time.UTC)
			if _, err := s.CreateSchedule(ctx, jobs.Schedule{Name: "m", Type: "t.v1.T", Cron: "* * * * *", Missed: tc.missed, NextTime: first}); err != nil {
				t.Fatal(err)
			}
			// Down for ten minutes: ticks 00:01..00:10 are missed, 00:11 is
			// due now (within grace).
			clk.Add(10*time.Minute + 40*time.Second)
			n, err := sch.Pass(ctx)
			if err != nil || n != tc.want {
				t.Fatalf("Pass = %d, %v; want %d jobs", n, err, tc.want)
			}
			sc, err := s.GetSchedule(ctx, "m")
			if err != nil {
				t.Fatal(err)
			}
			if want := time.Date(2026, 1, 1, 0, 12, 0, 0, time.UTC); !sc.NextTime.Equal(want) {
				t.Fatalf("NextTime = %v, want %v", sc.NextTime, want)
			}
			if n, _ := sch.Pass(ctx); n != 0 {
				t.Fatalf("a second Pass at the same time enqueued %d jobs", n)
			}
			list, _, _ := s.List(ctx, jobs.ListParams{Type: "t.v1.T", PageSize: 100})
			if len(list) != tc.want {
				t.Fatalf("%d jobs stored, want %d", len(list), tc.want)
			}
			if key := schedule.IdempotencyKey("m", time.Date(2026, 1, 1, 0, 11, 0, 0, time.UTC)); list[0].IdempotencyKey != key {
				t.Fatalf("newest job's key = %q, want %q", list[0].IdempotencyKey, key)
			}
		})
	}
}

// BenchmarkCatchUp measures how fast a scheduler fires missed ticks (each a
// conditional update and a job with its outbox row, one transaction) on
// each store: ticks/s.
func BenchmarkCatchUp(b *testing.B) {
	for _, kind := range testenv.StoreKinds() {
		b.Run(string(kind), func(b *testing.B) {
			ctx := context.Background()
			clk := jobstest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
			var s jobs.Store
			switch kind {
			case testenv.SQLite:
				s = openB(b, clk.Now)
			case testenv.Postgres:
				url, schema := testenv.PostgresSchema(b)
				ps, err := postgres.Open(ctx, postgres.Config{URL: url, Schema: schema, Now: clk.Now})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { ps.Close() })
				s = ps
			}
			ss := s.(jobs.Schedules)
			sch, err := schedule.New(schedule.Config{Store: ss, Now: clk.Now, MaxCatchUp: 1 << 30})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := ss.CreateSchedule(ctx, jobs.Schedule{Name: "bench", Type: "t.v1.T", Every: time.Second, Missed: jobs.MissedCatchUp,
				NextTime: clk.Now().Add(time.Second)}); err != nil {
				b.Fatal(err)
			}
			clk.Add(time.Duration(b.N) * time.Second)
			b.ResetTimer()
			n, err := sch.Pass(ctx)
			if err != nil || n != b.N {
				b.Fatalf("Pass = %d, %v; want %d", n, err, b.N)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ticks/s")
		})
	}
}

func openB(b *testing.B, now func() time.Time) *sqlite.Store {
	s, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(b.TempDir(), "jobs.db"), Now: now})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}
