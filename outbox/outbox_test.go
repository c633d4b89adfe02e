package outbox_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/courierq/courier/internal/testenv"
	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/sqlite"
	"github.com/courierq/courier/outbox"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
	"github.com/courierq/courier/publisher"
	"github.com/courierq/courier/wire"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func openStore(t *testing.T, now func() time.Time) jobs.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "jobs.db"), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func enqueue(t *testing.T, s jobs.Store, id, msg string, runAfter time.Time) {
	t.Helper()
	data, _ := proto.Marshal(&demov1.Echo{Message: msg})
	if _, _, err := s.Enqueue(context.Background(), jobs.EnqueueParams{Job: jobs.Job{ID: id, Type: "courier.demo.v1.Echo", Payload: data, Labels: map[string]string{"k": "v"}, RunAfter: runAfter}}); err != nil {
		t.Fatal(err)
	}
}

// TestPassPublishesDueEntries shows the relay publishing due entries with
// their job IDs, labels and payloads, honouring run_after, and removing only
// what Pub/Sub accepted.
func TestPassPublishesDueEntries(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := testenv.Client(t, testenv.Google(t))
	testenv.CreateTopic(t, c, "courier-demo-v1-Echo", "sub")
	pub, err := publisher.New(c, publisher.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close(ctx)

	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	store := openStore(t, clock)
	enqueue(t, store, "job-a", "a", time.Time{})
	enqueue(t, store, "job-b", "b", time.Time{})
	enqueue(t, store, "job-later", "later", now.Add(time.Hour))

	relay, err := outbox.New(outbox.Config{Store: store, Publisher: pub, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	n, err := relay.Pass(ctx)
	if err != nil || n != 2 {
		t.Fatalf("Pass: %d, %v; want 2 published", n, err)
	}
	msgs := testenv.Pull(ctx, t, c, "sub", 2)
	got := map[string]string{}
	for _, m := range msgs {
		var e demov1.Echo
		if err := proto.Unmarshal(m.Data, &e); err != nil {
			t.Fatal(err)
		}
		got[m.Attributes[wire.AttrID]] = e.Message
		if m.Attributes[wire.AttrType] != "courier.demo.v1.Echo" || m.Attributes[wire.AttrLabelPrefix+"k"] != "v" {
			t.Errorf("attributes: %v", m.Attributes)
		}
	}
	if got["job-a"] != "a" || got["job-b"] != "b" {
		t.Fatalf("published %v", got)
	}
	if count, _, _ := store.OutboxStats(ctx); count != 1 {
		t.Fatalf("outbox holds %d entries after the pass, want 1 (the run_after job)", count)
	}
	now = now.Add(2 * time.Hour)
	if n, err := relay.Pass(ctx); err != nil || n != 1 {
		t.Fatalf("Pass after run_after: %d, %v", n, err)
	}
	if m := testenv.Pull(ctx, t, c, "sub", 1); m[0].Attributes[wire.AttrID] != "job-later" {
		t.Fatalf("published %v", m[0].Attributes)
	}
}

// TestPassKeepsEntriesWhenPublishingFails: with no topic to publish to, the
// entry stays in the outbox, due again after its backoff, and the error
// says so.
func TestPassKeepsEntriesWhenPublishingFails(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := testenv.Client(t, testenv.Google(t))
	pub, err := publisher.New(c, publisher.Config{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close(ctx)
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	store := openStore(t, clock)
	enqueue(t, store, "job-a", "a", time.Time{})
	relay, err := outbox.New(outbox.Config{Store: store, Publisher: pub, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	n, err := relay.Pass(ctx)
	if err == nil || n != 0 || errors.Is(err, outbox.ErrStore) {
		t.Fatalf("Pass with no topic: %d, %v; want an error that is not the store's", n, err)
	}
	if count, _, _ := store.OutboxStats(ctx); count != 1 {
		t.Fatalf("outbox holds %d entries after a failed pass, want 1", count)
	}
	// Once the topic exists and the entry's backoff has passed, the next
	// pass publishes it.
	testenv.CreateTopic(t, c, "courier-demo-v1-Echo", "sub")
	if n, err := relay.Pass(ctx); err != nil || n != 0 {
		t.Fatalf("Pass before the entry's backoff passed: %d, %v; want nothing", n, err)
	}
	now = now.Add(time.Minute)
	if n, err := relay.Pass(ctx); err != nil || n != 1 {
		t.Fatalf("Pass after the topic appeared: %d, %v", n, err)
	}
}

// TestRunPublishesOnNotify: Run wakes on Notify rather than waiting for its
// poll interval.
func TestRunPublishesOnNotify(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := testenv.Client(t, testenv.Google(t))
	testenv.CreateTopic(t, c, "courier-demo-v1-Echo", "sub")
	pub, err := publisher.New(c, publisher.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close(ctx)
	store := openStore(t, nil)
	published := make(chan []string, 10)
	watched := &watchPublisher{Publisher: pub, batch: func(msgs []*wire.Message, errs []error) {
		var ids []string
		for i, m := range msgs {
			if errs[i] == nil {
				ids = append(ids, m.ID)
			}
		}
		published <- ids
	}}
	relay, err := outbox.New(outbox.Config{Store: store, Publisher: watched, PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- relay.Run(runCtx) }()
	enqueue(t, store, "job-a", "a", time.Time{})
	relay.Notify()
	select {
	case e := <-published:
		if len(e) != 1 || e[0] != "job-a" {
			t.Fatalf("published %v", e)
		}
	case <-ctx.Done():
		t.Fatal("Notify did not make the relay publish")
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	store := openStore(t, nil)
	for _, tc := range []struct {
		cfg  outbox.Config
		want string
	}{
		{outbox.Config{}, "Config.Store"},
		{outbox.Config{Store: store, Publisher: &publisher.Publisher{}, BatchSize: 1001}, "BatchSize"},
		{outbox.Config{Store: store, Publisher: &publisher.Publisher{}, ClaimLease: time.Second, PublishTimeout: 2 * time.Second}, "PublishTimeout"},
		{outbox.Config{Store: store, Publisher: &publisher.Publisher{}, MinBackoff: time.Minute, MaxBackoff: time.Second}, "MinBackoff"},
		{outbox.Config{Store: store, Publisher: &publisher.Publisher{}, ClaimLease: -1}, "negative"},
	} {
		if _, err := outbox.New(tc.cfg); err == nil || !strings.HasPrefix(err.Error(), "outbox: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v; want an error naming %s", tc.cfg, err, tc.want)
		}
	}
	r, err := outbox.New(outbox.Config{Store: store, Publisher: &publisher.Publisher{}})
	if err != nil {
		t.Fatal(err)
	}
	r2, _ := outbox.New(outbox.Config{Store: store, Publisher: &publisher.Publisher{}})
	if r.Owner() == "" || r.Owner() == r2.Owner() {
		t.Fatalf("owners %q and %q: want distinct random IDs", r.Owner(), r2.Owner())
	}
}
