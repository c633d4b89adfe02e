package publisher_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/courierq/courier/internal/testenv"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
	"github.com/courierq/courier/publisher"
	"github.com/courierq/courier/wire"
)

const echoTopic = "courier-demo-v1-Echo"

func newPublisher(t *testing.T, c *pubsub.Client, cfg publisher.Config) *publisher.Publisher {
	t.Helper()
	p, err := publisher.New(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		p.Close(ctx)
	})
	return p
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestPublishAttributes(t *testing.T) {
	t.Parallel()
	c := testenv.Client(t, testenv.Google(t))
	testenv.CreateTopic(t, c, echoTopic, "sub")
	at := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	p := newPublisher(t, c, publisher.Config{Source: "//test", Now: func() time.Time { return at }})

	ctx := ctxT(t)
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		SpanID:     trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8},
		TraceFlags: trace.FlagsSampled,
	})
	id, err := p.Publish(trace.ContextWithSpanContext(ctx, sc), &demov1.Echo{Message: "hi"}, publisher.WithLabels(map[string]string{"team": "pay"}))
	if err != nil {
		t.Fatal(err)
	}
	id2, err := p.PublishSync(ctx, &demov1.Echo{Message: "second"}, publisher.WithID("job-42"))
	if err != nil || id2 != "job-42" {
		t.Fatalf("PublishSync = %q, %v; want job-42", id2, err)
	}
	msgs := testenv.Pull(ctx, t, c, "sub", 2)
	byID := map[string]map[string]string{}
	for _, m := range msgs {
		byID[m.Attributes["ce-id"]] = m.Attributes
		if m.Attributes["ce-id"] == id {
			var got demov1.Echo
			if err := proto.Unmarshal(m.Data, &got); err != nil || got.GetMessage() != "hi" {
				t.Fatalf("data %x decodes to %v, %v", m.Data, &got, err)
			}
		}
	}
	want := map[string]string{
		"ce-specversion":         "1.0",
		"ce-id":                  id,
		"ce-type":                "courier.demo.v1.Echo",
		"ce-source":              "//test",
		"ce-time":                "2026-11-27T12:00:00Z",
		"content-type":           "application/protobuf",
		"Content-Type":           "application/protobuf",
		"traceparent":            "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-01",
		"googclient_traceparent": "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-01",
		"courier-label-team":     "pay",
	}
	got := byID[id]
	for k, v := range want {
		if got[k] != v {
			t.Errorf("attribute %s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("attributes %v, want exactly %v", got, want)
	}
	if _, ok := byID["job-42"]["traceparent"]; ok {
		t.Error("traceparent set for a ctx with no span")
	}
	if len(id) != 36 || id[14] != '7' {
		t.Errorf("job ID %q is not a UUIDv7", id)
	}
}

func TestPublishBufferFullAndCloseFlushes(t *testing.T) {
	t.Parallel()
	c := testenv.Client(t, testenv.Google(t))
	testenv.CreateTopic(t, c, echoTopic, "sub")
	// Batches wait an hour unless flushed, so the buffer stays full.
	p := newPublisher(t, c, publisher.Config{MaxBufferedMessages: 3, DelayThreshold: time.Hour, CountThreshold: 1000})
	ctx := ctxT(t)
	for i := range 3 {
		if _, err := p.Publish(ctx, &demov1.Echo{Message: "m"}); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	_, err := p.Publish(ctx, &demov1.Echo{Message: "one too many"})
	if !errors.Is(err, publisher.ErrBufferFull) || !strings.Contains(err.Error(), echoTopic) {
		t.Fatalf("4th publish: %v, want ErrBufferFull naming the topic", err)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := testenv.Pull(ctx, t, c, "sub", 3); len(got) != 3 {
		t.Fatalf("after Close, %d messages arrived, want 3", len(got))
	}
	if _, err := p.Publish(ctx, &demov1.Echo{}); !errors.Is(err, publisher.ErrClosed) {
		t.Fatalf("Publish after Close: %v, want ErrClosed", err)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestPublishBlockWhenFull(t *testing.T) {
	t.Parallel()
	c := testenv.Client(t, testenv.Google(t))
	testenv.CreateTopic(t, c, echoTopic, "sub")
	p := newPublisher(t, c, publisher.Config{MaxBufferedMessages: 1, BlockWhenFull: true, DelayThreshold: time.Hour, CountThreshold: 1000})
	ctx := ctxT(t)
	if _, err := p.Publish(ctx, &demov1.Echo{}); err != nil {
		t.Fatal(err)
	}
	// The buffer is full: a blocking publish waits until its ctx ends.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := p.Publish(short, &demov1.Echo{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("blocked publish: %v, want DeadlineExceeded", err)
	}
	// Room comes once the first is sent: Flush, then a publish goes through.
	done := make(chan error, 1)
	go func() { _, err := p.PublishSync(ctx, &demov1.Echo{Message: "after"}); done <- err }()
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// The second may have been buffered after Flush began; Close sends it.
	go p.Close(ctx)
	if err := <-done; err != nil {
		t.Fatalf("publish after room freed: %v", err)
	}
}

func TestOnErrorWhenTopicMissing(t *testing.T) {
	t.Parallel()
	c := testenv.Client(t, testenv.Google(t))
	errs := make(chan *publisher.PublishError, 1)
	p := newPublisher(t, c, publisher.Config{OnError: func(e *publisher.PublishError) { errs <- e }, Timeout: 10 * time.Second})
	ctx := ctxT(t)
	id, err := p.Publish(ctx, &demov1.Echo{Message: "nowhere"})
	if err != nil {
		t.Fatalf("Publish returned %v; it should not wait for the network", err)
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-errs:
		if e.ID != id || e.Topic != echoTopic || e.Type != "courier.demo.v1.Echo" || status.Code(e.Err) != codes.NotFound {
			t.Fatalf("OnError got %+v (code %v), want job %s, topic %s, NotFound", e, status.Code(e.Err), id, echoTopic)
		}
	default:
		t.Fatal("Flush returned before OnError was called")
	}
	// PublishSync reports it to the caller instead.
	if _, err := p.PublishSync(ctx, &demov1.Echo{}); status.Code(errors.Unwrap(err)) != codes.NotFound && !strings.Contains(err.Error(), "NotFound") {
		t.Fatalf("PublishSync to a missing topic: %v", err)
	}
	select {
	case e := <-errs:
		t.Fatalf("OnError called for a PublishSync failure: %v", e)
	default:
	}
}

func TestPublishRejects(t *testing.T) {
	t.Parallel()
	c := testenv.Client(t, testenv.Google(t))
	p := newPublisher(t, c, publisher.Config{})
	ctx := ctxT(t)
	_, err := p.Publish(ctx, &demov1.Echo{Message: strings.Repeat("x", 11_000_000)})
	var tl *publisher.TooLargeError
	if !errors.As(err, &tl) || tl.Limit != 10_000_000 || tl.Size <= 11_000_000 || tl.Type != "courier.demo.v1.Echo" {
		t.Fatalf("11 MB message: %v, want TooLargeError with sizes", err)
	}
	if !strings.Contains(err.Error(), "10000000") {
		t.Fatalf("error %q lacks the limit", err)
	}
	if _, err := p.Publish(ctx, &demov1.Echo{}, publisher.WithID("")); err == nil {
		t.Fatal("WithID(\"\") accepted")
	}
	if _, err := p.Publish(ctx, (*demov1.Echo)(nil)); err == nil {
		t.Fatal("nil message accepted")
	}
	if _, err := publisher.New(nil, publisher.Config{}); err == nil {
		t.Fatal("New(nil) accepted")
	}
	if _, err := publisher.New(c, publisher.Config{MaxBufferedMessages: -1}); err == nil || !strings.Contains(err.Error(), "MaxBufferedMessages") {
		t.Fatalf("New with MaxBufferedMessages -1: %v", err)
	}
}

func TestPublishTopicOverrideAndPrefix(t *testing.T) {
	t.Parallel()
	c := testenv.Client(t, testenv.Google(t))
	testenv.CreateTopic(t, c, "echoes", "echo-sub")
	testenv.CreateTopic(t, c, "dev-courier-demo-v1-Sleep", "sleep-sub")
	p := newPublisher(t, c, publisher.Config{Naming: wire.Naming{Prefix: "dev-", Topics: map[string]string{"courier.demo.v1.Echo": "echoes"}}})
	ctx := ctxT(t)
	echoID, err := p.PublishSync(ctx, &demov1.Echo{})
	if err != nil {
		t.Fatal(err)
	}
	sleepID, err := p.PublishSync(ctx, &demov1.Sleep{})
	if err != nil {
		t.Fatal(err)
	}
	if got := testenv.Pull(ctx, t, c, "echo-sub", 1)[0].Attributes["ce-id"]; got != echoID {
		t.Fatalf("override topic got job %s, want %s", got, echoID)
	}
	if got := testenv.Pull(ctx, t, c, "sleep-sub", 1)[0].Attributes["ce-type"]; got != "courier.demo.v1.Sleep" {
		t.Fatalf("prefixed topic got %s (job %s)", got, sleepID)
	}
}

// TestOrderingKey: messages carry their ordering key; after a failed
// publish the key is resumed, so the caller's retry goes through.
func TestOrderingKey(t *testing.T) {
	t.Parallel()
	c := testenv.Client(t, testenv.Google(t))
	p := newPublisher(t, c, publisher.Config{Timeout: 5 * time.Second})
	ctx := ctxT(t)
	if _, err := p.PublishSync(ctx, &demov1.Echo{Message: "no topic yet"}, publisher.WithOrderingKey("K")); err == nil {
		t.Fatal("publish to a missing topic succeeded")
	}
	testenv.CreateTopic(t, c, echoTopic, "sub")
	for i := range 3 {
		if _, err := p.PublishSync(ctx, &demov1.Echo{Message: fmt.Sprint("k", i)}, publisher.WithOrderingKey("K")); err != nil {
			t.Fatalf("publish %d with the key after the failure: %v", i, err)
		}
	}
	if _, err := p.PublishSync(ctx, &demov1.Echo{Message: "unordered"}); err != nil {
		t.Fatal(err)
	}
	for _, m := range testenv.Pull(ctx, t, c, "sub", 4) {
		var e demov1.Echo
		if err := proto.Unmarshal(m.Data, &e); err != nil {
			t.Fatal(err)
		}
		want := "K"
		if e.Message == "unordered" {
			want = ""
		}
		if m.OrderingKey != want {
			t.Errorf("message %q has ordering key %q, want %q", e.Message, m.OrderingKey, want)
		}
	}
}

func TestInvalidTopicIsErrInvalidID(t *testing.T) {
	t.Parallel()
	c := testenv.Client(t, testenv.Google(t))
	p := newPublisher(t, c, publisher.Config{})
	_, err := p.PublishMessage(ctxT(t), &wire.Message{ID: "j1", Type: "google.Reserved"})
	if !errors.Is(err, wire.ErrInvalidID) || !strings.Contains(err.Error(), "goog") {
		t.Fatalf("publish of a type whose topic would start with goog: %v, want ErrInvalidID saying why", err)
	}
}
