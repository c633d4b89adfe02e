package courier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/api/iterator"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/courierq/courier/backend/jobservice"
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
	"github.com/courierq/courier/wire"
)

// observe is the Node's metrics, tracing and readiness, and its dashboard.
type observe struct {
	p       *parts
	cfg     config.Config
	log     *slog.Logger
	reg     *prometheus.Registry
	metrics *metrics.Metrics
	tracing *tracing.Tracing
	ready   *readiness.Checker
}

// newObserve builds metrics and tracing around p.store (already open) and
// the readiness checks; it registers tracing's shutdown in p.closers.
func newObserve(ctx context.Context, p *parts) (*observe, error) {
	o := &observe{p: p, cfg: p.cfg, log: p.n.log, reg: prometheus.NewRegistry()}
	var err error
	if o.metrics, err = metrics.New(metrics.Config{Registry: o.reg, Store: p.store, ProcessCollectors: true}); err != nil {
		return nil, err
	}
	tcfg := p.cfg.Tracing
	if p.n.opt.spanExporter != nil {
		tcfg.SpanExporter = p.n.opt.spanExporter
	}
	if o.tracing, err = tracing.New(ctx, tcfg); err != nil {
		return nil, err
	}
	p.closers = append(p.closers, func() error {
		sctx, cancel := context.WithTimeout(context.Background(), 5e9)
		defer cancel()
		return o.tracing.Shutdown(sctx)
	})
	store := p.store // the undecorated store: pinging needs no metrics
	ps := p.ps
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
		Interval: p.cfg.ReadyInterval.D(),
		OnChange: func(ready bool, r readiness.Report) {
			status := healthpb.HealthCheckResponse_SERVING
			if !ready {
				status = healthpb.HealthCheckResponse_NOT_SERVING
				o.log.Warn("courierd: not ready", "checks", r.Checks, "errors", r.Errors)
			} else {
				o.log.Info("courierd: ready")
			}
			if p.grpc != nil {
				p.grpc.Health().SetServingStatus("", status)
				p.grpc.Health().SetServingStatus("courier.v1.JobService", status)
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

// routes adds /metrics, /readyz and the dashboard. It runs after the gRPC
// server listens (the dashboard's actions call it).
func (o *observe) routes(mux *http.ServeMux) error {
	mux.Handle("GET /metrics", o.metrics.Handler())
	mux.Handle("GET /readyz", o.ready)
	if o.cfg.HTTP.Dashboard.Off() || o.p.grpc == nil {
		return nil
	}
	dcfg := dashboard.Config{Store: o.p.store, Types: o.p.reg.Types(), Resolver: protoregistry.GlobalTypes,
		RateLimitWaiting: o.metrics.WaitingNow, Logger: o.log}
	switch {
	case o.cfg.GRPC.TLS != nil:
		dcfg.ActionsNote = "Actions are off: the dashboard calls the gRPC API over plaintext loopback, and this server uses TLS. Use the courier CLI."
	default:
		conn, err := client.Dial(o.p.grpc.Addr().String(), client.Config{})
		if err != nil {
			return fmt.Errorf("dashboard: client for the gRPC API: %w", err)
		}
		o.p.closers = append(o.p.closers, conn.Close)
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
			labels[jobservice.ReenqueueLabel] = failed.ID
			resp, err := jc.EnqueueJob(ctx, &courierv1.EnqueueJobRequest{
				Payload: &anypb.Any{TypeUrl: "type.googleapis.com/" + failed.Type, Value: failed.Payload},
				// One re-enqueue per failed job, however often the button is pressed.
				IdempotencyKey: reenqueueKey(failed.ID),
				Labels:         labels,
			})
			if err != nil {
				return "", err
			}
			return resp.JobId, nil
		}
		if _, ok := o.p.raw.(jobs.TypePauser); ok {
			dcfg.PauseType = func(ctx context.Context, r *http.Request, typ string, pause bool) error {
				if a := r.Header.Get("Authorization"); a != "" {
					ctx = metadata.AppendToOutgoingContext(ctx, "authorization", a)
				}
				if pause {
					_, err := jc.PauseJobType(ctx, &courierv1.PauseJobTypeRequest{Type: typ})
					return err
				}
				_, err := jc.ResumeJobType(ctx, &courierv1.ResumeJobTypeRequest{Type: typ})
				return err
			}
		}
		if o.cfg.GRPC.DevMode {
			dcfg.ActionsNote = "Dev mode: actions are not authenticated."
		} else {
			dcfg.ActionsNote = "Actions are CancelJob and EnqueueJob calls to the gRPC API with this request's Authorization header (e.g. set by an authenticating proxy); its policy decides."
		}
	}
	if o.p.dead != nil {
		dcfg.DeadLetters = deadLetters{o.p.dead}
	}
	dcfg.Schedules, _ = o.p.raw.(jobs.Schedules)
	dcfg.Paused, _ = o.p.raw.(jobs.TypePauser)
	if o.cfg.GRPC.DevMode {
		// Unauthenticated, on loopback: answer only to loopback names, so
		// that no web page can reach it by DNS rebinding.
		dcfg.Hosts = loopbackHosts(o.cfg.HTTP.Addr, o.p.httpLis.Addr().String())
	}
	if roles := o.cfg.HTTP.Dashboard.ReadRoles; len(roles) > 0 && !o.cfg.GRPC.DevMode {
		dcfg.Authorize = func(r *http.Request) error {
			id, err := o.p.grpc.AuthenticateHTTP(r)
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

// reenqueueKey is the idempotency key of the re-enqueue of failed job id
// (jobservice.ReenqueueKey: the dashboard and ReplayDeadLetters share it).
func reenqueueKey(id string) string { return jobservice.ReenqueueKey(id) }

// loopbackHosts are the host names a dev-mode dashboard answers: the
// loopback names and the hosts of the given addresses (configured, bound).
func loopbackHosts(addrs ...string) []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	for _, a := range addrs {
		if h, _, err := net.SplitHostPort(a); err == nil && h != "" && !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

// deadLetters shows the dead-letter subscriptions on the dashboard.
type deadLetters struct{ r *ingest.DeadLetterReader }

func (d deadLetters) Peek(ctx context.Context, typ string, limit int) ([]dashboard.DeadLetter, error) {
	dls, err := d.r.Peek(ctx, typ, limit)
	if err != nil {
		return nil, err
	}
	out := make([]dashboard.DeadLetter, len(dls))
	for i, dl := range dls {
		out[i] = dashboard.DeadLetter{
			Subscription: dl.Subscription, MessageID: dl.MessageID, Type: dl.Type, JobID: dl.JobID, Reason: dl.Reason,
			Attempt: dl.Attempt, Published: dl.Published, Data: dl.Data, Labels: wire.Labels(dl.Attributes), Attributes: dl.Attributes,
		}
	}
	return out, nil
}

func (d deadLetters) Ack(ctx context.Context, sub string, ids []string) ([]string, error) {
	return d.r.Ack(ctx, sub, ids)
}

// jobDeadLetters serves ListDeadLetters and ReplayDeadLetters: the
// dashboard's letters (the two packages' DeadLetter have the same fields).
type jobDeadLetters struct{ deadLetters }

func (d jobDeadLetters) Peek(ctx context.Context, typ string, limit int) ([]jobservice.DeadLetter, error) {
	dls, err := d.deadLetters.Peek(ctx, typ, limit)
	if err != nil {
		return nil, err
	}
	out := make([]jobservice.DeadLetter, len(dls))
	for i, dl := range dls {
		out[i] = jobservice.DeadLetter(dl)
	}
	return out, nil
}
