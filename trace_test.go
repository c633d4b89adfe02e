package courier_test

import (
	"context"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/protobuf/proto"

	"github.com/courierq/courier"
	"github.com/courierq/courier/client"
	"github.com/courierq/courier/couriertest"
	"github.com/courierq/courier/emulator"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
)

const (
	enqueueSpan = "courier.v1.JobService/EnqueueJob"
	publishSpan = "courier-demo-v1-Echo create"
	handleSpan  = "courier-demo-v1-Echo-worker process"
)

// spans is an in-memory exporter that outlives a Node (a Node's Shutdown
// shuts its exporter down, which empties the SDK's in-memory one) and
// signals each export, so a test can await a span.
type spans struct {
	*tracetest.InMemoryExporter
	exported chan struct{}
}

func newSpans() *spans {
	return &spans{InMemoryExporter: tracetest.NewInMemoryExporter(), exported: make(chan struct{}, 1)}
}

func (s *spans) ExportSpans(ctx context.Context, ss []sdktrace.ReadOnlySpan) error {
	err := s.InMemoryExporter.ExportSpans(ctx, ss)
	select {
	case s.exported <- struct{}{}:
	default:
	}
	return err
}

func (s *spans) Shutdown(context.Context) error { return nil }

func span(t *testing.T, exp *spans, name string) tracetest.SpanStub {
	t.Helper()
	var names []string
	for _, s := range exp.GetSpans() {
		if s.Name == name {
			return s
		}
		names = append(names, s.Name)
	}
	t.Fatalf("no span %q among %q", name, names)
	return tracetest.SpanStub{}
}

// TestTraceSurvivesARestart: a job enqueued with run_after on one Node is
// published and run by the next one, after the first stopped: the enqueue
// RPC, the publish and the handler are one trace, because the outbox entry
// carries the enqueue's trace context.
func TestTraceSurvivesARestart(t *testing.T) {
	exp := newSpans()
	c, _ := inMemoryEmulator(t)
	cfg := couriertest.Config(t.TempDir())
	reg, _ := countingRegistry(t)
	first := couriertest.StartConfig(t, cfg, courier.WithRegistry(reg), courier.WithPubSubClient(c), courier.WithSpanExporter(exp))
	id := first.Enqueue(t, &demov1.Echo{Message: "later"}, client.EnqueueOptions{RunAfter: time.Now().Add(2 * time.Second)})
	first.Node.Close() // before the job is due: nothing was published

	second := couriertest.StartConfig(t, cfg, courier.WithRegistry(reg), courier.WithPubSubClient(c), courier.WithSpanExporter(exp))
	second.RequireSucceeded(t, id, nil)
	rpc, pub, handle := span(t, exp, enqueueSpan), span(t, exp, publishSpan), waitSpan(t, exp, handleSpan)
	tid := rpc.SpanContext.TraceID()
	if pub.SpanContext.TraceID() != tid || handle.SpanContext.TraceID() != tid {
		t.Fatalf("not one trace: enqueue %s, publish %s, handle %s", tid, pub.SpanContext.TraceID(), handle.SpanContext.TraceID())
	}
	if pub.Parent.SpanID() != rpc.SpanContext.SpanID() || handle.Parent.SpanID() != pub.SpanContext.SpanID() {
		t.Fatalf("publish's parent %s (want the enqueue %s), handler's parent %s (want the publish %s)",
			pub.Parent.SpanID(), rpc.SpanContext.SpanID(), handle.Parent.SpanID(), pub.SpanContext.SpanID())
	}
}

// waitSpan waits for a span the handler's end exports (the job's SUCCEEDED
// is recorded before the middleware's span ends).
func waitSpan(t *testing.T, exp *spans, name string) tracetest.SpanStub {
	t.Helper()
	timeout := time.After(couriertest.Timeout)
	for {
		for _, s := range exp.GetSpans() {
			if s.Name == name {
				return s
			}
		}
		select {
		case <-exp.exported:
		case <-timeout:
			return span(t, exp, name) // fails, listing the spans
		}
	}
}

// TestTraceFromThePubSubClient: a service publishes a job message with the
// official Pub/Sub client, its OpenTelemetry tracing on; courier's handler
// span continues that trace (googclient_traceparent), a child of the
// client's "create" span.
func TestTraceFromThePubSubClient(t *testing.T) {
	emu, err := emulator.Start(context.Background(), emulator.Config{InProcess: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	c, err := pubsub.NewClient(context.Background(), "interop", emu.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	exp := newSpans()
	reg, runs, ran := watchedRegistry(t)
	n := couriertest.Start(t, reg, courier.WithPubSubClient(c), courier.WithSpanExporter(exp))

	// The other service: the client's tracing reads the global provider.
	appExp := newSpans()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(appExp))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev); tp.Shutdown(context.Background()) })
	tc, err := pubsub.NewClientWithConfig(context.Background(), "interop", &pubsub.ClientConfig{EnableOpenTelemetryTracing: true}, emu.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	ctx, root := tp.Tracer("the-app").Start(context.Background(), "app request")
	data, _ := proto.Marshal(&demov1.Echo{Message: "from another service"})
	p := tc.Publisher("courier-demo-v1-Echo")
	if _, err := p.Publish(ctx, &pubsub.Message{Data: data, Attributes: map[string]string{"ce-type": "courier.demo.v1.Echo", "ce-id": "interop-1"}}).Get(ctx); err != nil {
		t.Fatal(err)
	}
	p.Stop()
	root.End()

	// Published fire-and-forget: the job is recorded only once a worker
	// received it, so wait for its handler before asking for the job.
	select {
	case <-ran:
	case <-time.After(couriertest.Timeout):
		t.Fatal("the handler of the published job never ran")
	}
	n.RequireSucceeded(t, "interop-1", nil)
	if got := runs("interop-1"); got != 1 {
		t.Fatalf("the job ran %d times, want once", got)
	}
	create := span(t, appExp, "courier-demo-v1-Echo create")
	handle := waitSpan(t, exp, handleSpan)
	if handle.SpanContext.TraceID() != root.SpanContext().TraceID() || handle.Parent.SpanID() != create.SpanContext.SpanID() {
		t.Fatalf("courier's handler span is in trace %s under %s; want the app's trace %s under the client's create span %s",
			handle.SpanContext.TraceID(), handle.Parent.SpanID(), root.SpanContext().TraceID(), create.SpanContext.SpanID())
	}
}
