package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/courierq/courier"
	"github.com/courierq/courier/client"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

// notifyingExporter is the SDK's in-memory exporter that also signals each
// export, so a test can await a span instead of sleeping.
type notifyingExporter struct {
	*tracetest.InMemoryExporter
	exported chan struct{}
}

func (e *notifyingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := e.InMemoryExporter.ExportSpans(ctx, spans)
	select {
	case e.exported <- struct{}{}:
	default:
	}
	return err
}

// TestOneTraceFromEnqueueToHandler enqueues an Echo job over gRPC and finds
// the RPC span, the outbox publish span and the handler span in one trace,
// each the parent of the next (the last link crossing Pub/Sub through the
// traceparent attribute).
func TestOneTraceFromEnqueueToHandler(t *testing.T) {
	exp := &notifyingExporter{InMemoryExporter: tracetest.NewInMemoryExporter(), exported: make(chan struct{}, 1)}
	st := startCourierd(t, "pubsub:\n  emulator: embedded\nstore:\n  path: "+filepath.Join(t.TempDir(), "jobs.db")+"\nhandlers:\n  demo: true\n",
		courier.WithSpanExporter(exp))
	conn, err := client.Dial(st.GRPCAddr(), client.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	jc := courierv1.NewJobServiceClient(conn)
	a, _ := anypb.New(&demov1.Echo{Message: "traced"})
	id := enqueue(t, jc, a, "").JobId
	watchUntilDone(t, jc, id)

	const (
		rpcName     = "courier.v1.JobService/EnqueueJob"
		publishName = "courier-demo-v1-Echo create"
		handleName  = "courier-demo-v1-Echo-worker process"
	)
	find := func(name string) (tracetest.SpanStub, bool) {
		for _, s := range exp.GetSpans() {
			if s.Name == name {
				return s, true
			}
		}
		return tracetest.SpanStub{}, false
	}
	timeout := time.After(30 * time.Second)
	for {
		if _, ok := find(handleName); ok {
			break
		}
		select {
		case <-exp.exported:
		case <-timeout:
			var names []string
			for _, s := range exp.GetSpans() {
				names = append(names, s.Name)
			}
			t.Fatalf("no %q span in 30s; spans: %q", handleName, names)
		}
	}
	rpc, ok1 := find(rpcName)
	pub, ok2 := find(publishName)
	handle, _ := find(handleName)
	if !ok1 || !ok2 {
		t.Fatalf("RPC span found: %v, publish span found: %v", ok1, ok2)
	}
	tid := rpc.SpanContext.TraceID()
	if pub.SpanContext.TraceID() != tid || handle.SpanContext.TraceID() != tid {
		t.Fatalf("not one trace: rpc %s, publish %s, handle %s", tid, pub.SpanContext.TraceID(), handle.SpanContext.TraceID())
	}
	if pub.Parent.SpanID() != rpc.SpanContext.SpanID() {
		t.Errorf("publish span's parent is %s, want the RPC span %s", pub.Parent.SpanID(), rpc.SpanContext.SpanID())
	}
	if handle.Parent.SpanID() != pub.SpanContext.SpanID() || !handle.Parent.IsRemote() {
		t.Errorf("handler span's parent is %s (remote %v), want the publish span %s via traceparent", handle.Parent.SpanID(), handle.Parent.IsRemote(), pub.SpanContext.SpanID())
	}
	for _, s := range []tracetest.SpanStub{pub, handle} {
		found := false
		for _, kv := range s.Attributes {
			if kv.Key == "courier.job_id" && kv.Value.AsString() == id {
				found = true
			}
		}
		if !found {
			t.Errorf("span %q has no courier.job_id=%s attribute: %v", s.Name, id, s.Attributes)
		}
	}
}
