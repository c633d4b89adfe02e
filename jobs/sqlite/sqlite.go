// Package sqlite is the embedded job store: a jobs.Store kept in one SQLite
// file through modernc.org/sqlite (pure Go, no cgo). It is the default of the
// demo stack and of tests, and fits one process; it is not for several
// replicas sharing jobs (use jobs/postgres for that).
//
// All writes go through one writer goroutine that commits concurrent requests
// together in one transaction (group commit), each still its own conditional
// update with its own result; the batch also moves the counters behind
// Counts and Throughput by what its writes changed, one upsert per counter.
// Being one process's, the store is a jobs.StartSucceeder: that process's
// worker records a fast handler's start and end in one write.
// Reads use a separate pool of read-only connections. The database runs in WAL mode with synchronous=NORMAL, so a
// power loss may drop the last transactions but never corrupts the file.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/internal/storekit"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

const pkg = "jobs/sqlite"

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Config configures a Store. The zero value of each field means its default.
type Config struct {
	// Path is the database file; its directory is created if missing.
	// Default ".courier/jobs.db". ":memory:" and "file:" URIs are refused:
	// the writer and the readers must share one file.
	Path string
	// BusyTimeout is how long a statement waits for a lock held by another
	// connection (e.g. another process on the same file). Default 5s.
	BusyTimeout time.Duration
	// ReadConns is the size of the read-only connection pool. Default
	// max(4, 2×GOMAXPROCS).
	ReadConns int
	// MaxBatch caps how many write requests one transaction commits
	// together. Default 512; 1 turns group commit off.
	MaxBatch int
	// Now returns the current time, used for CreateTime, StartTime, ...
	// Default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() (Config, error) {
	if c.Path == "" {
		c.Path = filepath.Join(".courier", "jobs.db")
	}
	if c.Path == ":memory:" || strings.HasPrefix(c.Path, "file:") || strings.ContainsAny(c.Path, "?#") {
		return c, fmt.Errorf("%s: Config.Path %q is not a plain file path: pass a file such as .courier/jobs.db (no :memory:, URI or '?')", pkg, c.Path)
	}
	if c.BusyTimeout < 0 {
		return c, fmt.Errorf("%s: Config.BusyTimeout is %v: use 0 for the default (5s) or a positive duration", pkg, c.BusyTimeout)
	}
	if c.BusyTimeout == 0 {
		c.BusyTimeout = 5 * time.Second
	}
	if c.ReadConns < 0 {
		return c, fmt.Errorf("%s: Config.ReadConns is %d: use 0 for the default or a positive count", pkg, c.ReadConns)
	}
	if c.ReadConns == 0 {
		c.ReadConns = max(4, 2*runtime.GOMAXPROCS(0))
	}
	if c.MaxBatch < 0 {
		return c, fmt.Errorf("%s: Config.MaxBatch is %d: use 0 for the default (512) or a positive count", pkg, c.MaxBatch)
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 512
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

// Store is the SQLite jobs.Store. Open it with Open; it is safe for
// concurrent use.
type Store struct {
	cfg Config
	wdb *sql.DB // one connection, used only by the writer goroutine
	rdb *sql.DB // read-only pool
	st  stmts

	reqs    chan *request // unbuffered: a send succeeds only while the writer runs
	stop    chan struct{}
	stopped chan struct{}

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
	hub       storekit.Hub
}

var _ jobs.Store = (*Store)(nil)

// Open opens (creating if needed) the database at cfg.Path, applies the
// embedded schema migrations and starts the writer goroutine; Close stops it.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if dir := filepath.Dir(cfg.Path); dir != "." {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("%s: create the directory of Config.Path: %w", pkg, err)
		}
	}
	busy := fmt.Sprintf("busy_timeout(%d)", cfg.BusyTimeout.Milliseconds())
	q := url.Values{"_pragma": {busy, "journal_mode(WAL)", "synchronous(NORMAL)", "temp_store(MEMORY)"}, "_txlock": {"immediate"}}
	wdb, err := sql.Open("sqlite", cfg.Path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("%s: open %s: %w", pkg, cfg.Path, err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	if err := migrate(ctx, wdb); err != nil {
		wdb.Close()
		return nil, err
	}
	rq := url.Values{"_pragma": {busy, "query_only(1)"}}
	rdb, err := sql.Open("sqlite", cfg.Path+"?"+rq.Encode())
	if err != nil {
		wdb.Close()
		return nil, fmt.Errorf("%s: open %s for reading: %w", pkg, cfg.Path, err)
	}
	rdb.SetMaxOpenConns(cfg.ReadConns)
	rdb.SetMaxIdleConns(cfg.ReadConns)
	rdb.SetConnMaxIdleTime(0)
	s := &Store{
		cfg:     cfg,
		wdb:     wdb,
		rdb:     rdb,
		reqs:    make(chan *request),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	if err := s.st.prepare(ctx, wdb, rdb); err != nil {
		wdb.Close()
		rdb.Close()
		return nil, err
	}
	go s.writer()
	return s, nil
}

// migrate applies the embedded migrations the database lacks, each in its
// own immediate (write-locked) transaction, so that processes opening the
// same file at once apply each migration once.
func migrate(ctx context.Context, db *sql.DB) error {
	ms, err := storekit.Migrations(pkg, migrationsFS, "migrations")
	if err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("%s: create schema_migrations: %w", pkg, err)
	}
	latest := ms[len(ms)-1].Version
	for _, m := range ms {
		if err := applyMigration(ctx, db, m, latest); err != nil {
			return fmt.Errorf("%s: migration %s: %w", pkg, m.Name, err)
		}
	}
	return nil
}

// applyMigration applies m unless the database already has it.
func applyMigration(ctx context.Context, db *sql.DB, m storekit.Migration, latest int) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var have int
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
		return err
	}
	if have > latest {
		return fmt.Errorf("the database schema is at version %d, newer than this build knows (%d): run a newer courier", have, latest)
	}
	var done int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, m.Version).Scan(&done); err != nil {
		return err
	}
	if done > 0 { // applied (not only "below the highest": numbers are reserved per change, and may land out of order)
		return nil
	}
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
		m.Version, m.Name, time.Now().UnixMicro()); err != nil {
		return err
	}
	return tx.Commit()
}

// Close stops the writer (requests waiting for it get jobs.ErrClosed),
// closes the database and every Subscribe channel. It is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.stop)
		<-s.stopped
		s.hub.Close()
		s.st.close()
		s.closeErr = errors.Join(s.rdb.Close(), s.wdb.Close())
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("%s: close: %w", pkg, s.closeErr)
		}
	})
	return s.closeErr
}

func (s *Store) checkOpen(method string) error {
	if s.closed.Load() {
		return fmt.Errorf("%s: %s: %w", pkg, method, jobs.ErrClosed)
	}
	return nil
}

// Ping checks that the database answers a query.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.checkOpen("Ping"); err != nil {
		return err
	}
	var one int
	if err := s.rdb.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return fmt.Errorf("%s: ping: %w", pkg, err)
	}
	return nil
}

// Subscribe implements jobs.Store. Only changes made through this Store are
// seen: another process writing the same file does not wake it.
func (s *Store) Subscribe(id string) (<-chan struct{}, func()) {
	return s.hub.Subscribe(id)
}
