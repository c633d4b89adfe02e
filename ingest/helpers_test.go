package ingest_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/ingest"
	"github.com/courierq/courier/internal/testenv"
	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/publisher"
)

// stack is a worker on Google's emulator and a SQLite store in a temp dir.
type stack struct {
	client *pubsub.Client
	store  jobs.Store
	pub    *publisher.Publisher
	worker *ingest.Worker
	logs   *logWatch
	runErr chan error
}

// newStack starts a worker for reg. cfg's Client, Store, Registry and Logger
// are filled in.
func newStack(t *testing.T, kind testenv.StoreKind, reg *handlers.Registry, cfg ingest.Config) *stack {
	t.Helper()
	return startStack(t, kind, reg, cfg, true)
}

// eachStore runs fn as a parallel subtest on every job store.
func eachStore(t *testing.T, fn func(t *testing.T, kind testenv.StoreKind)) {
	for _, kind := range testenv.StoreKinds() {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			fn(t, kind)
		})
	}
}

// startStack builds a stack; with run it starts the worker and waits until
// it is ready.
func startStack(t testing.TB, kind testenv.StoreKind, reg *handlers.Registry, cfg ingest.Config, run bool) *stack {
	t.Helper()
	ctx := testCtx(t)
	c := testenv.Client(t, testenv.Google(t))
	store := testenv.Store(t, kind)
	pub, err := publisher.New(c, publisher.Config{Naming: cfg.Naming, DelayThreshold: time.Millisecond, BlockWhenFull: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close(context.Background()) })
	logs := newLogWatch(t)
	cfg.Client, cfg.Store, cfg.Registry, cfg.Logger = c, store, reg, slog.New(logs)
	cfg.Snoozer, _ = store.(jobs.Snoozer) // as courier's Node does
	if cfg.Quick == nil {
		cfg.Quick, _ = store.(jobs.StartSucceeder) // so too: quick runs on the embedded store
	}
	if d, ok := cfg.DeadLetters.(*countDeadLetters); ok {
		d.DeadLetterPublisher = ingest.NewDeadLetters(c)
	}
	w, err := ingest.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{client: c, store: store, pub: pub, worker: w, logs: logs, runErr: make(chan error, 1)}
	if !run {
		t.Cleanup(func() { w.Close() })
		return s
	}
	go func() { s.runErr <- w.Run(context.Background()) }()
	t.Cleanup(func() {
		w.Close()
		if err := <-s.runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-w.Ready():
	case err := <-s.runErr:
		t.Fatalf("Run returned before ready: %v", err)
	case <-ctx.Done():
		t.Fatal("worker not ready in time")
	}
	return s
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// waitState waits, by store notifications, until job id is in a terminal
// state or in want (when not ""), and returns it.
func waitState(ctx context.Context, t testing.TB, store jobs.Store, id string, want jobs.State) *jobs.Job {
	t.Helper()
	return waitJob(ctx, t, store, id, string(want), func(j *jobs.Job) bool { return j.State == want })
}

// waitJob waits, by store notifications, until job id is in a terminal
// state or ok says so, and returns it; what names what it waits for.
func waitJob(ctx context.Context, t testing.TB, store jobs.Store, id, what string, ok func(*jobs.Job) bool) *jobs.Job {
	t.Helper()
	changed, cancel := store.Subscribe(id)
	defer cancel()
	for {
		job, err := store.Get(ctx, id)
		if err != nil && !errors.Is(err, jobs.ErrNotFound) {
			t.Fatalf("Get %s: %v", id, err)
		}
		if job != nil && (ok(job) || job.State.Terminal()) {
			return job
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("job %s: still %+v when the test timed out (waiting for %s)", id, job, what)
		}
	}
}

// logWatch is a slog handler that keeps records and lets a test await one
// whose message contains a string.
type logWatch struct {
	t     testing.TB
	mu    sync.Mutex
	lines []string
	wake  chan struct{}
}

func newLogWatch(t testing.TB) *logWatch { return &logWatch{t: t, wake: make(chan struct{})} }

func (l *logWatch) Enabled(context.Context, slog.Level) bool { return true }
func (l *logWatch) WithAttrs(as []slog.Attr) slog.Handler {
	return &withAttrs{l: l, attrs: as}
}
func (l *logWatch) WithGroup(string) slog.Handler { return l }
func (l *logWatch) Handle(_ context.Context, r slog.Record) error {
	return l.add(r, nil)
}

func (l *logWatch) add(r slog.Record, extra []slog.Attr) error {
	var b strings.Builder
	b.WriteString(r.Message)
	for _, a := range extra {
		b.WriteString(" " + a.String())
	}
	r.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
	if os.Getenv("INGEST_TEST_LOG") != "" {
		l.t.Log(b.String())
	}
	l.mu.Lock()
	l.lines = append(l.lines, b.String())
	close(l.wake)
	l.wake = make(chan struct{})
	l.mu.Unlock()
	return nil
}

// count returns how many records contain all of subs.
func (l *logWatch) count(subs ...string) (int, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			n++
		}
	}
	return n, l.wake
}

// await waits until n records contain all of subs.
func (l *logWatch) await(ctx context.Context, n int, subs ...string) {
	l.t.Helper()
	for {
		got, wake := l.count(subs...)
		if got >= n {
			return
		}
		select {
		case <-wake:
		case <-ctx.Done():
			l.t.Fatalf("log has %d records with %q, want %d", got, subs, n)
		}
	}
}

type withAttrs struct {
	l     *logWatch
	attrs []slog.Attr
}

func (w *withAttrs) Enabled(context.Context, slog.Level) bool { return true }
func (w *withAttrs) WithAttrs(as []slog.Attr) slog.Handler {
	return &withAttrs{l: w.l, attrs: append(append([]slog.Attr{}, w.attrs...), as...)}
}
func (w *withAttrs) WithGroup(string) slog.Handler { return w }
func (w *withAttrs) Handle(_ context.Context, r slog.Record) error {
	return w.l.add(r, w.attrs)
}

func publisherLabels(kv ...string) publisher.Option {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return publisher.WithLabels(m)
}

func withID(id string) publisher.Option { return publisher.WithID(id) }

// countDeadLetters is a DeadLetterPublisher decorator that reports the type
// of each dead letter published (startStack gives it the real publisher).
type countDeadLetters struct {
	ingest.DeadLetterPublisher
	dead chan<- string
}

func (d *countDeadLetters) PublishDeadLetter(ctx context.Context, topic string, m *pubsub.Message) error {
	err := d.DeadLetterPublisher.PublishDeadLetter(ctx, topic, m)
	if err == nil {
		d.dead <- m.Attributes["ce-type"]
	}
	return err
}
