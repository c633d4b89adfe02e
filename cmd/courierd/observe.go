package main

// observe.go wires issue 6 (metrics, tracing, readiness, dashboard) into the
// stack; stack.go calls it in a few marked lines.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/courierq/courier/client"
	"github.com/courierq/courier/config"
	"github.com/courierq/courier/dashboard"
	"github.com/courierq/courier/ingest"
	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/metrics"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
	"github.com/courierq/courier/publisher"
	"github.com/courierq/courier/readiness"
	"github.com/courierq/courier/tracing"
)

// observe is the stack's metrics, tracing and readiness.
type observe struct {
	st      *stack
	cfg     *config.Config
	log     *slog.Logger
	reg     *prometheus.Registry
	metrics *metrics.Metrics
	tracing *tracing.Tracing
	ready   *readiness.Checker
}

// newObserve builds metrics and tracing around st.store (already open) and
// the readiness checks; it registers tracing's shutdown in st.closers.
func newObserve(ctx context.Context, cfg *config.Config, st *stack, h hooks) (*observe, error) {
	o := &observe{st: st, cfg: cfg, log: st.log, reg: prometheus.NewRegistry()}
	var err error
	if o.metrics, err = metrics.New(metrics.Config{Registry: o.reg, Store: st.store, ProcessCollectors: true}); err != nil {
		return nil, err
	}
	tcfg := cfg.Tracing
	if h.spanExporter != nil {
		tcfg.SpanExporter = h.spanExporter
	}
	if o.tracing, err = tracing.New(ctx, tcfg); err != nil {
		return nil, err
	}
	st.closers = append(st.closers, func() error {
		sctx, cancel := context.WithTimeout(context.Background(), 5e9)
		defer cancel()
		return o.tracing.Shutdown(sctx)
	})
	store := st.store // the undecorated store: pinging needs no metrics
	ps := st.psClient
	o.ready, err = readiness.New(readiness.Config{
		Checks: []readiness.Check{
			{Name: "store", Func: store.Ping},
			{Name: "pubsub", Func: func(ctx context.Context) error {
				it := ps.TopicAdminClient.ListTopics(ctx, &pubsubpb.ListTopicsRequest{Project: "projects/" + ps.Project(), PageSize: 1})
				if _, err := it.Next(); err != nil && !errors.Is(err, iterator.Done) {
					return fmt.Errorf("pubsub: listing topics of %s: %w", ps.Project(), err)
				}
				return nil
			}},
		},
		Interval: h.readyInterval,
		OnChange: func(ready bool, r readiness.Report) {
			status := healthpb.HealthCheckResponse_SERVING
			if !ready {
				status = healthpb.HealthCheckResponse_NOT_SERVING
				o.log.Warn("courierd: not ready", "checks", r.Checks)
			} else {
				o.log.Info("courierd: ready")
			}
			if st.grpc != nil {
				st.grpc.Health().SetServingStatus("", status)
				st.grpc.Health().SetServingStatus("courier.v1.JobService", status)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	return o, nil
}

// wrapStore decorates the store with metrics and tracing.
func (o *observe) wrapStore(s jobs.Store) jobs.Store {
	return o.metrics.WrapStore(o.tracing.WrapStore(s))
}

// publishError counts and logs a failed fire-and-forget publish.
func (o *observe) publishError(e *publisher.PublishError) {
	o.metrics.PublishError(e)
	o.log.Error("publisher: publish failed", "err", e)
}

// outboxObserve traces and counts each outbox publish.
func (o *observe) outboxObserve(ctx context.Context, e jobs.OutboxEntry) (context.Context, func(error)) {
	ctx, endTrace := o.tracing.OutboxObserve(ctx, e)
	ctx, endMetrics := o.metrics.ObserveOutbox(ctx, e)
	return ctx, func(err error) { endMetrics(err); endTrace(err) }
}

func (o *observe) ingestHooks() ingest.Hooks {
	h := ingest.Hooks{Running: o.metrics.Running, DeadLettered: o.metrics.DeadLettered}
	if o.tracing.Enabled() {
		h.Deliver = o.tracing.IngestDeliver
	}
	return h
}

func (o *observe) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{o.tracing.ServerOption()}
}

// routes adds /metrics, /readyz and the dashboard. It runs after the gRPC
// server listens (the dashboard's actions call it).
func (o *observe) routes(mux *http.ServeMux) error {
	mux.Handle("GET /metrics", o.metrics.Handler())
	mux.Handle("GET /readyz", o.ready)
	if o.cfg.HTTP.Dashboard.Off() {
		return nil
	}
	dcfg := dashboard.Config{Store: o.st.store, Types: o.st.registry.Types(), Resolver: protoregistry.GlobalTypes,
		RateLimitWaiting: o.metrics.WaitingNow, Logger: o.log}
	switch {
	case o.cfg.GRPC.TLS != nil:
		dcfg.ActionsNote = "Actions are off: the dashboard calls the gRPC API over plaintext loopback, and this server uses TLS. Use the courier CLI."
	default:
		conn, err := client.Dial(o.st.grpcAddr(), client.Config{})
		if err != nil {
			return fmt.Errorf("dashboard: client for the gRPC API: %w", err)
		}
		o.st.closers = append(o.st.closers, conn.Close)
		jc := courierv1.NewJobServiceClient(conn)
		dcfg.Cancel = func(ctx context.Context, r *http.Request, id string) error {
			// The RPC carries the browser's credentials, so the gRPC API's
			// authentication and policy decide, as for any caller.
			if a := r.Header.Get("Authorization"); a != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", a)
			}
			_, err := jc.CancelJob(ctx, &courierv1.CancelJobRequest{Id: id})
			return err
		}
		dcfg.Reenqueue = func(ctx context.Context, r *http.Request, failed *jobs.Job) (string, error) {
			if a := r.Header.Get("Authorization"); a != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", a)
			}
			labels := map[string]string{}
			for k, v := range failed.Labels {
				labels[k] = v
			}
			labels["reenqueued-from"] = failed.ID
			resp, err := jc.EnqueueJob(ctx, &courierv1.EnqueueJobRequest{
				Payload: &anypb.Any{TypeUrl: "type.googleapis.com/" + failed.Type, Value: failed.Payload},
				// One re-enqueue per failed job, however often the button is pressed.
				IdempotencyKey: "courier-reenqueue:" + failed.ID,
				Labels:         labels,
			})
			if err != nil {
				return "", err
			}
			return resp.JobId, nil
		}
		if o.cfg.GRPC.DevMode {
			dcfg.ActionsNote = "Dev mode: actions are not authenticated."
		} else {
			dcfg.ActionsNote = "Actions are CancelJob and EnqueueJob calls to the gRPC API with this request's Authorization header (e.g. set by an authenticating proxy); its policy decides."
		}
	}
	if o.st.worker != nil {
		dcfg.DeadLetters = deadLetters{o.st.worker}
	}
	if roles := o.cfg.HTTP.Dashboard.ReadRoles; len(roles) > 0 && !o.cfg.GRPC.DevMode {
		dcfg.Authorize = func(r *http.Request) error {
			id, err := o.st.grpc.AuthenticateHTTP(r)
			if err != nil {
				return fmt.Errorf("%w: %v", dashboard.ErrUnauthenticated, err)
			}
			if id.Anonymous() {
				return fmt.Errorf("%w: the dashboard needs one of the roles %v; send Authorization: Bearer TOKEN, or come through the authenticating proxy", dashboard.ErrUnauthenticated, roles)
			}
			if !id.HasAnyRole(roles) {
				return fmt.Errorf("dashboard: %s %q holds the roles %v; the dashboard needs one of %v (http.dashboard.readRoles)", id.Method, id.Name, id.Roles, roles)
			}
			return nil
		}
	}
	d, err := dashboard.New(dcfg)
	if err != nil {
		return err
	}
	d.Routes(mux)
	return nil
}

// deadLetters shows the worker's dead-letter subscriptions on the dashboard.
type deadLetters struct{ w *ingest.Worker }

func (d deadLetters) Peek(ctx context.Context, typ string, limit int) ([]dashboard.DeadLetter, error) {
	dls, err := d.w.PeekDeadLetters(ctx, typ, limit)
	if err != nil {
		return nil, err
	}
	out := make([]dashboard.DeadLetter, len(dls))
	for i, dl := range dls {
		out[i] = dashboard.DeadLetter{
			Subscription: dl.Subscription, MessageID: dl.MessageID, Type: dl.Type, JobID: dl.JobID, Reason: dl.Reason,
			Attempt: dl.Attempt, Published: dl.Published, Data: dl.Data, Labels: publisher.Labels(dl.Attributes), Attributes: dl.Attributes,
		}
	}
	return out, nil
}

func (d deadLetters) Ack(ctx context.Context, sub string, ids []string) ([]string, error) {
	return d.w.AckDeadLetters(ctx, sub, ids)
}
