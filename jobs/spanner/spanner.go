// Package spanner is the job store on Cloud Spanner: a jobs.Store through
// cloud.google.com/go/spanner, for courier fleets that outgrow one
// PostgreSQL primary. It is not the embedded default (jobs/sqlite) and not
// a general Spanner helper. Its tests run on the Cloud Spanner emulator
// (SPANNER_EMULATOR_HOST), which is not Spanner: it runs one read-write
// transaction at a time, so its throughput says nothing of Spanner's.
//
// Every change of a job is one read-write transaction that reads the job
// row, checks the change is allowed (the conditional update), and buffers
// the new row, its event, its outbox entry and its counter moves: Enqueue
// writes the job and its outbox entry in one transaction; idempotency keys
// are a unique index, read in the same transaction.
//
// Keys. Courier's job IDs are UUIDv7, which grow with time; a table keyed
// by them would take every insert at the end of one split (a hotspot). Every
// job row is keyed (shard, id) with shard = FNV-1a(id) mod 64, so inserts
// land at 64 places that Spanner splits apart; a point read computes the
// shard from the ID. Secondary indexes on time-like columns (create time,
// lease expiry, end time) start with the same shard. Events and the outbox
// entry are interleaved in their job's row (one split per job's writes).
// The counters behind Counts and Throughput are sharded rows (16 per
// counter; each transaction adds to one at random); Counts' oldest Queued
// job of each type reads the jobs_queued index, whose rows are the Queued
// jobs only (the backlog, not the store).
//
// List reads the newest matching keys of each of the 64 shards from the
// jobs_created index (64 short seeks at one timestamp, 8 at a time),
// merges them and reads the page's rows: no index holds every job in
// create-time order, since that index would be one hot tail.
//
// The outbox has no index on its due time (it would be one hot tail):
// ClaimOutbox scans it, which is cheap while it is a short queue (entries
// leave once published). A claim is one read-write transaction; relays
// that claim at once are serialized by Spanner's locks and never get an
// entry another one holds.
//
// Change notification. Spanner has no LISTEN/NOTIFY. Change streams could
// tell every replica of every change, but reading one needs a long-running
// partitioned query per replica, and the emulator's support is partial.
// Instead each Store notifies its own watchers at once after a commit, and
// polls, every Config.PollInterval (default 250ms), the jobs its watchers
// watch: one strong read of those rows' commit timestamps (the changed
// column). So a change made through another replica reaches WatchJob or a
// worker's cancel watch within about one PollInterval plus a read, and the
// cost is one small read per interval per replica (a trivial one while
// nothing is watched).
//
// Migrations are DDL statements (all IF NOT EXISTS) applied under a lease
// row in schema_migrations, so that several processes opening a new
// database at once apply each migration once; the others wait for it.
package spanner

import (
	"context"
	"embed"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gs "cloud.google.com/go/spanner"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"

	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/internal/storekit"
)

const pkg = "jobs/spanner"

// keyShards is how many shards job keys are spread over; counterShards how
// many rows each counter of job_counts and job_throughput is spread over.
const (
	keyShards     = 64
	counterShards = 16
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Config configures a Store. The zero value of each field but Database means
// its default.
type Config struct {
	// Database is the database's full name,
	// projects/P/instances/I/databases/D. It must exist; the store creates
	// its tables. Required. Set SPANNER_EMULATOR_HOST to use the emulator.
	Database string
	// PollInterval is how often the store reads the jobs its Subscribe
	// watchers watch, to see changes made by other replicas. Default 250ms.
	PollInterval time.Duration
	// Now returns the current time, used for CreateTime, StartTime, ...
	// Default time.Now.
	Now func() time.Time
	// ClientOptions are passed to the Spanner clients (credentials,
	// endpoint); none are needed with SPANNER_EMULATOR_HOST.
	ClientOptions []option.ClientOption
}

var databaseRE = regexp.MustCompile(`^projects/[a-z0-9][-a-z0-9.:]*/instances/[a-z][-a-z0-9]*/databases/[a-z][-_a-z0-9]*$`)

// ValidDatabase reports whether name is a database's full name,
// projects/P/instances/I/databases/D.
func ValidDatabase(name string) bool { return databaseRE.MatchString(name) }

func (c Config) withDefaults() (Config, error) {
	if c.Database == "" {
		return c, fmt.Errorf("%s: Config.Database is empty: set it to the database's full name, projects/P/instances/I/databases/D", pkg)
	}
	if !ValidDatabase(c.Database) {
		return c, fmt.Errorf("%s: Config.Database %q is not a database name: use projects/P/instances/I/databases/D", pkg, storekit.Clip(c.Database))
	}
	if c.PollInterval < 0 {
		return c, fmt.Errorf("%s: Config.PollInterval is %v: use 0 for the default (250ms) or a positive duration", pkg, c.PollInterval)
	}
	if c.PollInterval == 0 {
		c.PollInterval = 250 * time.Millisecond
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

// Store is the Spanner jobs.Store. Open it with Open; it is safe for
// concurrent use.
type Store struct {
	cfg    Config
	client *gs.Client

	hub       storekit.Hub
	watchMu   sync.Mutex
	watch     map[string]*watched // by job ID
	lastRead  time.Time           // read timestamp of the last poll
	pollStop  chan struct{}
	pollDone  chan struct{}
	closed    atomic.Bool
	closeOnce sync.Once
}

// watched is a job some Subscribe channel watches: how many, and the commit
// timestamp of the last change they were told of.
type watched struct {
	refs int
	seen time.Time
}

var _ jobs.Store = (*Store)(nil)

// Open connects, applies the embedded migrations (once, whatever else opens
// the database at the same time) and starts the poller behind Subscribe.
// Close stops it.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	client, err := gs.NewClientWithConfig(ctx, cfg.Database, gs.ClientConfig{
		DisableNativeMetrics: true,
	}, cfg.ClientOptions...)
	if err != nil {
		return nil, fmt.Errorf("%s: connect to %s: %w", pkg, cfg.Database, err)
	}
	if err := migrate(ctx, cfg, client); err != nil {
		client.Close()
		return nil, err
	}
	s := &Store{
		cfg:      cfg,
		client:   client,
		watch:    make(map[string]*watched),
		pollStop: make(chan struct{}),
		pollDone: make(chan struct{}),
	}
	// The first read timestamp: watchers subscribed from now on are told of
	// changes committed after it.
	ro := client.Single()
	if err := ro.Query(ctx, gs.Statement{SQL: `SELECT 1`}).Do(func(*gs.Row) error { return nil }); err != nil {
		client.Close()
		return nil, fmt.Errorf("%s: first read of %s: %w", pkg, cfg.Database, err)
	}
	if s.lastRead, err = ro.Timestamp(); err != nil {
		client.Close()
		return nil, fmt.Errorf("%s: first read of %s: %w", pkg, cfg.Database, err)
	}
	go s.pollLoop()
	return s, nil
}

// Close stops the poller, closes every Subscribe channel and the client. It
// is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.pollStop)
		<-s.pollDone
		s.hub.Close()
		s.client.Close()
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
	if err := s.client.Single().Query(ctx, gs.Statement{SQL: `SELECT 1`}).Do(func(*gs.Row) error { return nil }); err != nil {
		return fmt.Errorf("%s: ping %s: %w", pkg, s.cfg.Database, err)
	}
	return nil
}

// Config returns the configuration the store runs with, defaults applied.
func (s *Store) Config() Config { return s.cfg }

// Subscribe implements jobs.Store: it sees changes made through this store
// at once, and those made through any other Store on the same database
// within about Config.PollInterval.
func (s *Store) Subscribe(id string) (<-chan struct{}, func()) {
	ch, cancel := s.hub.Subscribe(id)
	if s.closed.Load() {
		return ch, cancel
	}
	s.watchMu.Lock()
	w := s.watch[id]
	if w == nil {
		// Changes committed after the last poll's read are news.
		w = &watched{seen: s.lastRead}
		s.watch[id] = w
	}
	w.refs++
	s.watchMu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			cancel()
			s.watchMu.Lock()
			defer s.watchMu.Unlock()
			if w := s.watch[id]; w != nil {
				if w.refs--; w.refs <= 0 {
					delete(s.watch, id)
				}
			}
		})
	}
}

// notify wakes the local watchers of ids after a commit at ts, and records
// that they were told of it, so that the poller does not wake them again.
func (s *Store) notify(ts time.Time, ids ...string) {
	s.watchMu.Lock()
	for _, id := range ids {
		if w := s.watch[id]; w != nil && ts.After(w.seen) {
			w.seen = ts
		}
	}
	s.watchMu.Unlock()
	for _, id := range ids {
		s.hub.Notify(id)
	}
}

// pollLoop reads the watched jobs every PollInterval until Close.
func (s *Store) pollLoop() {
	defer close(s.pollDone)
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-s.pollStop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		go func() {
			select {
			case <-s.pollStop:
				cancel()
			case <-ctx.Done():
			}
		}()
		_ = s.poll(ctx) // a failed poll is retried at the next tick
		cancel()
	}
}

// pollBatch bounds the keys of one poll read.
const pollBatch = 2000

// poll reads the commit timestamp of each watched job's last change and
// wakes the watchers of those that changed since they were last told.
func (s *Store) poll(ctx context.Context) error {
	s.watchMu.Lock()
	ids := make([]string, 0, len(s.watch))
	for id := range s.watch {
		ids = append(ids, id)
	}
	s.watchMu.Unlock()
	// Single-use strong reads, no read-only transaction: the emulator can
	// deadlock a multi-use one against a read-write transaction. The
	// earliest read timestamp is the one every change before it was seen by.
	var readAt time.Time
	read := func(q func(*gs.ReadOnlyTransaction) *gs.RowIterator, row func(*gs.Row) error) error {
		ro := s.client.Single()
		if err := q(ro).Do(row); err != nil {
			return err
		}
		ts, err := ro.Timestamp()
		if err != nil {
			return err
		}
		if readAt.IsZero() || ts.Before(readAt) {
			readAt = ts
		}
		return nil
	}
	if len(ids) == 0 {
		// Nothing is watched: a trivial read keeps lastRead recent, so that
		// a new watcher is not woken for changes long before it came.
		err := read(func(ro *gs.ReadOnlyTransaction) *gs.RowIterator {
			return ro.Query(ctx, gs.Statement{SQL: `SELECT 1`})
		}, func(*gs.Row) error { return nil })
		if err != nil {
			return err
		}
	}
	changed := map[string]time.Time{}
	for len(ids) > 0 {
		n := min(len(ids), pollBatch)
		keys := keySet(ids[:n])
		ids = ids[n:]
		err := read(func(ro *gs.ReadOnlyTransaction) *gs.RowIterator {
			return ro.Read(ctx, "jobs", keys, []string{"id", "changed"})
		}, func(r *gs.Row) error {
			var (
				id string
				ts gs.NullTime
			)
			if err := r.Columns(&id, &ts); err != nil {
				return err
			}
			if ts.Valid {
				changed[id] = ts.Time
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	var wake []string
	s.watchMu.Lock()
	for id, ts := range changed {
		if w := s.watch[id]; w != nil && ts.After(w.seen) {
			w.seen = ts
			wake = append(wake, id)
		}
	}
	if readAt.After(s.lastRead) {
		s.lastRead = readAt
	}
	s.watchMu.Unlock()
	for _, id := range wake {
		s.hub.Notify(id)
	}
	return nil
}

// shardOf is the key shard of job id.
func shardOf(id string) int64 {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int64(h.Sum32() % keyShards)
}

// key is the primary key of job id (in jobs, and of its outbox entry).
func key(id string) gs.Key { return gs.Key{shardOf(id), id} }

// emulatorMu serializes the read-write transactions of every Store of the
// process that talks to the emulator (SPANNER_EMULATOR_HOST): the emulator
// runs one at a time, and fails rather than aborts overlapping ones on a
// multiplexed session in ways the client does not retry.
var emulatorMu sync.Mutex

// onEmulator reports whether the clients talk to the emulator.
func onEmulator() bool { return os.Getenv("SPANNER_EMULATOR_HOST") != "" }

// rw runs f in a read-write transaction, as client.ReadWriteTransaction
// does (which retries ABORTED). On the emulator it takes emulatorMu first,
// and retries the emulator's refusal of a transaction that one of another
// process overtook ("Invalid transaction ID", "Transaction not found").
func rw(ctx context.Context, client *gs.Client, f func(context.Context, *gs.ReadWriteTransaction) error) (time.Time, error) {
	if !onEmulator() {
		return client.ReadWriteTransaction(ctx, f)
	}
	backoff := time.Millisecond
	for {
		emulatorMu.Lock()
		ts, err := client.ReadWriteTransaction(ctx, f)
		emulatorMu.Unlock()
		if err == nil || !emulatorOvertaken(err) || ctx.Err() != nil {
			return ts, err
		}
		select {
		case <-ctx.Done():
			return ts, err
		case <-time.After(time.Duration(rand.Int64N(int64(backoff) + 1))):
		}
		backoff = min(2*backoff, 100*time.Millisecond)
	}
}

// emulatorOvertaken reports whether err is the emulator's refusal of an
// overtaken transaction.
func emulatorOvertaken(err error) bool {
	switch gs.ErrCode(err) {
	case codes.FailedPrecondition:
		return strings.Contains(err.Error(), "Invalid transaction ID")
	case codes.NotFound:
		return strings.Contains(err.Error(), "Transaction not found")
	}
	return false
}

// apply writes ms in one read-write transaction (through rw).
func apply(ctx context.Context, client *gs.Client, ms ...*gs.Mutation) (time.Time, error) {
	return rw(ctx, client, func(_ context.Context, tx *gs.ReadWriteTransaction) error { return tx.BufferWrite(ms) })
}
