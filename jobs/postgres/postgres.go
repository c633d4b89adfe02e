// Package postgres is the shared job store: a jobs.Store in PostgreSQL
// through pgx v5, for courierd replicas that share jobs. It is not the
// embedded default (that is jobs/sqlite) and not a general PostgreSQL
// helper.
//
// Writes are grouped: a few writer goroutines each send the requests waiting
// at that moment as one pipelined batch, which PostgreSQL runs as one
// implicit transaction, so many conditional updates share one commit; each
// still has its own result. Each batch also calls pg_notify, in the same
// transaction, with the IDs of its jobs, and one listening connection per
// Store feeds Subscribe, so changes made by any replica wake its watchers.
// A batch that changes job states also moves the counters behind Counts and
// Throughput, in its transaction (a second round trip: the upserts, then
// COMMIT), one upsert per counter on shard rows of its writer, so that
// writers and replicas do not queue on one hot row.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/internal/storekit"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

const pkg = "jobs/postgres"

// counterShards is how many rows job_counts and job_throughput spread each
// counter over.
const counterShards = 16

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Config configures a Store. The zero value of each field but URL means its
// default.
type Config struct {
	// URL is the connection string, e.g.
	// postgres://user@127.0.0.1:5432/db?sslmode=disable. Required.
	URL string
	// Schema holds the store's tables; it is created if missing, and the
	// store's connections use it as their search_path. Default "public".
	// Lower-case letters, digits and '_', at most 40 bytes.
	Schema string
	// MaxConns is the size of the connection pool (the listening connection
	// comes on top), at least 2. Default max(8, 4×GOMAXPROCS).
	MaxConns int
	// Writers is how many batches of writes may be in flight at once; it
	// must be below MaxConns, so that reads find a connection. Default
	// min(4, MaxConns/2).
	Writers int
	// MaxBatch caps how many write requests one batch carries. Default 256;
	// 1 turns grouping off.
	MaxBatch int
	// Now returns the current time, used for CreateTime, StartTime, ...
	// Default time.Now.
	Now func() time.Time
}

var schemaRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,39}$`)

func (c Config) withDefaults() (Config, error) {
	if c.URL == "" {
		return c, fmt.Errorf("%s: Config.URL is empty: set it to a connection URL such as postgres://postgres@127.0.0.1:5432/courier?sslmode=disable", pkg)
	}
	if c.Schema == "" {
		c.Schema = "public"
	}
	if !schemaRE.MatchString(c.Schema) {
		return c, fmt.Errorf("%s: Config.Schema %q is not a plain schema name: use lower-case letters, digits and '_' (at most 40), not starting with a digit", pkg, c.Schema)
	}
	if c.MaxConns < 0 || c.MaxConns == 1 {
		return c, fmt.Errorf("%s: Config.MaxConns is %d: use 0 for the default or a count of at least 2", pkg, c.MaxConns)
	}
	if c.MaxConns == 0 {
		c.MaxConns = max(8, 4*runtime.GOMAXPROCS(0))
	}
	if c.Writers < 0 {
		return c, fmt.Errorf("%s: Config.Writers is %d: use 0 for the default or a positive count", pkg, c.Writers)
	}
	if c.Writers == 0 {
		c.Writers = min(4, c.MaxConns/2)
	}
	if c.Writers >= c.MaxConns {
		return c, fmt.Errorf("%s: Config.Writers (%d) must be below Config.MaxConns (%d), so that reads find a connection: lower Writers or raise MaxConns", pkg, c.Writers, c.MaxConns)
	}
	if c.MaxBatch < 0 {
		return c, fmt.Errorf("%s: Config.MaxBatch is %d: use 0 for the default (256) or a positive count", pkg, c.MaxBatch)
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 256
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

// Store is the PostgreSQL jobs.Store. Open it with Open; it is safe for
// concurrent use.
type Store struct {
	cfg     Config
	pool    *pgxpool.Pool
	channel string // the LISTEN/NOTIFY channel of the schema

	reqs    chan *request // unbuffered
	stop    chan struct{}
	writers sync.WaitGroup

	listenCancel context.CancelFunc
	listenDone   chan struct{}

	closed    atomic.Bool
	closeOnce sync.Once
	hub       storekit.Hub
}

var _ jobs.Store = (*Store)(nil)

// Open connects, creates the schema if missing, applies the embedded
// migrations under an advisory lock (so that replicas starting together
// apply each once), starts listening for changes and starts the writer
// goroutines. Close stops them.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	pcfg, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("%s: Config.URL: %w", pkg, err)
	}
	pcfg.MaxConns = int32(cfg.MaxConns)
	pcfg.ConnConfig.RuntimeParams["search_path"] = cfg.Schema
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("%s: connect: %w", pkg, err)
	}
	if err := migrate(ctx, pool, cfg.Schema); err != nil {
		pool.Close()
		return nil, err
	}
	s := &Store{
		cfg:        cfg,
		pool:       pool,
		channel:    "courier_jobs:" + cfg.Schema,
		reqs:       make(chan *request),
		stop:       make(chan struct{}),
		listenDone: make(chan struct{}),
	}
	// LISTEN before Open returns, so that no change after Open is missed.
	lconn, err := s.listen(ctx)
	if err != nil {
		pool.Close()
		return nil, err
	}
	lctx, cancel := context.WithCancel(context.Background())
	s.listenCancel = cancel
	go s.listenLoop(lctx, lconn)
	// Writers of one replica add to distinct counter shards; replicas start
	// at random shards, so that they rarely share one.
	base := rand.IntN(counterShards)
	for i := range cfg.Writers {
		s.writers.Add(1)
		go s.writer((base + i) % counterShards)
	}
	return s, nil
}

func migrate(ctx context.Context, pool *pgxpool.Pool, schema string) (err error) {
	ms, err := storekit.Migrations(pkg, migrationsFS, "migrations")
	if err != nil {
		return err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("%s: connect: %w", pkg, err)
	}
	defer conn.Release()
	lockKey := "courier.jobs.migrate:" + schema
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(hashtextextended($1, 0))`, lockKey); err != nil {
		return fmt.Errorf("%s: take the migration lock: %w", pkg, err)
	}
	defer func() {
		if _, uerr := conn.Exec(context.Background(), `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, lockKey); uerr != nil {
			// A connection whose unlock failed must not go back to the pool
			// still holding the lock.
			conn.Conn().Close(context.Background())
			err = errors.Join(err, fmt.Errorf("%s: release the migration lock: %w", pkg, uerr))
		}
	}()
	if _, err := conn.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{schema}.Sanitize()); err != nil {
		return fmt.Errorf("%s: create schema %s: %w", pkg, schema, err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("%s: create schema_migrations: %w", pkg, err)
	}
	rows, err := conn.Query(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return fmt.Errorf("%s: read schema version: %w", pkg, err)
	}
	applied, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return fmt.Errorf("%s: read schema version: %w", pkg, err)
	}
	have := 0
	for _, v := range applied {
		have = max(have, v)
	}
	if latest := ms[len(ms)-1].Version; have > latest {
		return fmt.Errorf("%s: schema %s is at version %d, newer than this build knows (%d): run a newer courier", pkg, schema, have, latest)
	}
	// Each migration the schema lacks, by number: not only those above the
	// highest applied, since numbers are reserved per change and a branch
	// may have applied a later one first.
	for _, m := range ms {
		if slices.Contains(applied, m.Version) {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name)
			return err
		})
		if err != nil {
			return fmt.Errorf("%s: apply migration %s to schema %s: %w", pkg, m.Name, schema, err)
		}
	}
	return nil
}

// ListenerApplicationName is the application_name of each Store's listening
// connection, as pg_stat_activity shows it.
const ListenerApplicationName = "courier-jobs-listener"

// listen opens the listening connection.
func (s *Store) listen(ctx context.Context) (*pgx.Conn, error) {
	ccfg := s.pool.Config().ConnConfig.Copy()
	ccfg.RuntimeParams["application_name"] = ListenerApplicationName
	conn, err := pgx.ConnectConfig(ctx, ccfg)
	if err != nil {
		return nil, fmt.Errorf("%s: connect the listener: %w", pkg, err)
	}
	if _, err := conn.Exec(ctx, `LISTEN `+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("%s: LISTEN: %w", pkg, err)
	}
	return conn, nil
}

// listenLoop feeds notifications to the hub. When the connection breaks it
// reconnects with backoff and then wakes every watcher, since changes may
// have been missed meanwhile.
func (s *Store) listenLoop(ctx context.Context, conn *pgx.Conn) {
	defer close(s.listenDone)
	backoff := 50 * time.Millisecond
	for {
		for conn != nil {
			n, err := conn.WaitForNotification(ctx)
			if err != nil {
				conn.Close(context.Background())
				conn = nil
				break
			}
			for _, id := range parsePayload(n.Payload) {
				s.hub.Notify(id)
			}
		}
		if ctx.Err() != nil {
			return
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		c, err := s.listen(ctx)
		if err != nil {
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		conn, backoff = c, 50*time.Millisecond
		s.hub.NotifyAll()
	}
}

// Close stops the writers (requests waiting for them get jobs.ErrClosed)
// and the listener, closes the pool and every Subscribe channel. It is
// idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.stop)
		s.writers.Wait()
		s.listenCancel()
		<-s.listenDone
		s.hub.Close()
		s.pool.Close()
	})
	return nil
}

func (s *Store) checkOpen(method string) error {
	if s.closed.Load() {
		return fmt.Errorf("%s: %s: %w", pkg, method, jobs.ErrClosed)
	}
	return nil
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.checkOpen("Ping"); err != nil {
		return err
	}
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("%s: ping: %w", pkg, err)
	}
	return nil
}

// Subscribe implements jobs.Store: it sees changes made through any Store
// on the same database and schema.
func (s *Store) Subscribe(id string) (<-chan struct{}, func()) {
	return s.hub.Subscribe(id)
}

// Config returns the configuration the store runs with, defaults applied.
func (s *Store) Config() Config { return s.cfg }
