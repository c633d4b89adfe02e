package emulator

import (
	"context"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
)

// TestRetentionDropsOldMessages checks that a message older than the
// subscription's message_retention_duration is not delivered. It injects
// a message with an old publish time, since waiting out the 10-minute
// minimum retention is not an option.
func TestRetentionDropsOldMessages(t *testing.T) {
	ctx := context.Background()
	e := newEngine(Config{MaxMessagesPerResponse: 1000})
	defer e.shutdown()
	pub, sub := &publisherService{e: e}, &subscriberService{e: e}
	topic, name := "projects/p/topics/retention", "projects/p/subscriptions/retention"
	if _, err := pub.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.CreateSubscription(ctx, &pubsubpb.Subscription{Name: name, Topic: topic}); err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	e.seq++
	old := newMessage(e.seq, time.Now().Add(-8*24*time.Hour), []byte("old"), nil, "")
	e.fanOutLocked(e.topics[topic], []*message{old}, nil)
	e.mu.Unlock()
	if _, err := pub.Publish(ctx, &pubsubpb.PublishRequest{Topic: topic, Messages: []*pubsubpb.PubsubMessage{{Data: []byte("new")}}}); err != nil {
		t.Fatal(err)
	}
	//lint:ignore SA1019 the server must honour it
	res, err := sub.Pull(ctx, &pubsubpb.PullRequest{Subscription: name, MaxMessages: 10, ReturnImmediately: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.ReceivedMessages) != 1 || string(res.ReceivedMessages[0].Message.Data) != "new" {
		t.Fatalf("got %d messages (%v), want only the one within the 7-day retention", len(res.ReceivedMessages), res.ReceivedMessages)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.subs[name].msgs.get(old.seq) != nil {
		t.Fatal("the expired message is still held")
	}
}
