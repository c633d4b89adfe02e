// Package tracing follows a job through courier with OpenTelemetry: the
// EnqueueJob RPC (the otelgrpc stats handler, ServerOption), the outbox
// relay's publish (WrapPublisher, parented on the RPC's span, whose trace
// context WrapStore stores with the job), and the handler run by ingest
// (Middleware, parented on the traceparent attribute the publish put on the
// Pub/Sub message), so one trace shows a job from enqueue to end, whichever
// replica publishes it and across restarts and run_after waits. All three
// are decorators or middleware: nothing else knows tracing exists.
// The exporter is chosen by Config: none (the default), "stdout" (the demo)
// or "otlp" (gRPC to a collector).
//
// It is for courierd. It sets no global OpenTelemetry state (no
// otel.SetTracerProvider): cmd passes the provider where it is needed.
// Handlers that want their own spans use the span in their ctx.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

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
	"github.com/courierq/courier/outbox"
	"github.com/courierq/courier/wire"
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
	// $OTEL_SERVICE_NAME, else "courierd". OTEL_RESOURCE_ATTRIBUTES adds
	// resource attributes; the OTLP exporter reads the standard
	// OTEL_EXPORTER_OTLP_* variables, the SDK OTEL_TRACES_SAMPLER.
	ServiceName string `json:"serviceName,omitempty"`

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
}

// New validates cfg and builds the exporter (it connects lazily).
func New(ctx context.Context, cfg Config) (*Tracing, error) {
	t := &Tracing{cfg: cfg, prop: propagation.TraceContext{}}
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
	res, err := resource.New(ctx, resource.WithAttributes(semconv.ServiceName("courierd")),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES win over the default
		resource.WithTelemetrySDK())
	if err != nil {
		return nil, fmt.Errorf("tracing: resource from OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	if cfg.ServiceName != "" { // the config's serviceName wins over everything
		res, _ = resource.Merge(res, resource.NewSchemaless(semconv.ServiceName(cfg.ServiceName)))
	}
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

// WrapStore returns s with Enqueue storing the caller's trace context (the
// RPC's span) with the job (Job.TraceParent, TraceState), unless the job
// carries one already, so that WrapPublisher can parent the publish on it.
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
	if p.Job.TraceParent == "" {
		c := propagation.MapCarrier{}
		s.t.prop.Inject(ctx, c)
		p.Job.TraceParent, p.Job.TraceState = c["traceparent"], c["tracestate"]
	}
	return s.Store.Enqueue(ctx, p)
}

// EnqueueBatch implements jobs.BatchEnqueuer when the wrapped store does,
// storing the caller's trace context with each job as Enqueue does.
func (s *store) EnqueueBatch(ctx context.Context, ps []jobs.EnqueueParams) ([]jobs.EnqueueResult, error) {
	c := propagation.MapCarrier{}
	s.t.prop.Inject(ctx, c)
	ps = slices.Clone(ps)
	for i := range ps {
		if ps[i].Job.TraceParent == "" {
			ps[i].Job.TraceParent, ps[i].Job.TraceState = c["traceparent"], c["tracestate"]
		}
	}
	return jobs.EnqueueBatch(ctx, s.Store, ps)
}

// SupportsUniqueScopes implements jobs.UniqueScopes: as the wrapped store.
func (s *store) SupportsUniqueScopes() bool { return jobs.SupportsUniqueScopes(s.Store) }

// WrapPublisher returns p with each message the outbox relay publishes in
// a "TOPIC create" producer span (the OpenTelemetry messaging conventions
// for GCP Pub/Sub), a child of the trace context the
// message carries (the enqueue's, stored with the job: so the trace holds
// whichever replica publishes, after restarts and run_after waits); the
// message then carries the publish span's context to the handler. Off, it
// returns p.
func (t *Tracing) WrapPublisher(p outbox.Publisher, naming wire.Naming) outbox.Publisher {
	if !t.Enabled() {
		return p
	}
	return &tracedPublisher{Publisher: p, t: t, naming: naming}
}

type tracedPublisher struct {
	outbox.Publisher
	t      *Tracing
	naming wire.Naming
}

func (p *tracedPublisher) PublishBatch(ctx context.Context, msgs []*wire.Message) []error {
	spans := make([]trace.Span, len(msgs))
	for i, m := range msgs {
		pctx := ctx
		if m.TraceParent != "" {
			pctx = p.t.prop.Extract(ctx, propagation.MapCarrier{"traceparent": m.TraceParent, "tracestate": m.TraceState})
		}
		topic, _ := p.naming.Topic(m.Type)
		attrs := []attribute.KeyValue{
			semconv.MessagingSystemGCPPubSub, semconv.MessagingDestinationName(topic),
			semconv.MessagingOperationName("create"), semconv.MessagingOperationTypeCreate,
			attribute.String("courier.job_id", m.ID), attribute.String("courier.job_type", m.Type),
		}
		if m.OrderingKey != "" {
			attrs = append(attrs, semconv.MessagingGCPPubSubMessageOrderingKey(m.OrderingKey))
		}
		var span trace.Span
		// "<topic> create": the messaging conventions' name for the span
		// of a message's creation, as the Pub/Sub clients name theirs.
		pctx, span = p.t.tracer.Start(pctx, topic+" create", trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
		spans[i] = span
		c := propagation.MapCarrier{}
		p.t.prop.Inject(pctx, c)
		m.TraceParent, m.TraceState = c["traceparent"], c["tracestate"]
	}
	errs := p.Publisher.PublishBatch(ctx, msgs)
	for i, span := range spans {
		end(span, errs[i])
	}
	return errs
}

// Middleware is the handler middleware that runs each attempt in a
// "SUBSCRIPTION process" consumer span (the messaging conventions), a child of the span named by the
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
			// "<subscription> process": the messaging conventions' name for
			// the span of a message's processing.
			ctx, span := t.tracer.Start(ctx, req.Source+" process", trace.WithSpanKind(trace.SpanKindConsumer),
				trace.WithAttributes(semconv.MessagingSystemGCPPubSub, semconv.MessagingDestinationSubscriptionName(req.Source),
					semconv.MessagingOperationName("process"), semconv.MessagingOperationTypeProcess,
					semconv.MessagingMessageID(req.MessageID), semconv.MessagingGCPPubSubMessageDeliveryAttempt(req.Attempt),
					attribute.String("courier.job_id", req.ID), attribute.String("courier.job_type", req.Type),
					attribute.Int("courier.attempt", req.Attempt)))
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
