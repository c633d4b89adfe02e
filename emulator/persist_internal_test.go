package emulator

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"testing"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// tornWriter writes the first n bytes of each record to the data log and
// then fails, as a full disk does.
type tornWriter struct {
	f *os.File
	n int
}

func (w tornWriter) Write(p []byte) (int, error) {
	k, _ := w.f.Write(p[:min(w.n, len(p))])
	return k, syscall.ENOSPC
}

// TestFailedWriteChangesNothing makes every write to the data log fail
// halfway: each change must fail with Internal and leave memory as it was,
// and the log must stay readable (the partial record cut off), so that a
// restart sees what the emulator showed.
func TestFailedWriteChangesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	srv, err := Start(ctx, Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	e := srv.eng
	pub, sub, sch := &publisherService{e: e}, &subscriberService{e: e}, &schemaService{e: e}
	topic, s1 := "projects/p/topics/topic", "projects/p/subscriptions/sub1"
	ok := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	ok(pub.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}))
	ok(sub.CreateSubscription(ctx, &pubsubpb.Subscription{Name: s1, Topic: topic, AckDeadlineSeconds: 60, RetainAckedMessages: true}))
	ok(pub.Publish(ctx, &pubsubpb.PublishRequest{Topic: topic, Messages: []*pubsubpb.PubsubMessage{{Data: []byte("m1")}}}))
	pull := func() []*pubsubpb.ReceivedMessage {
		t.Helper()
		//lint:ignore SA1019 the server must honour it
		res, err := sub.Pull(ctx, &pubsubpb.PullRequest{Subscription: s1, MaxMessages: 10, ReturnImmediately: true})
		if err != nil {
			t.Fatal(err)
		}
		return res.ReceivedMessages
	}
	m1 := pull()
	if len(m1) != 1 {
		t.Fatalf("pulled %d messages, want 1", len(m1))
	}

	e.mu.Lock()
	good := e.log.w
	e.log.w = tornWriter{f: e.log.f, n: 17}
	e.mu.Unlock()
	failed := func(what string) func(any, error) {
		return func(_ any, err error) {
			t.Helper()
			if status.Code(err) != codes.Internal {
				t.Fatalf("%s with a failing data log: %v, want Internal", what, err)
			}
		}
	}
	failed("CreateTopic")(pub.CreateTopic(ctx, &pubsubpb.Topic{Name: "projects/p/topics/other"}))
	failed("Publish")(pub.Publish(ctx, &pubsubpb.PublishRequest{Topic: topic, Messages: []*pubsubpb.PubsubMessage{{Data: []byte("m2")}}}))
	failed("Acknowledge")(sub.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{Subscription: s1, AckIds: []string{m1[0].AckId}}))
	failed("CreateSubscription")(sub.CreateSubscription(ctx, &pubsubpb.Subscription{Name: "projects/p/subscriptions/sub2", Topic: topic}))
	failed("DeleteSubscription")(sub.DeleteSubscription(ctx, &pubsubpb.DeleteSubscriptionRequest{Subscription: s1}))
	failed("Seek")(sub.Seek(ctx, &pubsubpb.SeekRequest{Subscription: s1, Target: &pubsubpb.SeekRequest_Time{Time: timestamppb.Now()}}))
	failed("CreateSchema")(sch.CreateSchema(ctx, &pubsubpb.CreateSchemaRequest{Parent: "projects/p", SchemaId: "schema", Schema: &pubsubpb.Schema{Type: pubsubpb.Schema_AVRO, Definition: `"string"`}}))
	failed("DeleteTopic")(pub.DeleteTopic(ctx, &pubsubpb.DeleteTopicRequest{Topic: topic}))
	failed("CreateSnapshot")(sub.CreateSnapshot(ctx, &pubsubpb.CreateSnapshotRequest{Name: "projects/p/snapshots/snap", Subscription: s1}))

	check := func(when string) {
		t.Helper()
		if _, err := pub.GetTopic(ctx, &pubsubpb.GetTopicRequest{Topic: "projects/p/topics/other"}); status.Code(err) != codes.NotFound {
			t.Fatalf("%s: the topic whose creation failed: %v", when, err)
		}
		if _, err := pub.GetTopic(ctx, &pubsubpb.GetTopicRequest{Topic: topic}); err != nil {
			t.Fatalf("%s: the topic whose deletion failed: %v", when, err)
		}
		if _, err := sub.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: "projects/p/subscriptions/sub2"}); status.Code(err) != codes.NotFound {
			t.Fatalf("%s: the subscription whose creation failed: %v", when, err)
		}
		if _, err := sch.GetSchema(ctx, &pubsubpb.GetSchemaRequest{Name: "projects/p/schemas/schema"}); status.Code(err) != codes.NotFound {
			t.Fatalf("%s: the schema whose creation failed: %v", when, err)
		}
		if _, err := sub.GetSnapshot(ctx, &pubsubpb.GetSnapshotRequest{Snapshot: "projects/p/snapshots/snap"}); status.Code(err) != codes.NotFound {
			t.Fatalf("%s: the snapshot whose creation failed: %v", when, err)
		}
	}
	check("with the failing log")
	// m1 is still outstanding (its ack failed; the seek failed): a nack
	// brings it back, and m2 was never published.
	ok(sub.ModifyAckDeadline(ctx, &pubsubpb.ModifyAckDeadlineRequest{Subscription: s1, AckIds: []string{m1[0].AckId}}))
	again := pull()
	if len(again) != 1 || string(again[0].Message.Data) != "m1" {
		t.Fatalf("after the failed ack and publish, got %v, want m1 alone", again)
	}

	e.mu.Lock()
	e.log.w = good
	e.mu.Unlock()
	ok(pub.Publish(ctx, &pubsubpb.PublishRequest{Topic: topic, Messages: []*pubsubpb.PubsubMessage{{Data: []byte("m3")}}}))
	ok(sub.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{Subscription: s1, AckIds: []string{again[0].AckId}}))
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}

	srv, err = Start(ctx, Config{DataDir: dir})
	if err != nil {
		t.Fatalf("restart after failed writes: %v", err)
	}
	defer srv.Close()
	e = srv.eng
	pub, sub, sch = &publisherService{e: e}, &subscriberService{e: e}, &schemaService{e: e}
	check("after a restart")
	got := pull()
	if len(got) != 1 || string(got[0].Message.Data) != "m3" {
		t.Fatalf("after a restart got %v, want m3 alone (m1 acked, m2 never published)", got)
	}
}

// TestOnlineCompaction publishes and acks for a while with a small
// Config.CompactBytes: the data log must be compacted while the emulator
// runs (it once grew until the next start), and a restart must restore the
// state from the compacted log.
func TestOnlineCompaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	const compactAt = 32 << 10
	srv, err := Start(ctx, Config{DataDir: dir, CompactBytes: compactAt})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	e := srv.eng
	pub, sub := &publisherService{e: e}, &subscriberService{e: e}
	topic, name := "projects/p/topics/compact", "projects/p/subscriptions/compact"
	if _, err := pub.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.CreateSubscription(ctx, &pubsubpb.Subscription{Name: name, Topic: topic, AckDeadlineSeconds: 60}); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 1000)
	var written, biggest int64
	var keep []string
	for i := range 400 {
		res, err := pub.Publish(ctx, &pubsubpb.PublishRequest{Topic: topic, Messages: []*pubsubpb.PubsubMessage{{Data: data, Attributes: map[string]string{"i": fmt.Sprint(i)}}}})
		if err != nil {
			t.Fatal(err)
		}
		written += 1400
		//lint:ignore SA1019 the server must honour it
		pr, err := sub.Pull(ctx, &pubsubpb.PullRequest{Subscription: name, MaxMessages: 10, ReturnImmediately: true})
		if err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 { // leave some unacked
			keep = append(keep, res.MessageIds[0])
			continue
		}
		var ids []string
		for _, rm := range pr.ReceivedMessages {
			ids = append(ids, rm.AckId)
		}
		if _, err := sub.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{Subscription: name, AckIds: ids}); err != nil {
			t.Fatal(err)
		}
		if st, err := os.Stat(e.log.path); err == nil {
			biggest = max(biggest, st.Size())
		}
		// A compaction runs beside the RPCs; give each one that starts
		// the time to finish, as a scheduler would, so that the sizes
		// seen are the design's, not this tight loop's.
		e.mu.Lock()
		before, started := e.log.compactions, e.log.tail != nil || len(e.log.kick) > 0
		e.mu.Unlock()
		for started {
			runtime.Gosched()
			e.mu.Lock()
			started = e.log.compactions == before
			e.mu.Unlock()
		}
	}
	e.mu.Lock()
	compactions := e.log.compactions
	e.mu.Unlock()
	if compactions < 5 {
		t.Fatalf("%d compactions while running, after about %d bytes were written with CompactBytes %d", compactions, written, compactAt)
	}
	if biggest > 3*compactAt {
		t.Fatalf("the data log grew to %d bytes while running (about %d written), with CompactBytes %d", biggest, written, compactAt)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	srv, err = Start(ctx, Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	sub = &subscriberService{e: srv.eng}
	// The unacked messages are back (their deadlines end with the restart).
	//lint:ignore SA1019 the server must honour it
	pr, err := sub.Pull(ctx, &pubsubpb.PullRequest{Subscription: name, MaxMessages: 100, ReturnImmediately: true})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, rm := range pr.ReceivedMessages {
		got = append(got, rm.Message.MessageId)
	}
	if fmt.Sprint(got) != fmt.Sprint(keep) {
		t.Fatalf("after compactions and a restart got messages %v, want the unacked %v", got, keep)
	}
}
