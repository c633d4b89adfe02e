package publisher_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/courierq/courier/internal/testenv"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
	"github.com/courierq/courier/publisher"
	"github.com/courierq/courier/wire"
)

// TestEncodedSizeIsTheLimit: a message whose EncodedSize is exactly
// MaxMessageBytes is sent through the real client and emulator with the
// longest job ID, labels and a trace context, and is no larger on the wire
// than EncodedSize said; one byte more is refused before sending, with the
// size CheckSize gives (the size EnqueueJob reports).
func TestEncodedSizeIsTheLimit(t *testing.T) {
	t.Parallel()
	c := testenv.Client(t, testenv.Google(t))
	testenv.CreateTopic(t, c, echoTopic, "sub")
	p := newPublisher(t, c, publisher.Config{})
	const typ = "courier.demo.v1.Echo"
	labels := map[string]string{"team": "pay", "region": strings.Repeat("r", 200)}
	n := publisher.MaxMessageBytes - publisher.EncodedSize(typ, nil, labels)
	for publisher.EncodedSize(typ, make([]byte, n), labels) > publisher.MaxMessageBytes {
		n-- // the data's length prefix grew
	}
	data := bytes.Repeat([]byte{'x'}, n)
	if got := publisher.EncodedSize(typ, data, labels); got != publisher.MaxMessageBytes {
		t.Fatalf("EncodedSize of %d bytes of data = %d, want exactly %d", n, got, publisher.MaxMessageBytes)
	}
	if err := publisher.CheckSize(typ, data, labels); err != nil {
		t.Fatalf("CheckSize at the limit: %v", err)
	}

	ctx := ctxT(t)
	ts, err := trace.ParseTraceState("vendor=" + strings.Repeat("v", 200))
	if err != nil {
		t.Fatal(err)
	}
	ctx = trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled, TraceState: ts,
	}))
	id := strings.Repeat("j", publisher.MaxIDBytes)
	res, err := p.PublishMessage(ctx, &wire.Message{ID: id, Type: typ, Data: data, Labels: labels})
	if err != nil {
		t.Fatalf("PublishMessage at the limit: %v", err)
	}
	if _, err := res.Get(ctx); err != nil {
		t.Fatalf("Pub/Sub refused a message at the limit: %v", err)
	}
	m := testenv.Pull(ctx, t, c, "sub", 1)[0]
	if m.Attributes["ce-id"] != id || m.Attributes["tracestate"] == "" || len(m.Data) != n {
		t.Fatalf("received ce-id of %d bytes, tracestate %q, %d bytes of data", len(m.Attributes["ce-id"]), m.Attributes["tracestate"], len(m.Data))
	}
	if wire := proto.Size(m); wire > publisher.MaxMessageBytes {
		t.Fatalf("the message is %d bytes on the wire, more than EncodedSize's %d", wire, publisher.MaxMessageBytes)
	}

	over := append(data, 'x')
	_, err = p.PublishMessage(ctx, &wire.Message{ID: "j-over", Type: typ, Data: over, Labels: labels})
	var tl *publisher.TooLargeError
	if !errors.As(err, &tl) || tl.Size != publisher.MaxMessageBytes+1 || tl.Limit != publisher.MaxMessageBytes {
		t.Fatalf("one byte over: %v, want TooLargeError of %d bytes", err, publisher.MaxMessageBytes+1)
	}
	if err := publisher.CheckSize(typ, over, labels); !errors.As(err, &tl) || tl.Size != publisher.MaxMessageBytes+1 {
		t.Fatalf("CheckSize one byte over: %v", err)
	}

	if _, err := p.Publish(ctx, &demov1.Echo{}, publisher.WithID(id+"x")); err == nil || !strings.Contains(err.Error(), "257 bytes") {
		t.Fatalf("an ID over MaxIDBytes: %v", err)
	}
}
