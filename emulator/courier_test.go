package emulator_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
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

func TestStartConfigErrors(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		cfgs []emulator.Config
		want string
	}{
		{[]emulator.Config{{}, {}}, "at most one Config"},
		{[]emulator.Config{{Port: -1}}, "Config.Port -1"},
		{[]emulator.Config{{MaxMessagesPerResponse: -5}}, "MaxMessagesPerResponse -5"},
	} {
		srv, err := emulator.Start(ctx, c.cfgs...)
		if err == nil {
			srv.Close()
			t.Fatalf("Start(%+v) succeeded", c.cfgs)
		}
		if !strings.HasPrefix(err.Error(), "emulator: ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Start(%+v) error %q, want it to start with \"emulator: \" and mention %q", c.cfgs, err, c.want)
		}
	}
}

func TestDataDirInUse(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, err := emulator.Start(context.Background(), emulator.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	other, err := emulator.Start(context.Background(), emulator.Config{DataDir: dir})
	if err == nil {
		other.Close()
		t.Fatal("a second emulator started on a data dir in use")
	}
	if !strings.Contains(err.Error(), "in use by another emulator") {
		t.Fatalf("error %q does not say the data dir is in use", err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	// Once the first is closed the dir is free again.
	again, err := emulator.Start(context.Background(), emulator.Config{DataDir: dir})
	if err != nil {
		t.Fatalf("restart after Close: %v", err)
	}
	again.Close()
}

func TestStartAndClose(t *testing.T) {
	srv, err := emulator.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if srv.Kind != emulator.KindCourier || !strings.HasPrefix(srv.Addr, "127.0.0.1:") {
		t.Fatalf("Start gave %+v", srv)
	}
	raw := emulatortest.NewRaw(t, srv)
	_, err = raw.Sch.GetSchema(context.Background(), &pubsubpb.GetSchemaRequest{Name: "projects/p/schemas/missing"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("GetSchema of a missing schema: %v, want NotFound", err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestDataDirRoundTrip restarts an in-process emulator on the same data
// dir and checks what the compacted log restores: ordering-key holds,
// retained acked messages, detached subscriptions, deleted topics; a torn
// last record is ignored.
func TestDataDirRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	srv, err := emulator.Start(ctx, emulator.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	raw := emulatortest.NewRaw(t, srv)
	topic, gone := emulatortest.Name("topics", "t"), emulatortest.Name("topics", "gone")
	ordered, retained, detached := emulatortest.Name("subscriptions", "ord"), emulatortest.Name("subscriptions", "ret"), emulatortest.Name("subscriptions", "det")
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(raw.Pub.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}))
	must(raw.Pub.CreateTopic(ctx, &pubsubpb.Topic{Name: gone}))
	kept := emulatortest.Name("topics", "kept")
	must(raw.Pub.CreateTopic(ctx, &pubsubpb.Topic{Name: kept, MessageRetentionDuration: durationpb.New(time.Hour)}))
	must(raw.Pub.Publish(ctx, &pubsubpb.PublishRequest{Topic: kept, Messages: []*pubsubpb.PubsubMessage{{Data: []byte("kept")}}}))
	must(raw.Sub.CreateSubscription(ctx, &pubsubpb.Subscription{Name: ordered, Topic: topic, EnableMessageOrdering: true, AckDeadlineSeconds: 60}))
	must(raw.Sub.CreateSubscription(ctx, &pubsubpb.Subscription{Name: retained, Topic: topic, RetainAckedMessages: true, AckDeadlineSeconds: 60}))
	must(raw.Sub.CreateSubscription(ctx, &pubsubpb.Subscription{Name: detached, Topic: topic}))
	var msgs []*pubsubpb.PubsubMessage
	for _, d := range []string{"A1", "A2", "A3"} {
		msgs = append(msgs, &pubsubpb.PubsubMessage{Data: []byte(d), OrderingKey: "A"})
	}
	must(raw.Pub.Publish(ctx, &pubsubpb.PublishRequest{Topic: topic, Messages: msgs}))
	// Ack A1 on the ordered subscription and everything on the retained one.
	res, err := raw.Sub.Pull(ctx, &pubsubpb.PullRequest{Subscription: ordered, MaxMessages: 10})
	if err != nil || len(res.ReceivedMessages) != 1 || string(res.ReceivedMessages[0].Message.Data) != "A1" {
		t.Fatalf("ordered Pull: %v, %v", res, err)
	}
	must(raw.Sub.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{Subscription: ordered, AckIds: []string{res.ReceivedMessages[0].AckId}}))
	var acks []string
	for len(acks) < 3 {
		res, err := raw.Sub.Pull(ctx, &pubsubpb.PullRequest{Subscription: retained, MaxMessages: 10})
		if err != nil {
			t.Fatal(err)
		}
		for _, rm := range res.ReceivedMessages {
			acks = append(acks, rm.AckId)
		}
	}
	must(raw.Sub.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{Subscription: retained, AckIds: acks}))
	must(raw.Pub.DetachSubscription(ctx, &pubsubpb.DetachSubscriptionRequest{Subscription: detached}))
	must(raw.Pub.DeleteTopic(ctx, &pubsubpb.DeleteTopicRequest{Topic: gone}))
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	// A torn write at the end of the log is dropped on replay.
	f, err := os.OpenFile(filepath.Join(dir, "pubsub.log"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"op":"ack","name":"` + retained)
	f.Close()

	for round := range 2 { // the second round replays the compacted log
		srv, err := emulator.Start(ctx, emulator.Config{DataDir: dir})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		raw := emulatortest.NewRaw(t, srv)
		_, err = raw.Pub.GetTopic(ctx, &pubsubpb.GetTopicRequest{Topic: gone})
		if status.Code(err) != codes.NotFound {
			t.Fatalf("round %d: deleted topic: %v", round, err)
		}
		sub, err := raw.Sub.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: detached})
		if err != nil || !sub.Detached {
			t.Fatalf("round %d: detached subscription: %v, %v", round, sub, err)
		}
		res, err := emulatortest.PullNow(ctx, raw.Sub, ordered, 10)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, rm := range res.ReceivedMessages {
			got = append(got, string(rm.Message.Data))
		}
		if !slices.Equal(got, []string{"A2"}) {
			t.Fatalf("round %d: ordered subscription delivered %v, want only A2 (A1 acked, A3 held behind A2)", round, got)
		}
		if res, err := emulatortest.PullNow(ctx, raw.Sub, retained, 10); err != nil || len(res.ReceivedMessages) != 0 {
			t.Fatalf("round %d: retained subscription delivered %d acked messages (%v)", round, len(res.GetReceivedMessages()), err)
		}
		// The topic's retained log survives: a new subscription can seek into it.
		late := emulatortest.Name("subscriptions", "late")
		must(raw.Sub.CreateSubscription(ctx, &pubsubpb.Subscription{Name: late, Topic: kept}))
		must(raw.Sub.Seek(ctx, &pubsubpb.SeekRequest{Subscription: late, Target: &pubsubpb.SeekRequest_Time{Time: timestamppb.New(time.Now().Add(-time.Minute))}}))
		if res, err := emulatortest.PullNow(ctx, raw.Sub, late, 10); err != nil || len(res.ReceivedMessages) != 1 || string(res.ReceivedMessages[0].Message.Data) != "kept" {
			t.Fatalf("round %d: seek into the topic's retained messages: %v, %v", round, res, err)
		}
		if round == 0 {
			// Seeking back to the start brings the retained acked messages back.
			must(raw.Sub.Seek(ctx, &pubsubpb.SeekRequest{Subscription: retained, Target: &pubsubpb.SeekRequest_Time{Time: res.ReceivedMessages[0].Message.PublishTime}}))
			if res, err := emulatortest.PullNow(ctx, raw.Sub, retained, 10); err != nil || len(res.ReceivedMessages) != 3 {
				t.Fatalf("seek back on the retained subscription delivered %d, want 3 (%v)", len(res.GetReceivedMessages()), err)
			}
			// Leave them outstanding, and seek forward again so round 1
			// sees the state a Seek record leaves.
			must(raw.Sub.Seek(ctx, &pubsubpb.SeekRequest{Subscription: retained, Target: &pubsubpb.SeekRequest_Time{Time: timestamppb.New(time.Now().Add(time.Second))}}))
		}
		srv.Close()
	}
}
