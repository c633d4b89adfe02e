package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/v2"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tclient "go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"google.golang.org/api/option"

	"github.com/courierq/courier/backend"
	"github.com/courierq/courier/backend/jobservice"
	"github.com/courierq/courier/config"
	"github.com/courierq/courier/emulator"
	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/handlers/demo"
	"github.com/courierq/courier/ingest"
	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/postgres"
	"github.com/courierq/courier/jobs/sqlite"
	"github.com/courierq/courier/outbox"
	"github.com/courierq/courier/publisher"
	"github.com/courierq/courier/readiness"
	"github.com/courierq/courier/workflows"
	wdemo "github.com/courierq/courier/workflows/demo"
)

// stack is everything courierd runs, built from a Config.
type stack struct {
	log *slog.Logger

	emu      *emulator.Server // embedded emulator, or nil
	psClient *pubsub.Client
	store    jobs.Store
	registry *handlers.Registry
	pub      *publisher.Publisher
	relay    *outbox.Relay
	worker   *ingest.Worker    // nil when handlers are disabled
	temporal *workflows.Worker // nil without a temporal section
	janitor  *jobs.Janitor
	jobs     *jobservice.Service

	grpc    *backend.Server
	http    *http.Server
	httpLis net.Listener
	obs     *observe // metrics, tracing, readiness (observe.go)

	closers []func() error // in reverse order of creation
}

// hooks let tests and benchmarks observe the stack. The zero value adds
// nothing.
type hooks struct {
	// wrapStore, when set, wraps the job store every component uses.
	wrapStore func(jobs.Store) jobs.Store
	// spanExporter, when set, receives the spans (tracing on).
	spanExporter sdktrace.SpanExporter
	// readyInterval is how often readiness is checked. 0 means 5s.
	readyInterval time.Duration
}

// newStack builds the stack; on error it releases what it had built.
func newStack(ctx context.Context, cfg *config.Config, log *slog.Logger, h hooks) (_ *stack, err error) {
	st := &stack{log: log}
	defer func() {
		if err != nil {
			st.close()
		}
	}()

	// Pub/Sub.
	project := cfg.PubSub.Project
	var opts []option.ClientOption
	switch {
	case cfg.PubSub.Emulator == "embedded":
		if project == "" {
			project = "courier-demo"
		}
		st.emu, err = emulator.Start(ctx, emulator.Config{DataDir: cfg.PubSub.EmulatorDataDir})
		if err != nil {
			return nil, err
		}
		st.closers = append(st.closers, st.emu.Close)
		log.Info("courierd: embedded Pub/Sub emulator", "addr", st.emu.Addr, "project", project, "dataDir", cfg.PubSub.EmulatorDataDir)
		opts = emulator.ClientOptions(st.emu.Addr)
	case os.Getenv("PUBSUB_EMULATOR_HOST") != "":
		log.Info("courierd: Pub/Sub emulator from PUBSUB_EMULATOR_HOST", "addr", os.Getenv("PUBSUB_EMULATOR_HOST"), "project", project)
	default:
		log.Info("courierd: Google Cloud Pub/Sub", "project", project)
	}
	st.psClient, err = pubsub.NewClient(ctx, project, opts...)
	if err != nil {
		return nil, fmt.Errorf("pubsub: client for project %s: %w", project, err)
	}
	st.closers = append(st.closers, st.psClient.Close)

	// Job store.
	switch cfg.Store.Driver {
	case "", "sqlite":
		st.store, err = sqlite.Open(ctx, sqlite.Config{Path: cfg.Store.Path})
	case "postgres":
		url := cfg.Store.URL
		if url == "" {
			url = os.Getenv("COURIER_POSTGRES_URL")
		}
		schema := cfg.Store.Schema
		if schema == "" {
			schema = "courier"
		}
		st.store, err = postgres.Open(ctx, postgres.Config{URL: url, Schema: schema})
	}
	if err != nil {
		return nil, err
	}
	st.closers = append(st.closers, st.store.Close)
	if st.obs, err = newObserve(ctx, cfg, st, h); err != nil { // observe.go
		return nil, err
	}
	st.store = st.obs.wrapStore(st.store)
	if h.wrapStore != nil {
		st.store = h.wrapStore(st.store)
	}

	// Handlers.
	naming := publisher.Naming{Prefix: cfg.PubSub.TopicPrefix, Topics: cfg.PubSub.Topics}
	st.registry = handlers.NewRegistry(handlers.RegistryConfig{Logger: log, OnRateLimitWait: st.obs.metrics.RateLimitWait, OnRateLimitWaiting: st.obs.metrics.RateLimitWaiting})
	if cfg.Handlers.Demo {
		if err := demo.Register(st.registry, demo.Config{
			Echo:  handlerConfig(cfg.Handlers.Types["courier.demo.v1.Echo"]),
			Sleep: handlerConfig(cfg.Handlers.Types["courier.demo.v1.Sleep"]),
		}); err != nil {
			return nil, err
		}
	}
	checks := map[string]func(context.Context) error{}
	if cfg.Temporal != nil {
		if err := st.startTemporal(ctx, cfg); err != nil {
			return nil, err
		}
	} else if cfg.Handlers.Demo {
		checks[bisectType] = workflows.RequireTemporal(bisectType)
	}
	for name, hc := range cfg.Handlers.Types {
		if _, ok := st.registry.Lookup(name); !ok && checks[name] == nil {
			return nil, &config.ValidationError{Field: "handlers.types." + name, Value: "configured", Fix: "no handler of this type is compiled into courierd (registered: " + fmt.Sprint(st.registry.Types()) + "); remove it or enable the handlers that provide it (handlers.demo)"}
		}
		if hc.EnqueueRatePerSecond > 0 && checks[name] == nil {
			burst := hc.EnqueueBurst
			if burst == 0 {
				burst = 1
			}
			check, err := workflows.EnqueueLimit(hc.EnqueueRatePerSecond, burst, nil)
			if err != nil {
				return nil, &config.ValidationError{Field: "handlers.types." + name + ".enqueueBurst", Value: hc.EnqueueBurst, Fix: err.Error()}
			}
			checks[name] = check
		}
	}

	// Publishing: publisher and outbox relay.
	st.pub, err = publisher.New(st.psClient, publisher.Config{Naming: naming, Logger: log,
		OnError: st.obs.publishError, InjectTrace: st.obs.tracing.Inject})
	if err != nil {
		return nil, err
	}
	st.relay, err = outbox.New(outbox.Config{Store: st.store, Publisher: st.pub, PollInterval: cfg.Jobs.RelayPollInterval.D(), Logger: log,
		Observe: st.obs.outboxObserve})
	if err != nil {
		return nil, err
	}
	st.janitor, err = jobs.NewJanitor(jobs.JanitorConfig{Store: st.store, Retention: cfg.Jobs.Retention.D(), Logger: log})
	if err != nil {
		return nil, err
	}

	// Workers.
	if !cfg.Handlers.Disabled && len(st.registry.Types()) > 0 {
		maxOut := cfg.Handlers.MaxOutstandingMessages
		if maxOut == 0 {
			maxOut = 4000
		}
		st.worker, err = ingest.New(ingest.Config{
			Client: st.psClient, Store: st.store, Registry: st.registry, Naming: naming,
			DisableCreate: cfg.PubSub.DisableCreate, MaxOutstandingMessages: maxOut, Logger: log,
			AckDeadline: cfg.Handlers.AckDeadline.D(), Hooks: st.obs.ingestHooks(),
		})
		if err != nil {
			return nil, err
		}
	}

	// gRPC.
	types := jobservice.TypeMap{}
	for _, e := range st.registry.Entries() {
		types[e.Type] = jobservice.TypeInfo{MaxAttempts: e.Config.MaxAttempts, Check: checks[e.Type]}
	}
	for name, check := range checks {
		if _, ok := types[name]; !ok {
			types[name] = jobservice.TypeInfo{Check: check} // refused at enqueue, e.g. no Temporal
		}
	}
	st.jobs, err = jobservice.New(jobservice.Config{Store: st.store, Types: types, Notify: st.relay.Notify})
	if err != nil {
		return nil, err
	}
	gcfg := cfg.GRPC
	gcfg.Logger = log
	gcfg.ServerOptions = append(gcfg.ServerOptions, st.obs.serverOptions()...)
	st.grpc, err = backend.New(gcfg, services(st)...)
	if pe := (*backend.PolicyError)(nil); errors.As(err, &pe) && pe.Configured {
		return nil, policyConfigError(pe)
	}
	if err != nil {
		return nil, err
	}
	if err := st.grpc.Listen(); err != nil {
		return nil, err
	}
	st.closers = append(st.closers, st.grpc.Close)

	// HTTP.
	if cfg.HTTP.Addr != "-" {
		addr := cfg.HTTP.Addr
		if addr == "" {
			addr = "127.0.0.1:8006"
		}
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("http: listening on %s: %w", addr, err)
		}
		st.httpLis = lis
		h, err := st.routes()
		if err != nil {
			lis.Close()
			return nil, err
		}
		st.http = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		st.closers = append(st.closers, st.http.Close)
	}
	return st, nil
}

// policyConfigError restates a grpc.policies error with its config path.
func policyConfigError(pe *backend.PolicyError) error {
	valid := strings.Join(pe.Valid, ", ")
	if pe.Method == "" {
		return &config.ValidationError{Field: "grpc.policies", Value: pe.Service, Fix: "courierd hosts no such service; its services are " + valid}
	}
	return &config.ValidationError{Field: "grpc.policies." + pe.Service + ".methods", Value: pe.Method,
		Fix: pe.Service + " has no such method; its methods are " + valid + " (a rule under a misspelt name would leave the real method under the service-wide rule)"}
}

// bisectType is the demo's workflow job type.
const bisectType = "courier.demo.v1.Bisect"

// startTemporal dials Temporal, registers the demo workflow job type (when
// the demo handlers are on) and builds the Temporal worker.
func (st *stack) startTemporal(ctx context.Context, cfg *config.Config) error {
	wcfg := *cfg.Temporal
	wcfg.Logger = st.log
	wcfg = wcfg.WithDefaults()
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := tclient.DialContext(dctx, wcfg.ClientOptions())
	if err != nil {
		return fmt.Errorf("temporal: cannot reach %s (namespace %s): %w; start a dev server with `make run-temporal`, or fix the temporal section of the config", wcfg.HostPort, wcfg.Namespace, err)
	}
	st.closers = append(st.closers, func() error { c.Close(); return nil })
	if st.obs != nil && st.obs.ready != nil {
		// /readyz and gRPC health also follow Temporal when it is configured.
		if err := st.obs.ready.Add(readiness.Check{Name: "temporal", Func: func(ctx context.Context) error {
			_, err := c.CheckHealth(ctx, &tclient.CheckHealthRequest{})
			return err
		}}); err != nil {
			return err
		}
	}
	st.log.Info("courierd: Temporal", "hostPort", wcfg.HostPort, "namespace", wcfg.Namespace, "taskQueue", wcfg.TaskQueue)
	dcfg := wdemo.Config{TaskQueue: wcfg.TaskQueue, Handler: handlerConfig(cfg.Handlers.Types[bisectType])}
	if cfg.Handlers.Demo {
		if err := wdemo.Register(st.registry, c, dcfg); err != nil {
			return err
		}
	}
	wcfg.Client = c
	wcfg.Register = func(r worker.Registry) {
		if cfg.Handlers.Demo {
			wdemo.RegisterWorker(r, dcfg)
		}
	}
	st.temporal, err = workflows.NewWorker(wcfg)
	return err
}

// handlerConfig converts a config file's handler settings.
func handlerConfig(h config.Handler) handlers.Config {
	return handlers.Config{
		RatePerSecond: h.RatePerSecond, Burst: h.Burst, Concurrency: h.Concurrency,
		Timeout: h.Timeout.D(), MaxAttempts: h.MaxAttempts, MinBackoff: h.MinBackoff.D(), MaxBackoff: h.MaxBackoff.D(),
	}
}

func (st *stack) routes() (http.Handler, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	if err := st.obs.routes(mux); err != nil { // observe.go
		return nil, err
	}
	return mux, nil
}

// run serves until ctx ends, then shuts down in order: gRPC (draining
// in-flight RPCs), the workers (draining in-flight handlers), the relay, the
// publisher, and then the store, the Pub/Sub client and the emulator.
func (st *stack) run(ctx context.Context, shutdownTimeout time.Duration, ready func(*stack)) error {
	defer st.close()
	bg, stopBG := context.WithCancel(context.Background())
	defer stopBG()
	errc := make(chan error, 4)
	go func() { errc <- st.grpc.Serve() }()
	if st.http != nil {
		st.log.Info("courierd: serving HTTP", "addr", st.httpLis.Addr().String())
		go func() { errc <- st.http.Serve(st.httpLis) }()
	}
	relayDone := make(chan struct{})
	go func() { defer close(relayDone); st.relay.Run(bg) }()
	go st.janitor.Run(bg)
	temporalDone := make(chan error, 1)
	if st.temporal != nil {
		go func() { temporalDone <- st.temporal.Run(bg) }()
	}
	go st.obs.ready.Run(bg)
	workerDone := make(chan error, 1)
	if st.worker != nil {
		go func() { workerDone <- st.worker.Run(bg) }()
		select {
		case <-st.worker.Ready():
		case err := <-workerDone:
			return fmt.Errorf("workers: %w", err)
		case <-ctx.Done():
		}
	}
	if ready != nil && ctx.Err() == nil {
		ready(st)
	}

	var serveErr error
	select {
	case <-ctx.Done():
		st.log.Info("courierd: shutting down", "timeout", shutdownTimeout)
	case serveErr = <-errc:
		st.log.Error("courierd: a server stopped; shutting down", "err", serveErr)
	case serveErr = <-workerDone:
		st.log.Error("courierd: the workers stopped; shutting down", "err", serveErr)
		serveErr = fmt.Errorf("workers: %w", serveErr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := st.grpc.Shutdown(sctx)
	if st.http != nil {
		err = errors.Join(err, st.http.Shutdown(sctx))
	}
	if st.worker != nil {
		err = errors.Join(err, st.worker.Shutdown(sctx))
	}
	if st.temporal != nil {
		st.temporal.Stop()
		if terr := <-temporalDone; terr != nil && !errors.Is(terr, workflows.ErrClosed) {
			err = errors.Join(err, fmt.Errorf("temporal worker: %w", terr))
		}
	}
	stopBG()
	<-relayDone
	err = errors.Join(err, st.pub.Close(sctx))
	if serveErr != nil && !errors.Is(serveErr, backend.ErrClosed) && !errors.Is(serveErr, http.ErrServerClosed) && !errors.Is(serveErr, ingest.ErrClosed) {
		err = errors.Join(serveErr, err)
	}
	return err
}

// close releases everything, newest first. It is idempotent.
func (st *stack) close() {
	for i := len(st.closers) - 1; i >= 0; i-- {
		if err := st.closers[i](); err != nil && !errors.Is(err, jobs.ErrClosed) {
			st.log.Debug("courierd: closing", "err", err)
		}
	}
	st.closers = nil
}

// grpcAddr and httpAddr are the bound addresses.
func (st *stack) grpcAddr() string { return st.grpc.Addr().String() }
func (st *stack) httpAddr() string {
	if st.httpLis == nil {
		return ""
	}
	return st.httpLis.Addr().String()
}
