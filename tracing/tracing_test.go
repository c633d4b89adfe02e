package tracing_test

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"google.golang.org/protobuf/proto"

	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/sqlite"
	"github.com/courierq/courier/tracing"
	"github.com/courierq/courier/wire"
)

func TestNewRejectsUnknownExporter(t *testing.T) {
	_, err := tracing.New(context.Background(), tracing.Config{Exporter: "jaeger"})
	if err == nil || !strings.HasPrefix(err.Error(), "tracing: ") || !strings.Contains(err.Error(), "stdout") {
		t.Fatalf("err = %v, want a tracing: error naming the choices", err)
	}
}

func TestOffTracesNothing(t *testing.T) {
	tr, err := tracing.New(context.Background(), tracing.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if tr.Enabled() || tr.ServerOption() != nil {
		t.Fatal("tracing is on with the zero Config")
	}
	var got context.Context
	h := tr.Middleware()(func(ctx context.Context, _ *handlers.Request) (proto.Message, error) { got = ctx; return nil, nil })
	if _, err := h(context.Background(), &handlers.Request{Type: "t", TraceParent: "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-01"}); err != nil {
		t.Fatal(err)
	}
	if got != context.Background() {
		t.Fatal("the middleware changed ctx with tracing off")
	}
}

// TestStdoutWritesSpans: the demo's exporter writes each span as JSON.
func TestStdoutWritesSpans(t *testing.T) {
	var buf bytes.Buffer
	tr, err := tracing.New(context.Background(), tracing.Config{Exporter: "stdout", Stdout: &buf})
	if err != nil {
		t.Fatal(err)
	}
	tr.WrapPublisher(okPublisher{}, wire.Naming{}).PublishBatch(context.Background(), []*wire.Message{{ID: "j1", Type: "courier.demo.v1.Echo"}})
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if out := buf.String(); !strings.Contains(out, `"Name":"courier-demo-v1-Echo create"`) || !strings.Contains(out, `"j1"`) {
		t.Fatalf("stdout exporter wrote %q, want the publish span with its job ID", out)
	}
}

// TestPublishSpanParentedOnStoredTraceContext: Enqueue through WrapStore
// stores the caller's trace context with the job; the publish span of its
// outbox entry (claimed later, e.g. by another replica's relay after a
// restart) is its child, with no memory of the enqueue in between.
func TestPublishSpanParentedOnStoredTraceContext(t *testing.T) {
	ctx := context.Background()
	exp := tracetest.NewInMemoryExporter()
	tr, err := tracing.New(ctx, tracing.Config{SpanExporter: exp})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown(ctx)
	s, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "jobs.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rpcCtx, rpc := tr.Provider().Tracer("test").Start(ctx, "EnqueueJob")
	j, _, err := tr.WrapStore(s).Enqueue(rpcCtx, jobs.EnqueueParams{Job: jobs.Job{Type: "courier.demo.v1.Echo"}})
	rpc.End()
	if err != nil {
		t.Fatal(err)
	}
	sc := rpc.SpanContext()
	if want := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"; j.TraceParent != want {
		t.Fatalf("stored TraceParent %q, want the RPC span's %q", j.TraceParent, want)
	}
	es, err := s.ClaimOutbox(ctx, jobs.ClaimOutboxParams{Limit: 1, Owner: "r", LeaseFor: time.Minute})
	if err != nil || len(es) != 1 || es[0].TraceParent != j.TraceParent {
		t.Fatalf("ClaimOutbox = %+v, %v; want the entry with the job's trace context", es, err)
	}
	msg := &wire.Message{ID: es[0].JobID, Type: es[0].Type, TraceParent: es[0].TraceParent, TraceState: es[0].TraceState}
	tr.WrapPublisher(okPublisher{}, wire.Naming{}).PublishBatch(ctx, []*wire.Message{msg})
	var publish tracetest.SpanStub
	for _, sp := range exp.GetSpans() {
		if sp.Name == "courier-demo-v1-Echo create" {
			publish = sp
		}
	}
	if publish.Parent.SpanID() != sc.SpanID() || publish.SpanContext.TraceID() != sc.TraceID() {
		t.Fatalf("publish span parent %v in trace %v; want the RPC span %v in trace %v",
			publish.Parent.SpanID(), publish.SpanContext.TraceID(), sc.SpanID(), sc.TraceID())
	}
	// The message now carries the publish span, for the handler's span.
	if want := "00-" + sc.TraceID().String() + "-" + publish.SpanContext.SpanID().String() + "-01"; msg.TraceParent != want {
		t.Fatalf("message traceparent %q after the publish, want the publish span's %q", msg.TraceParent, want)
	}
}

// okPublisher accepts every message.
type okPublisher struct{}

func (okPublisher) PublishBatch(_ context.Context, msgs []*wire.Message) []error {
	return make([]error, len(msgs))
}
