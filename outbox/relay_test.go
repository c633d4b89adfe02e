package outbox_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/courierq/courier/internal/testenv"
	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/postgres"
	"github.com/courierq/courier/outbox"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
	"github.com/courierq/courier/publisher"
	"github.com/courierq/courier/wire"
)

// retries is a real store that reports each RetryOutbox it passes on.
type retries struct {
	jobs.Store
	ch chan jobs.RetryOutboxParams
}

func (r *retries) RetryOutbox(ctx context.Context, p jobs.RetryOutboxParams) error {
	err := r.Store.RetryOutbox(ctx, p)
	r.ch <- p
	return err
}

// runRelay runs r until the test ends.
func runRelay(t *testing.T, r *outbox.Relay) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// TestPoisonEntriesDoNotHoldBackOthers: next to ordinary entries, a message
// too large for Pub/Sub fails its job at once with a message naming the size
// and the limit, and an entry whose topic does not exist is retried on a
// growing backoff of its own, while ordinary entries keep flowing.
func TestPoisonEntriesDoNotHoldBackOthers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := testenv.Client(t, testenv.Google(t))
	testenv.CreateTopic(t, c, "courier-demo-v1-Echo", "sub")
	pub, err := publisher.New(c, publisher.Config{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close(context.Background()) }) // after the relays stop
	store := &retries{Store: openStore(t, nil), ch: make(chan jobs.RetryOutboxParams, 100)}

	big := enqueueRaw(t, store, "big", "courier.demo.v1.Echo", bytes.Repeat([]byte{'x'}, 10_000_000))
	enqueue(t, store, "echo-1", "one", time.Time{})
	sleep, _ := proto.Marshal(&demov1.Sleep{})
	enqueueRaw(t, store, "no-topic", "courier.demo.v1.Sleep", sleep) // topic courier-demo-v1-Sleep does not exist
	enqueue(t, store, "echo-2", "two", time.Time{})
	failed, unsubscribe := store.Subscribe(big)
	defer unsubscribe()

	const minBackoff = 20 * time.Millisecond
	relay, err := outbox.New(outbox.Config{Store: store, Publisher: pub, MinBackoff: minBackoff, MaxBackoff: time.Second,
		PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runRelay(t, relay)

	got := ids(testenv.Pull(ctx, t, c, "sub", 2))
	if !got["echo-1"] || !got["echo-2"] {
		t.Fatalf("published %v; want echo-1 and echo-2 at once", got)
	}
	for {
		j, err := store.Get(ctx, big)
		if err != nil {
			t.Fatal(err)
		}
		if j.State == jobs.Failed {
			if j.ErrorCode != 3 || !strings.Contains(j.ErrorMessage, "10000") || !strings.Contains(j.ErrorMessage, "limit of 10000000 bytes") {
				t.Fatalf("the too large job failed with code %d, %q; want INVALID_ARGUMENT naming the size and the limit", j.ErrorCode, j.ErrorMessage)
			}
			break
		}
		select {
		case <-failed:
		case <-ctx.Done():
			t.Fatalf("the too large job is still %s", j.State)
		}
	}

	// The entry with no topic: retried, each time after a longer wait.
	var prev time.Time
	for attempt := range 4 {
		var p jobs.RetryOutboxParams
		select {
		case p = <-store.ch:
		case <-ctx.Done():
			t.Fatalf("no retry %d of the entry with no topic", attempt)
		}
		if p.ID != "no-topic" || !strings.Contains(p.Error, "NotFound") && !strings.Contains(strings.ToLower(p.Error), "not found") {
			t.Fatalf("retry %d: %+v; want the no-topic entry with its error", attempt, p)
		}
		// MinBackoff·2^attempt, jittered down to half: the next try comes no
		// earlier than half the wait; waits double.
		if attempt > 0 {
			if gap, least := p.Due.Sub(prev), minBackoff<<attempt/2; gap < least {
				t.Fatalf("retry %d is due %v after the previous one's due time; want at least %v", attempt, gap, least)
			}
		}
		prev = p.Due
		if attempt == 1 {
			// Others still flow meanwhile.
			enqueue(t, store, "echo-3", "three", time.Time{})
			relay.Notify()
			if got := ids(testenv.Pull(ctx, t, c, "sub", 1)); !got["echo-3"] {
				t.Fatalf("published %v while the no-topic entry is retried; want echo-3", got)
			}
		}
	}
	es, err := store.ClaimOutbox(ctx, jobs.ClaimOutboxParams{Limit: 10, Owner: "test", LeaseFor: time.Hour})
	if err != nil || len(es) > 1 {
		t.Fatalf("outbox = %+v, %v; want at most the no-topic entry", es, err)
	}
	if len(es) == 1 && (es[0].JobID != "no-topic" || es[0].Attempts < 4 || es[0].LastError == "") {
		t.Fatalf("no-topic entry %+v: want its attempts and last error recorded", es[0])
	}
}

// TestTwoRelaysOnePostgresStore: two relays, each on its own replica of one
// PostgreSQL store, publish 300 due entries (some with a run_after in the
// past): each exactly once.
func TestTwoRelaysOnePostgresStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	url, schema := testenv.PostgresSchema(t)
	open := func() jobs.Store {
		s, err := postgres.Open(ctx, postgres.Config{URL: url, Schema: schema, MaxConns: 6})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open(), open()
	c := testenv.Client(t, testenv.Google(t))
	testenv.CreateTopic(t, c, "courier-demo-v1-Echo", "sub")
	pub, err := publisher.New(c, publisher.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close(context.Background()) }) // after the relays stop

	const n = 300
	for i := range n {
		var runAfter time.Time
		if i%3 == 0 {
			runAfter = time.Now().Add(-time.Minute)
		}
		enqueue(t, a, fmt.Sprintf("job-%03d", i), "m", runAfter)
	}
	var (
		mu        sync.Mutex
		attempts  = map[string]int{}
		published = map[string]string{}
		allDone   = make(chan struct{})
	)
	relay := func(s jobs.Store, name string) *outbox.Relay {
		watched := &watchPublisher{Publisher: pub, batch: func(msgs []*wire.Message, errs []error) {
			mu.Lock()
			defer mu.Unlock()
			for i, m := range msgs {
				attempts[m.ID]++
				if errs[i] != nil {
					continue
				}
				if prev, ok := published[m.ID]; ok {
					t.Errorf("job %s published by %s and by %s", m.ID, prev, name)
				}
				published[m.ID] = name
			}
			if len(published) == n {
				close(allDone)
			}
		}}
		r, err := outbox.New(outbox.Config{Store: s, Publisher: watched, BatchSize: 20, Owner: name})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	ra, rb := relay(a, "relay-a"), relay(b, "relay-b")
	runRelay(t, ra)
	runRelay(t, rb)
	ra.Notify()
	rb.Notify()
	select {
	case <-allDone:
	case <-ctx.Done():
		mu.Lock()
		t.Fatalf("%d of %d entries published", len(published), n)
	}
	msgs := testenv.Pull(ctx, t, c, "sub", n)
	got := ids(msgs)
	mu.Lock()
	defer mu.Unlock()
	by := map[string]int{}
	for id, k := range attempts {
		if k != 1 {
			t.Errorf("job %s was published %d times", id, k)
		}
	}
	for _, r := range published {
		by[r]++
	}
	if len(got) != n || len(attempts) != n {
		t.Fatalf("pulled %d distinct of %d messages, %d jobs published; want %d", len(got), len(msgs), len(attempts), n)
	}
	t.Logf("published by relay: %v", by)
	if cnt, _, err := a.OutboxStats(ctx); err != nil || cnt != 0 {
		t.Fatalf("outbox after both relays = %d, %v; want empty", cnt, err)
	}
}

func enqueueRaw(t *testing.T, s jobs.Store, id, typ string, payload []byte) string {
	t.Helper()
	j, _, err := s.Enqueue(context.Background(), jobs.EnqueueParams{Job: jobs.Job{ID: id, Type: typ, Payload: payload}})
	if err != nil {
		t.Fatal(err)
	}
	return j.ID
}

func ids[M interface{ GetAttributes() map[string]string }](msgs []M) map[string]bool {
	out := map[string]bool{}
	for _, m := range msgs {
		out[m.GetAttributes()[wire.AttrID]] = true
	}
	return out
}

// watchPublisher is an outbox.Publisher decorator that reports each batch
// and its outcomes.
type watchPublisher struct {
	outbox.Publisher
	batch func(msgs []*wire.Message, errs []error)
}

func (w *watchPublisher) PublishBatch(ctx context.Context, msgs []*wire.Message) []error {
	errs := w.Publisher.PublishBatch(ctx, msgs)
	w.batch(msgs, errs)
	return errs
}
