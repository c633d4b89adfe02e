// Package emulatortest is the conformance suite for Pub/Sub emulators: Run
// checks one emulator (courier's, Google's, any that returns an
// *emulator.Server) against the real service's documented behaviour,
// through the v2 Go client and the raw google.pubsub.v1 gRPC API.
//
// It is for tests only, not for production code. Where an emulator departs
// from the real service, its Features say so and the suite skips (with the
// reason) or checks the emulator's actual behaviour instead.
package emulatortest

import (
	"context"
	"slices"
	"sort"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/courierq/courier/emulator"
)

// Features declares which of the real service's behaviours an emulator
// reproduces faithfully. The zero value claims none of the optional ones;
// the core API (topics, subscriptions, publish, pull, ack, deadlines) is
// always checked.
type Features struct {
	// Name labels skip messages, e.g. "Google's emulator".
	Name string
	// Filters: subscription filters select messages (the whole language).
	Filters bool
	// FilterValidation: an invalid filter is rejected with InvalidArgument.
	FilterValidation bool
	// DeadLetter: after max_delivery_attempts a message goes to the
	// dead-letter topic exactly once and delivery_attempt counts deliveries.
	DeadLetter bool
	// RetryBackoff: redelivery waits at least the retry policy's minimum.
	RetryBackoff bool
	// Ordering: one ordering key's messages are held back while one is
	// outstanding, and order is kept on redelivery.
	Ordering bool
	// ExactlyOnce: acks with expired or superseded ack IDs fail, reported
	// in ErrorInfo as the real service does.
	ExactlyOnce bool
	// FlowControl: StreamingPull honours max_outstanding_messages.
	FlowControl bool
	// SnapshotsSeek: snapshots, Seek to a snapshot and to a time (with
	// retain_acked_messages).
	SnapshotsSeek bool
	// TopicRetention: a topic's message_retention_duration lets Seek to a
	// time bring back messages published before the subscription existed.
	TopicRetention bool
	// Detach: DetachSubscription stops delivery and Pull fails with
	// FailedPrecondition.
	Detach bool
	// Push: push subscriptions POST the standard JSON body, 2xx acks,
	// failures are retried, no_wrapper is supported.
	Push bool
	// Schemas: SchemaService is implemented, with Avro schemas, revisions
	// and topics that validate what is published. When false the suite
	// expects Unimplemented.
	Schemas bool
	// ProtoSchemas: protocol buffer schemas too. When false the suite
	// expects Unimplemented for them.
	ProtoSchemas bool
	// Limits: requests past the service's limits (10 MiB per publish
	// request, 100 attributes, 256-byte keys, 1,024-byte values and
	// ordering keys, 2,500 ack IDs) are refused with InvalidArgument. The
	// limit of 1,000 messages per publish request is always checked.
	Limits bool
	// PushOIDC: a push subscription's oidc_token makes each request carry
	// a signed JWT that verifies with the keys at Server.JWKSURL.
	PushOIDC bool
	// Expiration: expiration_policy defaults to 31 days and a ttl under a
	// day is refused.
	Expiration bool
	// Advance, when set, moves the wall clock of the emulator srv forward
	// by d (see emulator.Config.Now), so that the suite can see
	// subscriptions and snapshots expire.
	Advance func(srv *emulator.Server, d time.Duration)
	// UpdateLabels: UpdateTopic and UpdateSubscription accept update_mask
	// "labels". When false the suite checks they reject it.
	UpdateLabels bool
	// Validation: bad resource names and settings are rejected with
	// InvalidArgument as the real service does.
	Validation bool
}

// Courier returns what courier's emulator supports: all of it. Set
// Advance to check expiry too.
func Courier() Features {
	return Features{
		Name: "courier's emulator", Filters: true, FilterValidation: true, DeadLetter: true, RetryBackoff: true,
		Ordering: true, ExactlyOnce: true, FlowControl: true, SnapshotsSeek: true, Detach: true, Push: true,
		Validation: true, UpdateLabels: true, TopicRetention: true, Schemas: true, ProtoSchemas: true,
		Limits: true, PushOIDC: true, Expiration: true,
	}
}

// Run runs the suite. start returns a running emulator for one subtest
// (it may hand out a shared one: every test uses its own topics and
// subscriptions) and registers its cleanup.
func Run(t *testing.T, start func(t *testing.T) *emulator.Server, f Features) {
	tests := []struct {
		name string
		fn   func(t *testing.T, e *env)
	}{
		{"TopicCRUD", testTopicCRUD},
		{"SubscriptionCRUD", testSubscriptionCRUD},
		{"ResourceNames", testResourceNames},
		{"PublishPullAck", testPublishPullAck},
		{"NackRedelivers", testNackRedelivers},
		{"AckDeadlineExpiry", testAckDeadlineExpiry},
		{"ReceiveAll", testReceiveAll},
		{"DeliveryAttempt", testDeliveryAttempt},
		{"DeadLetter", testDeadLetter},
		{"RetryBackoff", testRetryBackoff},
		{"Ordering", testOrdering},
		{"Filters", testFilters},
		{"InvalidFilter", testInvalidFilter},
		{"ExactlyOnce", testExactlyOnce},
		{"FlowControl", testFlowControl},
		{"StreamAcks", testStreamAcks},
		{"RetainAckedSeekTime", testSeekTime},
		{"SnapshotSeek", testSnapshotSeek},
		{"TopicRetentionSeek", testTopicRetention},
		{"Detach", testDetach},
		{"Push", testPush},
		{"PushNoWrapper", testPushNoWrapper},
		{"Schemas", testSchemaCRUD},
		{"SchemaRevisions", testSchemaRevisions},
		{"SchemaTopics", testSchemaTopics},
		{"SchemaSettings", testSchemaSettings},
		{"Limits", testLimits},
		{"PushOIDC", testPushOIDC},
		{"Expiration", testExpiration},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := start(t)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			t.Cleanup(cancel)
			tc.fn(t, &env{ctx: ctx, srv: srv, raw: NewRaw(t, srv), f: f})
		})
	}
}

type env struct {
	ctx context.Context
	srv *emulator.Server
	raw Raw
	f   Features
}

func (e *env) skipUnless(t *testing.T, ok bool, why string) {
	t.Helper()
	if !ok {
		t.Skipf("%s departs from the real service: %s", e.f.Name, why)
	}
}

func (e *env) topic(t *testing.T) string {
	t.Helper()
	name := Name("topics", "t")
	if _, err := e.raw.Pub.CreateTopic(e.ctx, &pubsubpb.Topic{Name: name}); err != nil {
		t.Fatalf("CreateTopic(%s): %v", name, err)
	}
	return name
}

func (e *env) sub(t *testing.T, s *pubsubpb.Subscription) string {
	t.Helper()
	if s.Name == "" {
		s.Name = Name("subscriptions", "s")
	}
	if _, err := e.raw.Sub.CreateSubscription(e.ctx, s); err != nil {
		t.Fatalf("CreateSubscription(%s): %v", s.Name, err)
	}
	return s.Name
}

func (e *env) publish(t *testing.T, topic string, msgs ...*pubsubpb.PubsubMessage) []string {
	t.Helper()
	res, err := e.raw.Pub.Publish(e.ctx, &pubsubpb.PublishRequest{Topic: topic, Messages: msgs})
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if len(res.MessageIds) != len(msgs) {
		t.Fatalf("Publish returned %d IDs for %d messages", len(res.MessageIds), len(msgs))
	}
	return res.MessageIds
}

func data(s string) *pubsubpb.PubsubMessage { return &pubsubpb.PubsubMessage{Data: []byte(s)} }

// pull pulls until it has n messages (or the test context ends).
func (e *env) pull(t *testing.T, sub string, n int) []*pubsubpb.ReceivedMessage {
	t.Helper()
	var got []*pubsubpb.ReceivedMessage
	for len(got) < n {
		res, err := e.raw.Sub.Pull(e.ctx, &pubsubpb.PullRequest{Subscription: sub, MaxMessages: int32(n - len(got))})
		if err != nil {
			t.Fatalf("Pull(%s) after %d of %d messages: %v", sub, len(got), n, err)
		}
		got = append(got, res.ReceivedMessages...)
	}
	return got
}

// pullNone checks that nothing is delivered within d. An absence can only
// be observed over a window; d bounds it.
func (e *env) pullNone(t *testing.T, sub string, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, d)
	defer cancel()
	for ctx.Err() == nil {
		res, err := e.raw.Sub.Pull(ctx, &pubsubpb.PullRequest{Subscription: sub, MaxMessages: 10})
		if err != nil {
			if ctx.Err() != nil || status.Code(err) == codes.DeadlineExceeded {
				return // the window ended
			}
			t.Fatalf("Pull(%s): %v", sub, err)
		}
		if len(res.ReceivedMessages) > 0 {
			t.Fatalf("Pull(%s) got %d messages (first %q), want none", sub, len(res.ReceivedMessages), res.ReceivedMessages[0].Message.Data)
		}
	}
}

func (e *env) ack(t *testing.T, sub string, rms ...*pubsubpb.ReceivedMessage) {
	t.Helper()
	ids := make([]string, len(rms))
	for i, rm := range rms {
		ids[i] = rm.AckId
	}
	if _, err := e.raw.Sub.Acknowledge(e.ctx, &pubsubpb.AcknowledgeRequest{Subscription: sub, AckIds: ids}); err != nil {
		t.Fatalf("Acknowledge: %v", err)
	}
}

func (e *env) modAck(t *testing.T, sub string, secs int32, rms ...*pubsubpb.ReceivedMessage) {
	t.Helper()
	ids := make([]string, len(rms))
	for i, rm := range rms {
		ids[i] = rm.AckId
	}
	if _, err := e.raw.Sub.ModifyAckDeadline(e.ctx, &pubsubpb.ModifyAckDeadlineRequest{Subscription: sub, AckIds: ids, AckDeadlineSeconds: secs}); err != nil {
		t.Fatalf("ModifyAckDeadline(%d): %v", secs, err)
	}
}

func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("%s: got code %v (%v), want %v", what, got, err, want)
	}
}

func datas(rms []*pubsubpb.ReceivedMessage) []string {
	out := make([]string, len(rms))
	for i, rm := range rms {
		out[i] = string(rm.Message.Data)
	}
	return out
}

func sorted(xs []string) []string {
	xs = slices.Clone(xs)
	sort.Strings(xs)
	return xs
}

func dur(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

// PullNow is a Pull that returns at once, with whatever is ready.
// return_immediately is deprecated for clients that poll, but it is the one
// deterministic way to see "nothing is ready now", and servers must honour it.
func PullNow(ctx context.Context, c pubsubpb.SubscriberClient, sub string, max int32) (*pubsubpb.PullResponse, error) {
	//lint:ignore SA1019 see the doc comment
	return c.Pull(ctx, &pubsubpb.PullRequest{Subscription: sub, MaxMessages: max, ReturnImmediately: true})
}
