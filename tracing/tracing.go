// Package tracing follows a job through courier with OpenTelemetry: the
// EnqueueJob RPC (the otelgrpc stats handler, ServerOption), the outbox
// relay's publish (OutboxObserve, parented on the RPC's span), and the
// handler run by ingest (IngestDeliver, parented on the traceparent
// attribute the publisher put on the Pub/Sub message), so one trace shows a
// job from enqueue to end. The exporter is chosen by Config: none (the
// default), "stdout" (the demo) or "otlp" (gRPC to a collector).
//
// It is for courierd. It sets no global OpenTelemetry state (no
// otel.SetTracerProvider): cmd passes the provider where it is needed.
// Handlers that want their own spans use the span in their ctx.
//
// Limitation: the outbox row does not store a trace context, so the
// enqueue → publish link is kept in memory (bounded, by job ID). A job
// published by another replica, after a restart, or after a run_after wait
// longer than the memory holds starts a new trace at its publish.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/jobs"
)

// Config configures tracing. The zero value traces nothing.
type Config struct {
	// Exporter: "" or "off" traces nothing; "stdout" writes spans as JSON
	// to Stdout; "otlp" sends them over OTLP/gRPC to Endpoint.
	Exporter string `json:"exporter,omitempty"`
	// Endpoint is the OTLP/gRPC collector, host:port. "" means the
	// exporter's default (OTEL_EXPORTER_OTLP_ENDPOINT, else localhost:4317).
	Endpoint string `json:"endpoint,omitempty"`
	// Insecure sends OTLP without TLS (a local collector).
	Insecure bool `json:"insecure,omitempty"`
	// ServiceName is the service.name resource attribute. "" means
	// "courierd".
	ServiceName string `json:"serviceName,omitempty"`
	// MaxPending bounds the enqueue → publish links kept in memory. 0 means
	// 100000.
	MaxPending int `json:"maxPending,omitempty"`

	// Stdout receives the "stdout" exporter's spans. nil means os.Stdout.
	Stdout io.Writer `json:"-"`
	// SpanExporter, when set, is used instead of Exporter (tests pass
	// tracetest.NewInMemoryExporter()). Spans are exported synchronously.
	SpanExporter sdktrace.SpanExporter `json:"-"`
}

// Tracing holds the tracer provider and the hooks courierd plugs into its
// components. A nil *Tracing is valid and traces nothing.
type Tracing struct {
	cfg    Config
	sdk    *sdktrace.TracerProvider // nil when off
	tracer trace.Tracer
	prop   propagation.TextMapPropagator

	mu      sync.Mutex
	pending map[string]trace.SpanContext // job ID → enqueue span
	order   []string
}

// New validates cfg and builds the exporter (it connects lazily).
func New(ctx context.Context, cfg Config) (*Tracing, error) {
	if cfg.ServiceName == "" {
		cfg.ServiceName = "courierd"
	}
	if cfg.MaxPending < 0 {
		return nil, fmt.Errorf("tracing: maxPending is %d; use a positive number or 0 for 100000", cfg.MaxPending)
	}
	if cfg.MaxPending == 0 {
		cfg.MaxPending = 100000
	}
	t := &Tracing{cfg: cfg, prop: propagation.TraceContext{}, pending: map[string]trace.SpanContext{}}
	var opt sdktrace.TracerProviderOption
	switch {
	case cfg.SpanExporter != nil:
		opt = sdktrace.WithSyncer(cfg.SpanExporter)
	case cfg.Exporter == "" || cfg.Exporter == "off":
		t.tracer = noop.NewTracerProvider().Tracer("")
		return t, nil
	case cfg.Exporter == "stdout":
		w := cfg.Stdout
		if w == nil {
			w = os.Stdout
		}
		exp, err := stdouttrace.New(stdouttrace.WithWriter(w))
		if err != nil {
			return nil, fmt.Errorf("tracing: stdout exporter: %w", err)
		}
		opt = sdktrace.WithBatcher(exp)
	case cfg.Exporter == "otlp":
		opts := []otlptracegrpc.Option{}
		if cfg.Endpoint != "" {
			opts = append(opts, otlptracegrpc.WithEndpoint(cfg.Endpoint))
		}
		if cfg.Insecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		exp, err := otlptracegrpc.New(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("tracing: OTLP exporter for %q: %w", cfg.Endpoint, err)
		}
		opt = sdktrace.WithBatcher(exp)
	default:
		return nil, fmt.Errorf("tracing: exporter %q is unknown; use \"\" (off), \"stdout\" or \"otlp\"", cfg.Exporter)
	}
	res := resource.NewSchemaless(semconv.ServiceName(cfg.ServiceName))
	t.sdk = sdktrace.NewTracerProvider(opt, sdktrace.WithResource(res))
	t.tracer = t.sdk.Tracer("github.com/courierq/courier")
	return t, nil
}

// Enabled reports whether spans are recorded.
func (t *Tracing) Enabled() bool { return t != nil && t.sdk != nil }

// Provider is the tracer provider (a no-op one when off).
func (t *Tracing) Provider() trace.TracerProvider {
	if !t.Enabled() {
		return noop.NewTracerProvider()
	}
	return t.sdk
}

// ServerOption is the otelgrpc stats handler for the gRPC server, or nil
// when tracing is off.
func (t *Tracing) ServerOption() grpc.ServerOption {
	if !t.Enabled() {
		return nil
	}
	return grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(t.sdk), otelgrpc.WithPropagators(t.prop)))
}

// Inject writes ctx's trace context into attrs (publisher.Config.InjectTrace).
func (t *Tracing) Inject(ctx context.Context, attrs map[string]string) {
	t.prop.Inject(ctx, propagation.MapCarrier(attrs))
}

// WrapStore returns s with Enqueue remembering the caller's span (the RPC's)
// for the job, so that OutboxObserve can parent the publish on it.
func (t *Tracing) WrapStore(s jobs.Store) jobs.Store {
	if !t.Enabled() {
		return s
	}
	return &store{Store: s, t: t}
}

type store struct {
	jobs.Store
	t *Tracing
}

func (s *store) Enqueue(ctx context.Context, p jobs.EnqueueParams) (*jobs.Job, bool, error) {
	j, dup, err := s.Store.Enqueue(ctx, p)
	if sc := trace.SpanContextFromContext(ctx); err == nil && !dup && sc.IsValid() {
		s.t.remember(j.ID, sc)
	}
	return j, dup, err
}

func (t *Tracing) remember(id string, sc trace.SpanContext) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(t.order) >= t.cfg.MaxPending {
		delete(t.pending, t.order[0])
		t.order = t.order[1:]
	}
	t.pending[id] = sc
	t.order = append(t.order, id)
}

func (t *Tracing) take(id string) (trace.SpanContext, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	sc, ok := t.pending[id]
	delete(t.pending, id) // its id stays in order until pushed out; harmless
	return sc, ok
}

// OutboxObserve starts the "courier.publish TYPE" span of an outbox entry,
// a child of its enqueue span when this process remembers it
// (outbox.Config.Observe).
func (t *Tracing) OutboxObserve(ctx context.Context, e jobs.OutboxEntry) (context.Context, func(error)) {
	if !t.Enabled() {
		return ctx, func(error) {}
	}
	if sc, ok := t.take(e.JobID); ok {
		ctx = trace.ContextWithRemoteSpanContext(ctx, sc)
	}
	ctx, span := t.tracer.Start(ctx, "courier.publish "+e.Type, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("courier.job_id", e.JobID), attribute.String("courier.job_type", e.Type),
			attribute.String("messaging.system", "gcp_pubsub")))
	return ctx, func(err error) { end(span, err) }
}

// Middleware is the handler middleware that runs each attempt in a
// "courier.handle TYPE" consumer span, a child of the span named by the
// message's trace context (handlers.Request.TraceParent), so a trace runs
// from the enqueue through the publish to the handler
// (ingest.Config.Middleware). Off, it adds nothing.
func (t *Tracing) Middleware() handlers.Middleware {
	return func(next handlers.Handler) handlers.Handler {
		if !t.Enabled() {
			return next
		}
		return func(ctx context.Context, req *handlers.Request) (proto.Message, error) {
			if req.TraceParent != "" {
				carrier := propagation.MapCarrier{"traceparent": req.TraceParent}
				if req.TraceState != "" {
					carrier["tracestate"] = req.TraceState
				}
				ctx = t.prop.Extract(ctx, carrier)
			}
			ctx, span := t.tracer.Start(ctx, "courier.handle "+req.Type, trace.WithSpanKind(trace.SpanKindConsumer),
				trace.WithAttributes(attribute.String("courier.job_id", req.ID), attribute.String("courier.job_type", req.Type),
					attribute.Int("courier.attempt", req.Attempt), attribute.String("messaging.system", "gcp_pubsub")))
			res, err := next(ctx, req)
			end(span, err)
			return res, err
		}
	}
}

func end(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// Shutdown flushes pending spans and stops the exporter, bounded by ctx.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	if err := t.sdk.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("tracing: shutdown: %w", err)
	}
	return nil
}
