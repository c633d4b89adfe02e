package emulatortest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func testPublishPullAck(t *testing.T, e *env) {
	topic := e.topic(t)
	sub := e.sub(t, &pubsubpb.Subscription{Topic: topic})
	ids := e.publish(t, topic,
		&pubsubpb.PubsubMessage{Data: []byte("m1"), Attributes: map[string]string{"k": "v1"}},
		&pubsubpb.PubsubMessage{Data: []byte("m2"), Attributes: map[string]string{"k": "v2"}},
		&pubsubpb.PubsubMessage{Attributes: map[string]string{"only": "attributes"}},
	)
	got := e.pull(t, sub, 3)
	byID := map[string]*pubsubpb.PubsubMessage{}
	for _, rm := range got {
		if rm.AckId == "" {
			t.Fatalf("message %s has no ack ID", rm.Message.MessageId)
		}
		if rm.Message.PublishTime == nil {
			t.Fatalf("message %s has no publish time", rm.Message.MessageId)
		}
		byID[rm.Message.MessageId] = rm.Message
	}
	for i, want := range []string{"m1", "m2", ""} {
		m := byID[ids[i]]
		if m == nil {
			t.Fatalf("message %s (%q) not delivered; got %v", ids[i], want, datas(got))
		}
		if string(m.Data) != want {
			t.Errorf("message %s data %q, want %q", ids[i], m.Data, want)
		}
	}
	if byID[ids[0]].Attributes["k"] != "v1" || byID[ids[2]].Attributes["only"] != "attributes" {
		t.Errorf("attributes lost: %v, %v", byID[ids[0]].Attributes, byID[ids[2]].Attributes)
	}
	e.ack(t, sub, got...)
	// After the acks only a newer message is delivered.
	newer := e.publish(t, topic, data("m4"))
	next := e.pull(t, sub, 1)
	if next[0].Message.MessageId != newer[0] {
		t.Fatalf("after acking everything, got %s (%q), want the new message %s", next[0].Message.MessageId, next[0].Message.Data, newer[0])
	}
}

func testNackRedelivers(t *testing.T, e *env) {
	topic := e.topic(t)
	sub := e.sub(t, &pubsubpb.Subscription{Topic: topic, AckDeadlineSeconds: 60})
	id := e.publish(t, topic, data("nack me"))[0]
	first := e.pull(t, sub, 1)[0]
	e.modAck(t, sub, 0, first)
	again := e.pull(t, sub, 1)[0]
	if again.Message.MessageId != id {
		t.Fatalf("after a nack got message %s, want %s", again.Message.MessageId, id)
	}
	if again.AckId == first.AckId {
		t.Errorf("a redelivery reused ack ID %s", first.AckId)
	}
	e.ack(t, sub, again)
}

func testAckDeadlineExpiry(t *testing.T, e *env) {
	topic := e.topic(t)
	sub := e.sub(t, &pubsubpb.Subscription{Topic: topic, AckDeadlineSeconds: 60})
	id := e.publish(t, topic, data("expire me"))[0]
	first := e.pull(t, sub, 1)[0]
	// Shorten the deadline to 1s: the message comes back once it passes.
	start := time.Now()
	e.modAck(t, sub, 1, first)
	again := e.pull(t, sub, 1)[0]
	if again.Message.MessageId != id {
		t.Fatalf("after expiry got message %s, want %s", again.Message.MessageId, id)
	}
	if waited := time.Since(start); waited < 900*time.Millisecond {
		t.Fatalf("redelivered %v after a 1s deadline was set, before it expired", waited)
	}
	e.ack(t, sub, again)
}

func testReceiveAll(t *testing.T, e *env) {
	const n = 200
	topic := e.topic(t)
	sub := e.sub(t, &pubsubpb.Subscription{Topic: topic})
	client := NewClient(t, e.srv)
	pub := client.Publisher(topic)
	defer pub.Stop()
	want := map[string]bool{}
	var results []*pubsub.PublishResult
	for i := range n {
		results = append(results, pub.Publish(e.ctx, &pubsub.Message{Data: fmt.Appendf(nil, "msg-%d", i)}))
	}
	for _, r := range results {
		id, err := r.Get(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		want[id] = true
	}
	var mu sync.Mutex
	got := map[string]bool{}
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	err := client.Subscriber(sub).Receive(ctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		mu.Lock()
		defer mu.Unlock()
		got[m.ID] = true
		if len(got) == n {
			cancel()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	for id := range want {
		if !got[id] {
			t.Fatalf("message %s never received (%d of %d received)", id, len(got), n)
		}
	}
}

func (e *env) deadLetterSub(t *testing.T, topic string, maxAttempts int32) (sub, dlSub string) {
	t.Helper()
	dlTopic := e.topic(t)
	dlSub = e.sub(t, &pubsubpb.Subscription{Topic: dlTopic})
	sub = e.sub(t, &pubsubpb.Subscription{Topic: topic, AckDeadlineSeconds: 60,
		DeadLetterPolicy: &pubsubpb.DeadLetterPolicy{DeadLetterTopic: dlTopic, MaxDeliveryAttempts: maxAttempts}})
	return sub, dlSub
}

func testDeliveryAttempt(t *testing.T, e *env) {
	topic := e.topic(t)
	plain := e.sub(t, &pubsubpb.Subscription{Topic: topic})
	sub, _ := e.deadLetterSub(t, topic, 10)
	e.publish(t, topic, data("count me"))
	if rm := e.pull(t, plain, 1)[0]; rm.DeliveryAttempt != 0 {
		t.Errorf("delivery_attempt %d without a dead-letter policy, want 0", rm.DeliveryAttempt)
	}
	e.skipUnless(t, e.f.DeadLetter, "delivery_attempt is not counted")
	for want := int32(1); want <= 3; want++ {
		rm := e.pull(t, sub, 1)[0]
		if rm.DeliveryAttempt != want {
			t.Fatalf("delivery %d has delivery_attempt %d", want, rm.DeliveryAttempt)
		}
		e.modAck(t, sub, 0, rm)
	}
}

func testDeadLetter(t *testing.T, e *env) {
	e.skipUnless(t, e.f.DeadLetter, "dead-lettering is not faithful")
	topic := e.topic(t)
	sub, dlSub := e.deadLetterSub(t, topic, 5)
	id := e.publish(t, topic, &pubsubpb.PubsubMessage{Data: []byte("poison"), Attributes: map[string]string{"a": "b"}})[0]
	for i := 1; i <= 5; i++ {
		rm := e.pull(t, sub, 1)[0]
		if rm.Message.MessageId != id {
			t.Fatalf("delivery %d: message %s, want %s", i, rm.Message.MessageId, id)
		}
		if rm.DeliveryAttempt != int32(i) {
			t.Fatalf("delivery %d: delivery_attempt %d", i, rm.DeliveryAttempt)
		}
		e.modAck(t, sub, 0, rm)
	}
	// No sixth delivery. (Google's emulator forwards to the dead-letter
	// topic only when a Pull would deliver the message again; this Pull
	// gives it that chance.)
	e.pullNone(t, sub, 500*time.Millisecond)
	dead := e.pull(t, dlSub, 1)[0]
	if string(dead.Message.Data) != "poison" || dead.Message.Attributes["a"] != "b" {
		t.Fatalf("dead-lettered message %q %v, want the original data and attributes", dead.Message.Data, dead.Message.Attributes)
	}
	if got := dead.Message.Attributes["CloudPubSubDeadLetterSourceDeliveryCount"]; got != "5" {
		t.Errorf("CloudPubSubDeadLetterSourceDeliveryCount = %q, want 5", got)
	}
	e.ack(t, dlSub, dead)
	// Exactly one copy.
	e.pullNone(t, dlSub, time.Second)
}

func testRetryBackoff(t *testing.T, e *env) {
	e.skipUnless(t, e.f.RetryBackoff, "a nacked message comes back at once, ignoring retry_policy.minimum_backoff")
	topic := e.topic(t)
	sub := e.sub(t, &pubsubpb.Subscription{Topic: topic, AckDeadlineSeconds: 60,
		RetryPolicy: &pubsubpb.RetryPolicy{MinimumBackoff: dur(time.Second), MaximumBackoff: dur(2 * time.Second)}})
	e.publish(t, topic, data("back off"))
	rm := e.pull(t, sub, 1)[0]
	for i := range 2 {
		start := time.Now()
		e.modAck(t, sub, 0, rm)
		rm = e.pull(t, sub, 1)[0]
		if waited := time.Since(start); waited < 900*time.Millisecond {
			t.Fatalf("nack %d: redelivered after %v, before the 1s minimum backoff", i+1, waited)
		}
	}
	e.ack(t, sub, rm)
}

func testOrdering(t *testing.T, e *env) {
	topic := e.topic(t)
	sub := e.sub(t, &pubsubpb.Subscription{Topic: topic, AckDeadlineSeconds: 60, EnableMessageOrdering: true})
	var msgs []*pubsubpb.PubsubMessage
	for i := 1; i <= 3; i++ {
		for _, k := range []string{"A", "B"} {
			msgs = append(msgs, &pubsubpb.PubsubMessage{Data: fmt.Appendf(nil, "%s%d", k, i), OrderingKey: k})
		}
	}
	e.publish(t, topic, msgs...)
	e.skipUnless(t, e.f.Ordering, "ordering keys are not honoured on redelivery: after a nack a key's later message comes before the nacked one")
	first := e.pull(t, sub, 2)
	if got := sorted(datas(first)); !slices.Equal(got, []string{"A1", "B1"}) {
		t.Fatalf("first delivery %v, want A1 and B1 only (one outstanding message per key)", got)
	}
	var a1, b1 *pubsubpb.ReceivedMessage
	for _, rm := range first {
		if string(rm.Message.Data) == "A1" {
			a1 = rm
		} else {
			b1 = rm
		}
	}
	// A nacked message comes back before its key's later messages.
	e.modAck(t, sub, 0, a1)
	if again := e.pull(t, sub, 1); string(again[0].Message.Data) != "A1" {
		t.Fatalf("after nacking A1 got %q, want A1 again", again[0].Message.Data)
	} else {
		a1 = again[0]
	}
	e.ack(t, sub, a1, b1)
	for i := 2; i <= 3; i++ {
		got := e.pull(t, sub, 2)
		want := []string{fmt.Sprintf("A%d", i), fmt.Sprintf("B%d", i)}
		if !slices.Equal(sorted(datas(got)), want) {
			t.Fatalf("round %d delivered %v, want %v", i, datas(got), want)
		}
		e.ack(t, sub, got...)
	}
}

func testExactlyOnce(t *testing.T, e *env) {
	e.skipUnless(t, e.f.ExactlyOnce, "exactly-once delivery is not as the real service's (a message whose ack deadline is cut to 1s is not redelivered, so expired ack IDs cannot be checked)")
	topic := e.topic(t)
	sub := e.sub(t, &pubsubpb.Subscription{Topic: topic, AckDeadlineSeconds: 60, EnableExactlyOnceDelivery: true})
	id := e.publish(t, topic, data("once"))[0]
	first := e.pull(t, sub, 1)[0]
	// While the deadline holds nothing is redelivered.
	e.pullNone(t, sub, 300*time.Millisecond)
	// Let the deadline pass: the message comes back with a new ack ID.
	e.modAck(t, sub, 1, first)
	second := e.pull(t, sub, 1)[0]
	if second.Message.MessageId != id || second.AckId == first.AckId {
		t.Fatalf("redelivery: message %s ack ID %s, want %s with a new ack ID", second.Message.MessageId, second.AckId, id)
	}
	// The expired ack ID fails, in ErrorInfo metadata keyed by ack ID.
	_, err := e.raw.Sub.Acknowledge(e.ctx, &pubsubpb.AcknowledgeRequest{Subscription: sub, AckIds: []string{first.AckId}})
	if err == nil {
		t.Fatal("acking an expired ack ID succeeded")
	}
	var info *errdetails.ErrorInfo
	for _, d := range status.Convert(err).Details() {
		if x, ok := d.(*errdetails.ErrorInfo); ok {
			info = x
		}
	}
	if info == nil || info.Metadata[first.AckId] != "PERMANENT_FAILURE_INVALID_ACK_ID" {
		t.Fatalf("ack of an expired ack ID failed with %v (details %v), want ErrorInfo metadata %s=PERMANENT_FAILURE_INVALID_ACK_ID", err, info, first.AckId)
	}
	e.ack(t, sub, second)
	_, err = e.raw.Sub.Acknowledge(e.ctx, &pubsubpb.AcknowledgeRequest{Subscription: sub, AckIds: []string{second.AckId}})
	if err == nil {
		t.Fatal("acking an already acked message succeeded")
	}

	// On a stream, acks are confirmed one by one: good and stale ack IDs.
	e.publish(t, topic, data("stream"))
	stream, err := e.raw.Sub.StreamingPull(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pubsubpb.StreamingPullRequest{Subscription: sub, StreamAckDeadlineSeconds: 60}); err != nil {
		t.Fatal(err)
	}
	var live *pubsubpb.ReceivedMessage
	for live == nil {
		res, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if len(res.ReceivedMessages) > 0 {
			live = res.ReceivedMessages[0]
		}
	}
	if err := stream.Send(&pubsubpb.StreamingPullRequest{AckIds: []string{live.AckId, first.AckId}}); err != nil {
		t.Fatal(err)
	}
	for {
		res, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if c := res.AcknowledgeConfirmation; c != nil {
			if !slices.Equal(c.AckIds, []string{live.AckId}) || !slices.Equal(c.InvalidAckIds, []string{first.AckId}) {
				t.Fatalf("AcknowledgeConfirmation ack_ids %v invalid_ack_ids %v, want [%s] and [%s]", c.AckIds, c.InvalidAckIds, live.AckId, first.AckId)
			}
			break
		}
	}
	// Close the stream and wait for its end, so the server no longer counts
	// it as a consumer for the next message.
	stream.CloseSend()
	for {
		if _, err := stream.Recv(); err != nil {
			break
		}
	}

	// Through the v2 client: AckWithResult reports success.
	e.publish(t, topic, data("client"))
	client := NewClient(t, e.srv)
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	var result atomic.Value
	err = client.Subscriber(sub).Receive(ctx, func(ctx context.Context, m *pubsub.Message) {
		st, err := m.AckWithResult().Get(ctx)
		result.Store(fmt.Sprintf("%v %v", st, err))
		cancel()
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := result.Load(), fmt.Sprintf("%v %v", pubsub.AcknowledgeStatusSuccess, nil); got != want {
		t.Fatalf("AckWithResult: %v, want %v", got, want)
	}
}

func testFlowControl(t *testing.T, e *env) {
	e.skipUnless(t, e.f.FlowControl, "StreamingPull ignores max_outstanding_messages (it sends 10 messages to a stream limited to 3)")
	const n, limit = 10, 3
	topic := e.topic(t)
	sub := e.sub(t, &pubsubpb.Subscription{Topic: topic, AckDeadlineSeconds: 60})
	for i := range n {
		e.publish(t, topic, data(fmt.Sprint(i)))
	}
	stream, err := e.raw.Sub.StreamingPull(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.CloseSend()
	if err := stream.Send(&pubsubpb.StreamingPullRequest{Subscription: sub, StreamAckDeadlineSeconds: 60, MaxOutstandingMessages: limit}); err != nil {
		t.Fatal(err)
	}
	var outstanding []string
	seen := map[string]bool{}
	for len(seen) < n {
		res, err := stream.Recv()
		if err != nil {
			t.Fatalf("Recv after %d messages: %v", len(seen), err)
		}
		for _, rm := range res.ReceivedMessages {
			seen[rm.Message.MessageId] = true
			outstanding = append(outstanding, rm.AckId)
		}
		if len(outstanding) > limit {
			t.Fatalf("%d messages outstanding on a stream limited to %d", len(outstanding), limit)
		}
		// Ack the oldest on the stream: that makes room for one more.
		if err := stream.Send(&pubsubpb.StreamingPullRequest{AckIds: outstanding[:1]}); err != nil {
			t.Fatal(err)
		}
		outstanding = outstanding[1:]
	}

	// max_outstanding_bytes: with 100-byte messages and a 250-byte limit,
	// the server may go past the limit by at most one message.
	const size, byteLimit = 100, 250
	topic = e.topic(t)
	sub = e.sub(t, &pubsubpb.Subscription{Topic: topic, AckDeadlineSeconds: 60})
	for range n {
		e.publish(t, topic, &pubsubpb.PubsubMessage{Data: make([]byte, size)})
	}
	stream, err = e.raw.Sub.StreamingPull(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.CloseSend()
	if err := stream.Send(&pubsubpb.StreamingPullRequest{Subscription: sub, StreamAckDeadlineSeconds: 60, MaxOutstandingBytes: byteLimit}); err != nil {
		t.Fatal(err)
	}
	outstanding = nil
	received := 0
	for received < n {
		res, err := stream.Recv()
		if err != nil {
			t.Fatalf("Recv after %d messages: %v", received, err)
		}
		for _, rm := range res.ReceivedMessages {
			outstanding = append(outstanding, rm.AckId)
			received++
		}
		if got := len(outstanding) * size; got >= byteLimit+size {
			t.Fatalf("%d bytes outstanding on a stream limited to %d bytes", got, byteLimit)
		}
		if err := stream.Send(&pubsubpb.StreamingPullRequest{AckIds: outstanding[:1]}); err != nil {
			t.Fatal(err)
		}
		outstanding = outstanding[1:]
	}
}

func testStreamAcks(t *testing.T, e *env) {
	topic := e.topic(t)
	sub := e.sub(t, &pubsubpb.Subscription{Topic: topic, AckDeadlineSeconds: 60})
	id := e.publish(t, topic, data("stream"))[0]
	stream, err := e.raw.Sub.StreamingPull(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.CloseSend()
	if err := stream.Send(&pubsubpb.StreamingPullRequest{Subscription: sub, StreamAckDeadlineSeconds: 60}); err != nil {
		t.Fatal(err)
	}
	recv := func() *pubsubpb.ReceivedMessage {
		for {
			res, err := stream.Recv()
			if err != nil {
				t.Fatalf("Recv: %v", err)
			}
			if len(res.ReceivedMessages) > 0 {
				return res.ReceivedMessages[0]
			}
		}
	}
	first := recv()
	if first.Message.MessageId != id {
		t.Fatalf("got %s, want %s", first.Message.MessageId, id)
	}
	// A modack of 0 on the stream nacks: the message comes back on it.
	if err := stream.Send(&pubsubpb.StreamingPullRequest{ModifyDeadlineAckIds: []string{first.AckId}, ModifyDeadlineSeconds: []int32{0}}); err != nil {
		t.Fatal(err)
	}
	again := recv()
	if again.Message.MessageId != id {
		t.Fatalf("after a stream nack got %s, want %s", again.Message.MessageId, id)
	}
	if err := stream.Send(&pubsubpb.StreamingPullRequest{AckIds: []string{again.AckId}}); err != nil {
		t.Fatal(err)
	}
	// The ack took: a message published now is the next thing delivered.
	next := e.publish(t, topic, data("after"))[0]
	if got := recv(); got.Message.MessageId != next {
		t.Fatalf("after the stream ack got %s (%q), want %s", got.Message.MessageId, got.Message.Data, next)
	}
	_ = codes.OK
}
