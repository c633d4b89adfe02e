package emulator_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/courierq/courier/emulator"
	"github.com/courierq/courier/emulator/emulatortest"
)

// dirEmulator starts courier's emulator on dir (and clock, if not nil); it
// is closed at the end of the test unless closed before.
func dirEmulator(t *testing.T, dir string, clock *emulatortest.Clock) (*emulator.Server, emulatortest.Raw) {
	t.Helper()
	cfg := emulator.Config{DataDir: dir}
	if clock != nil {
		cfg.Now = clock.Now
	}
	srv, err := emulator.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, emulatortest.NewRaw(t, srv)
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// topicAndSub creates a topic with one subscription.
func topicAndSub(t *testing.T, raw emulatortest.Raw, sub *pubsubpb.Subscription) (topic, name string) {
	t.Helper()
	ctx := context.Background()
	topic = emulatortest.Name("topics", "t")
	must[*pubsubpb.Topic](t)(raw.Pub.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}))
	if sub == nil {
		sub = &pubsubpb.Subscription{}
	}
	sub.Name, sub.Topic = emulatortest.Name("subscriptions", "s"), topic
	if sub.AckDeadlineSeconds == 0 {
		sub.AckDeadlineSeconds = 60
	}
	must[*pubsubpb.Subscription](t)(raw.Sub.CreateSubscription(ctx, sub))
	return topic, sub.Name
}

func publish(t *testing.T, raw emulatortest.Raw, topic string, data ...string) []string {
	t.Helper()
	req := &pubsubpb.PublishRequest{Topic: topic}
	for _, d := range data {
		req.Messages = append(req.Messages, &pubsubpb.PubsubMessage{Data: []byte(d)})
	}
	return must[*pubsubpb.PublishResponse](t)(raw.Pub.Publish(context.Background(), req)).MessageIds
}

// pullAll pulls what is ready now.
func pullAll(t *testing.T, raw emulatortest.Raw, sub string) []*pubsubpb.ReceivedMessage {
	t.Helper()
	return must[*pubsubpb.PullResponse](t)(emulatortest.PullNow(context.Background(), raw.Sub, sub, 1000)).ReceivedMessages
}

func ackAll(t *testing.T, raw emulatortest.Raw, sub string, rms []*pubsubpb.ReceivedMessage) {
	t.Helper()
	var ids []string
	for _, rm := range rms {
		ids = append(ids, rm.AckId)
	}
	must[any](t)(raw.Sub.Acknowledge(context.Background(), &pubsubpb.AcknowledgeRequest{Subscription: sub, AckIds: ids}))
}

// TestDamagedLogRefusesToStart damages one line in the middle of the data
// log: the emulator must not start (dropping that line and everything
// after it, as it once did), must say which file, line and offset and what
// to do, and must leave the file as it was.
func TestDamagedLogRefusesToStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, raw := dirEmulator(t, dir, nil)
	topic, sub := topicAndSub(t, raw, nil)
	for i := range 5 {
		publish(t, raw, topic, fmt.Sprint("m", i))
	}
	srv.Close()
	path := filepath.Join(dir, "pubsub.log")
	lines := bytes.SplitAfter(must[[]byte](t)(os.ReadFile(path)), []byte("\n"))
	// Lines: hwm, topic, sub, then one publish per message. Damage the
	// third publish.
	const bad = 6
	var off int
	for _, l := range lines[:bad-1] {
		off += len(l)
	}
	lines[bad-1] = []byte("{\"op\":\"publish\",\"name\":\x00garbage}\n")
	damaged := bytes.Join(lines, nil)
	if err := os.WriteFile(path, damaged, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := emulator.Start(context.Background(), emulator.Config{DataDir: dir})
	if err == nil {
		t.Fatal("the emulator started on a data log damaged in the middle")
	}
	for _, want := range []string{path, fmt.Sprintf("line %d", bad), fmt.Sprintf("byte offset %d", off), fmt.Sprintf("sed -i '%dd'", bad), "mv " + path} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if got := must[[]byte](t)(os.ReadFile(path)); !bytes.Equal(got, damaged) {
		t.Fatal("the damaged data log was rewritten")
	}
	// Deleting the line, as the error says, keeps every other message.
	lines = append(lines[:bad-1], lines[bad:]...)
	if err := os.WriteFile(path, bytes.Join(lines, nil), 0o644); err != nil {
		t.Fatal(err)
	}
	_, raw = dirEmulator(t, dir, nil)
	if got := pullAll(t, raw, sub); len(got) != 4 {
		t.Fatalf("after deleting the damaged line got %d messages, want the other 4", len(got))
	}
}

// TestMessageIDsUniqueAcrossRestarts acks everything and restarts twice
// (so that the log replayed holds no message, only the compacted state):
// new messages must not reuse old IDs.
func TestMessageIDsUniqueAcrossRestarts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, raw := dirEmulator(t, dir, nil)
	topic, sub := topicAndSub(t, raw, nil)
	seen := map[string]bool{}
	for round := range 3 {
		for _, id := range publish(t, raw, topic, "a", "b") {
			if seen[id] {
				t.Fatalf("round %d: message ID %s was used before a restart", round, id)
			}
			seen[id] = true
		}
		ackAll(t, raw, sub, pullAll(t, raw, sub))
		for range 2 {
			srv.Close()
			srv, raw = dirEmulator(t, dir, nil)
		}
	}
}

// TestSeekBeyond2262 seeks to the year 3000, past what nanoseconds since
// 1970 hold in an int64: the seek must hold across a restart (it once
// overflowed in the log and came back as a seek into the past), and a time
// past 9999 is InvalidArgument.
func TestSeekBeyond2262(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	srv, raw := dirEmulator(t, dir, nil)
	topic, sub := topicAndSub(t, raw, &pubsubpb.Subscription{RetainAckedMessages: true})
	publish(t, raw, topic, "a", "b")
	far := time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)
	must[*pubsubpb.SeekResponse](t)(raw.Sub.Seek(ctx, &pubsubpb.SeekRequest{Subscription: sub, Target: &pubsubpb.SeekRequest_Time{Time: timestamppb.New(far)}}))
	if got := pullAll(t, raw, sub); len(got) != 0 {
		t.Fatalf("after seeking to %v got %d messages, want none", far, len(got))
	}
	_, err := raw.Sub.Seek(ctx, &pubsubpb.SeekRequest{Subscription: sub, Target: &pubsubpb.SeekRequest_Time{Time: &timestamppb.Timestamp{Seconds: 253402300800}}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("seek to year 10000: %v, want InvalidArgument", err)
	}
	srv.Close()
	srv, raw = dirEmulator(t, dir, nil)
	if got := pullAll(t, raw, sub); len(got) != 0 {
		t.Fatalf("after a restart the seek to %v was undone: %d messages came back", far, len(got))
	}
	// A seek before 1678 (the other end of int64 nanoseconds) brings back
	// every retained message, and holds across a restart too.
	must[*pubsubpb.SeekResponse](t)(raw.Sub.Seek(ctx, &pubsubpb.SeekRequest{Subscription: sub, Target: &pubsubpb.SeekRequest_Time{Time: timestamppb.New(time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC))}}))
	srv.Close()
	_, raw = dirEmulator(t, dir, nil)
	if got := pullAll(t, raw, sub); len(got) != 2 {
		t.Fatalf("after seeking to the year 1000 and a restart got %d messages, want 2", len(got))
	}
}

// TestDeliveryAttemptsSurviveRestart nacks a message of a subscription
// with a dead-letter policy three times, restarts, and expects the fourth
// delivery to say so; after the fifth it goes to the dead-letter topic.
func TestDeliveryAttemptsSurviveRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	srv, raw := dirEmulator(t, dir, nil)
	dlTopic, dlSub := topicAndSub(t, raw, nil)
	topic, sub := topicAndSub(t, raw, &pubsubpb.Subscription{DeadLetterPolicy: &pubsubpb.DeadLetterPolicy{DeadLetterTopic: dlTopic, MaxDeliveryAttempts: 5}})
	publish(t, raw, topic, "poison")
	nack := func(rm *pubsubpb.ReceivedMessage) {
		must[any](t)(raw.Sub.ModifyAckDeadline(ctx, &pubsubpb.ModifyAckDeadlineRequest{Subscription: sub, AckIds: []string{rm.AckId}}))
	}
	for want := int32(1); want <= 3; want++ {
		got := pullAll(t, raw, sub)
		if len(got) != 1 || got[0].DeliveryAttempt != want {
			t.Fatalf("delivery %d: %v", want, got)
		}
		nack(got[0])
	}
	// The third delivery is outstanding at the restart: it counts.
	got := pullAll(t, raw, sub)
	if len(got) != 1 || got[0].DeliveryAttempt != 4 {
		t.Fatalf("delivery 4: %v", got)
	}
	srv.Close()
	srv, raw = dirEmulator(t, dir, nil)
	got = pullAll(t, raw, sub)
	if len(got) != 1 || got[0].DeliveryAttempt != 5 {
		t.Fatalf("first delivery after the restart: %v, want delivery_attempt 5", got)
	}
	nack(got[0])
	if got := pullAll(t, raw, sub); len(got) != 0 {
		t.Fatalf("a sixth delivery: %v", got)
	}
	// Dead-lettered, exactly once, and that survives a restart too.
	srv.Close()
	_, raw = dirEmulator(t, dir, nil)
	if got := pullAll(t, raw, sub); len(got) != 0 {
		t.Fatalf("after the restart the dead-lettered message came back: %v", got)
	}
	dead := pullAll(t, raw, dlSub)
	if len(dead) != 1 || dead[0].Message.Attributes["CloudPubSubDeadLetterSourceDeliveryCount"] != "5" {
		t.Fatalf("dead-letter topic holds %v, want the message once, delivered 5 times", dead)
	}
}

// TestExpiryOnClock moves an injected clock past a subscription's
// expiration_policy.ttl and a snapshot's expire_time: both are gone, and
// stay gone after a restart; a subscription with activity, or without a
// ttl, stays.
func TestExpiryOnClock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	clock := &emulatortest.Clock{}
	srv, raw := dirEmulator(t, dir, clock)
	day := 24 * time.Hour
	topic, idle := topicAndSub(t, raw, &pubsubpb.Subscription{ExpirationPolicy: &pubsubpb.ExpirationPolicy{Ttl: durationOf(day)}})
	busy := emulatortest.Name("subscriptions", "busy")
	must[*pubsubpb.Subscription](t)(raw.Sub.CreateSubscription(ctx, &pubsubpb.Subscription{Name: busy, Topic: topic, ExpirationPolicy: &pubsubpb.ExpirationPolicy{Ttl: durationOf(day)}}))
	forever := emulatortest.Name("subscriptions", "forever")
	must[*pubsubpb.Subscription](t)(raw.Sub.CreateSubscription(ctx, &pubsubpb.Subscription{Name: forever, Topic: topic, ExpirationPolicy: &pubsubpb.ExpirationPolicy{}}))
	publish(t, raw, topic, "x")
	snap := emulatortest.Name("snapshots", "snap")
	sn := must[*pubsubpb.Snapshot](t)(raw.Sub.CreateSnapshot(ctx, &pubsubpb.CreateSnapshotRequest{Name: snap, Subscription: forever}))
	if got, want := sn.ExpireTime.AsTime(), clock.Now().Add(7*day); got.Before(want.Add(-time.Minute)) || got.After(want) {
		t.Fatalf("snapshot expire_time %v, want 7 days after its oldest message (about %v)", got, want)
	}

	clock.Advance(day - time.Hour)
	pullAll(t, raw, busy) // activity
	clock.Advance(2 * time.Hour)
	if _, err := raw.Sub.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: idle}); status.Code(err) != codes.NotFound {
		t.Fatalf("GetSubscription of a subscription idle for 25h with a ttl of 24h: %v, want NotFound", err)
	}
	must[*pubsubpb.Subscription](t)(raw.Sub.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: busy}))
	list := must[*pubsubpb.ListTopicSubscriptionsResponse](t)(raw.Pub.ListTopicSubscriptions(ctx, &pubsubpb.ListTopicSubscriptionsRequest{Topic: topic}))
	if len(list.Subscriptions) != 2 {
		t.Fatalf("the topic lists %v, want the busy and the never-expiring subscription", list.Subscriptions)
	}
	must[*pubsubpb.Snapshot](t)(raw.Sub.GetSnapshot(ctx, &pubsubpb.GetSnapshotRequest{Snapshot: snap}))
	clock.Advance(6 * day)
	if _, err := raw.Sub.GetSnapshot(ctx, &pubsubpb.GetSnapshotRequest{Snapshot: snap}); status.Code(err) != codes.NotFound {
		t.Fatalf("GetSnapshot past its expire_time: %v, want NotFound", err)
	}
	// busy has now been idle for 6 days: listing sweeps it away.
	list2 := must[*pubsubpb.ListSubscriptionsResponse](t)(raw.Sub.ListSubscriptions(ctx, &pubsubpb.ListSubscriptionsRequest{Project: "projects/" + emulatortest.Project, PageSize: 1000}))
	for _, s := range list2.Subscriptions {
		if s.Name == busy || s.Name == idle {
			t.Fatalf("ListSubscriptions lists expired subscription %s", s.Name)
		}
	}
	srv.Close()
	_, raw = dirEmulator(t, dir, clock)
	for _, name := range []string{idle, busy} {
		if _, err := raw.Sub.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: name}); status.Code(err) != codes.NotFound {
			t.Fatalf("after a restart, expired subscription %s: %v, want NotFound", name, err)
		}
	}
	if _, err := raw.Sub.GetSnapshot(ctx, &pubsubpb.GetSnapshotRequest{Snapshot: snap}); status.Code(err) != codes.NotFound {
		t.Fatalf("after a restart, expired snapshot: %v", err)
	}
	must[*pubsubpb.Subscription](t)(raw.Sub.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: forever}))
}

func durationOf(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

// TestSchemasSurviveRestart keeps schemas, their revisions, a topic's
// schema settings and the push token key across a restart.
func TestSchemasSurviveRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	srv, raw := dirEmulator(t, dir, nil)
	jwks := srv.JWKS()
	parent := "projects/" + emulatortest.Project
	sc := must[*pubsubpb.Schema](t)(raw.Sch.CreateSchema(ctx, &pubsubpb.CreateSchemaRequest{Parent: parent, SchemaId: "persisted",
		Schema: &pubsubpb.Schema{Type: pubsubpb.Schema_PROTOCOL_BUFFER, Definition: "syntax = \"proto3\"; message M { int32 n = 1; }"}}))
	v2 := must[*pubsubpb.Schema](t)(raw.Sch.CommitSchema(ctx, &pubsubpb.CommitSchemaRequest{Name: sc.Name,
		Schema: &pubsubpb.Schema{Type: pubsubpb.Schema_PROTOCOL_BUFFER, Definition: "syntax = \"proto3\"; message M { int32 n = 1; string s = 2; }"}}))
	topic := emulatortest.Name("topics", "schema")
	must[*pubsubpb.Topic](t)(raw.Pub.CreateTopic(ctx, &pubsubpb.Topic{Name: topic, SchemaSettings: &pubsubpb.SchemaSettings{Schema: sc.Name, Encoding: pubsubpb.Encoding_JSON}}))
	srv.Close()

	srv, raw = dirEmulator(t, dir, nil)
	if string(srv.JWKS()) != string(jwks) {
		t.Error("the push token key changed across a restart")
	}
	revs := must[*pubsubpb.ListSchemaRevisionsResponse](t)(raw.Sch.ListSchemaRevisions(ctx, &pubsubpb.ListSchemaRevisionsRequest{Name: sc.Name}))
	if len(revs.Schemas) != 2 || revs.Schemas[0].RevisionId != v2.RevisionId {
		t.Fatalf("revisions after a restart: %v, want %s then %s", revs.Schemas, v2.RevisionId, sc.RevisionId)
	}
	_, err := raw.Pub.Publish(ctx, &pubsubpb.PublishRequest{Topic: topic, Messages: []*pubsubpb.PubsubMessage{{Data: []byte(`{"n":"x"}`)}}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("after a restart a non-conforming message: %v, want InvalidArgument", err)
	}
	publish(t, raw, topic, `{"n":1,"s":"ok"}`)
}
