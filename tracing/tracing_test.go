package tracing_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/tracing"
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
	_, end := tr.OutboxObserve(context.Background(), jobs.OutboxEntry{JobID: "j1", Type: "courier.demo.v1.Echo"})
	end(nil)
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if out := buf.String(); !strings.Contains(out, `"Name":"courier.publish courier.demo.v1.Echo"`) || !strings.Contains(out, `"j1"`) {
		t.Fatalf("stdout exporter wrote %q, want the publish span with its job ID", out)
	}
}
