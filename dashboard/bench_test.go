package dashboard_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/courierq/courier/dashboard"
	"github.com/courierq/courier/internal/testenv"
	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/jobstest"
	"github.com/courierq/courier/jobs/postgres"
	"github.com/courierq/courier/jobs/sqlite"
)

// seedBase is when the seeded jobs were created; they ended over the 15
// minutes after it, and the dashboard's clock is at the end of those.
var seedBase = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// BenchmarkOverview renders the dashboard's overview (counts by type and
// state, the oldest queued job, 15 minutes of throughput) on a store of
// jobstest.CountsJobs (a million) jobs, seeded in bulk (one INSERT ...
// SELECT, counters rebuilt from it). The bar: under 100 ms.
func BenchmarkOverview(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) {
		path := filepath.Join(b.TempDir(), "jobs.db")
		s, err := sqlite.Open(context.Background(), sqlite.Config{Path: path})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		seedSQLite(b, path, jobstest.CountsJobs)
		benchOverview(b, s)
	})
	b.Run("postgres", func(b *testing.B) {
		url, schema := testenv.PostgresSchema(b)
		s, err := postgres.Open(context.Background(), postgres.Config{URL: url, Schema: schema})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		seedPostgres(b, url, schema, jobstest.CountsJobs)
		benchOverview(b, s)
	})
}

func benchOverview(b *testing.B, s jobs.Store) {
	var types []string
	for i := range jobstest.CountsTypes {
		types = append(types, fmt.Sprint("bench.v1.T", i))
	}
	d, err := dashboard.New(dashboard.Config{Store: s, Types: types, Resolver: protoregistry.GlobalTypes,
		Now: func() time.Time { return seedBase.Add(15 * time.Minute) }})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(d)
	b.Cleanup(srv.Close)
	get := func() {
		r, err := http.Get(srv.URL + "/")
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if r.StatusCode != 200 {
			b.Fatalf("GET /: %d\n%s", r.StatusCode, body)
		}
	}
	get() // warm
	b.ResetTimer()
	for b.Loop() {
		get()
	}
	ms := float64(b.Elapsed().Microseconds()) / 1000 / float64(b.N)
	b.ReportMetric(ms, "ms/render")
	if ms >= 100 {
		b.Errorf("the overview on %d jobs took %.1f ms to render; the bar is 100 ms", jobstest.CountsJobs, ms)
	}
}

// The seeds: job i has type bench.v1.T(i%10) and the state of
// jobstest.SeedStateSQL; ended jobs end over 15 minutes; counters and
// throughput are rebuilt from the rows, as the stores' migrations do.

func seedSQLite(b *testing.B, path string, n int) {
	start := time.Now()
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	base := seedBase.UnixMicro()
	state := jobstest.SeedStateSQL("i")
	for i, q := range []string{
		`WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?1),
		s(i, state) AS (SELECT i, ` + state + ` FROM n)
		INSERT INTO jobs (id, type, state, attempt, payload, create_time, update_time, start_time, end_time, lease, lease_expiry)
		SELECT printf('seed-%08d', i), 'bench.v1.T' || (i % ` + fmt.Sprint(jobstest.CountsTypes) + `), state,
			CASE WHEN state = 'QUEUED' THEN 0 ELSE 1 END, x'0a0568656c6c6f', ?2 + i, ?2 + i,
			CASE WHEN state = 'QUEUED' THEN NULL ELSE ?2 + i END,
			CASE WHEN state IN ('SUCCEEDED', 'FAILED', 'CANCELLED') THEN ?2 + i * 900 END,
			CASE WHEN state = 'RUNNING' THEN 'seed' ELSE '' END,
			CASE WHEN state = 'RUNNING' THEN ?2 + i + 3600000000 END
		FROM s`,
		`DELETE FROM job_counts`,
		`INSERT INTO job_counts (type, state, n) SELECT type, state, count(*) FROM jobs GROUP BY type, state`,
		`DELETE FROM job_throughput`,
		`INSERT INTO job_throughput (minute, type, succeeded, failed)
			SELECT end_time - end_time % 60000000, type, sum(state = 'SUCCEEDED'), sum(state = 'FAILED')
			FROM jobs WHERE state IN ('SUCCEEDED', 'FAILED') AND end_time IS NOT NULL GROUP BY 1, 2`,
	} {
		args := []any{n, base}
		if i > 0 {
			args = nil
		}
		if _, err := db.Exec(q, args...); err != nil {
			b.Fatalf("seed: %v", err)
		}
	}
	b.Logf("seeded %d jobs in %v", n, time.Since(start).Round(time.Millisecond))
}

func seedPostgres(b *testing.B, url, schema string, n int) {
	start := time.Now()
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		b.Fatal(err)
	}
	cfg.RuntimeParams["search_path"] = schema
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
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
			CASE WHEN state IN ('SUCCEEDED', 'FAILED', 'CANCELLED') THEN $2::timestamptz + i * interval '900 microseconds' END,
			CASE WHEN state = 'RUNNING' THEN 'seed' ELSE '' END,
			CASE WHEN state = 'RUNNING' THEN $2::timestamptz + interval '1 hour' END
		FROM s`,
		`TRUNCATE job_counts`,
		`INSERT INTO job_counts (type, state, shard, n) SELECT type, state, 0, count(*) FROM jobs GROUP BY type, state`,
		`TRUNCATE job_throughput`,
		`INSERT INTO job_throughput (minute, type, shard, succeeded, failed)
			SELECT date_bin('1 minute', end_time, timestamptz 'epoch'), type, 0, count(*) FILTER (WHERE state = 'SUCCEEDED'), count(*) FILTER (WHERE state = 'FAILED')
			FROM jobs WHERE state IN ('SUCCEEDED', 'FAILED') AND end_time IS NOT NULL GROUP BY 1, 2`,
		`ANALYZE`,
	} {
		args := []any{n, seedBase}
		if i > 0 {
			args = nil
		}
		if _, err := conn.Exec(ctx, q, args...); err != nil {
			b.Fatalf("seed: %v", err)
		}
	}
	b.Logf("seeded %d jobs in %v", n, time.Since(start).Round(time.Millisecond))
}
