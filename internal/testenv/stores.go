package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/postgres"
	"github.com/courierq/courier/jobs/spanner"
	"github.com/courierq/courier/jobs/sqlite"
)

// StoreKind names a job store implementation.
type StoreKind string

const (
	SQLite   StoreKind = "sqlite"
	Postgres StoreKind = "postgres"
	// Spanner is jobs/spanner on the Cloud Spanner emulator.
	Spanner StoreKind = "spanner"
)

// StoreKinds lists every store, for tests that run on each.
func StoreKinds() []StoreKind { return []StoreKind{SQLite, Postgres, Spanner} }

// PostgresURL is the test database: $COURIER_TEST_POSTGRES_URL, or
// postgres://postgres@127.0.0.1:5432/test.
func PostgresURL() string {
	if u := os.Getenv("COURIER_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

var schemaSeq atomic.Int64

// Store opens a fresh, empty store of kind: SQLite in a temp dir,
// PostgreSQL in a schema of its own, or Spanner in a database of its own on
// the emulator (cleanup drops schema and database). It skips (fails under
// CI=true) when PostgreSQL or the emulator is missing.
func Store(t testing.TB, kind StoreKind) jobs.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var (
		s   jobs.Store
		err error
	)
	switch kind {
	case SQLite:
		s, err = sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "jobs.db")})
	case Postgres:
		url, schema := PostgresSchema(t)
		s, err = postgres.Open(ctx, postgres.Config{URL: url, Schema: schema, MaxConns: 8})
	case Spanner:
		s, err = spanner.Open(ctx, spanner.Config{Database: SpannerDatabase(t)})
	default:
		t.Fatalf("testenv: unknown store kind %q", kind)
	}
	if err != nil {
		t.Fatalf("opening %s store: %v", kind, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// PostgresSchema checks PostgreSQL is reachable (skipping, or failing under
// CI=true, when not) and returns its URL and a fresh schema name that
// cleanup drops, for tests that open their own store (e.g. through a config).
func PostgresSchema(t testing.TB) (url, schema string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, PostgresURL())
	if err != nil {
		Missing(t, "PostgreSQL at "+PostgresURL(), err)
	}
	conn.Close(ctx)
	schema = fmt.Sprintf("testenv_%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9, schemaSeq.Add(1))
	t.Cleanup(func() { dropSchema(t, schema) })
	return PostgresURL(), schema
}

func dropSchema(t testing.TB, schema string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, PostgresURL())
	if err != nil {
		t.Errorf("drop schema %s: %v", schema, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
		t.Errorf("drop schema %s: %v", schema, err)
	}
}
