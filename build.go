package courier

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	tclient "go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"google.golang.org/api/option"

	"github.com/courierq/courier/backend"
	"github.com/courierq/courier/backend/hello"
	"github.com/courierq/courier/backend/httpjson"
	"github.com/courierq/courier/backend/jobservice"
	"github.com/courierq/courier/config"
	"github.com/courierq/courier/emulator"
	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/handlers/demo"
	"github.com/courierq/courier/ingest"
	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/postgres"
	"github.com/courierq/courier/jobs/spanner"
	"github.com/courierq/courier/jobs/sqlite"
	"github.com/courierq/courier/limits"
	"github.com/courierq/courier/outbox"
	"github.com/courierq/courier/publisher"
	"github.com/courierq/courier/readiness"
	"github.com/courierq/courier/schedule"
	"github.com/courierq/courier/wire"
	"github.com/courierq/courier/workflows"
	wdemo "github.com/courierq/courier/workflows/demo"
)

// parts are the components of a running Node, in the order they are built.
type parts struct {
	n   *Node
	cfg config.Config

	emu      *emulator.Server
	ps       *pubsub.Client
	store    jobs.Store // decorated
	reg      *handlers.Registry
	pub      *publisher.Publisher
	relay    *outbox.Relay
	janitor  *jobs.Janitor
	rescuer  *jobs.Rescuer            // nil when jobs.rescueAfter turns it off
	worker   *ingest.Worker           // nil in the api role or without handlers
	dead     *ingest.DeadLetterReader // nil without handlers
	temporal *workflows.Worker        // nil without a temporal section (or in the api role)
	jobs     *jobservice.Service
	grpc     *backend.Server // nil in the worker role
	http     *http.Server
	httpLis  net.Listener
	obs      *observe

	// raw is the store as opened (or given), before decoration: the
	// optional interfaces (jobs.Limits, jobs.Deferrer, and those of the job
	// controls: jobs.Schedules, ...) are found on it.
	raw       jobs.Store
	scheduler *schedule.Scheduler // nil outside the api role, or when the store keeps no schedules
	paused    *ingest.PausedTypes // nil when the store keeps no paused types

	bgCancel context.CancelFunc
	bg       sync.WaitGroup // relay, janitor, readiness
	workerCh chan error     // the worker's Run result
	tempCh   chan error     // the Temporal worker's Run result

	closers []func() error // release, newest last
}

func (n *Node) api() bool    { return n.cfg.Role != "worker" }
func (n *Node) worker() bool { return n.cfg.Role != "api" }

// build makes every component; on error it releases what it had made.
func (n *Node) build(ctx context.Context) (_ *parts, err error) {
	cfg := n.cfg
	p := &parts{n: n, cfg: cfg}
	defer func() {
		if err != nil {
			p.release()
		}
	}()
	if err := p.buildPubSub(ctx); err != nil {
		return nil, err
	}
	if err := p.buildStore(ctx); err != nil {
		return nil, err
	}
	if p.obs, err = newObserve(ctx, p); err != nil {
		return nil, err
	}
	p.raw = p.store
	p.store = p.obs.wrapStore(p.store)
	checks, err := p.buildHandlers(ctx)
	if err != nil {
		return nil, err
	}
	if err := p.buildPublishing(); err != nil {
		return nil, err
	}
	if err := p.buildSchedules(ctx, checks); err != nil {
		return nil, err
	}
	if tp, ok := p.raw.(jobs.TypePauser); ok {
		if p.paused, err = ingest.NewPausedTypes(tp, cfg.Jobs.TypePausePoll.D(), n.log); err != nil {
			return nil, err
		}
	}
	if err := p.buildWorker(); err != nil {
		return nil, err
	}
	if err := p.buildAPI(checks); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *parts) buildPubSub(ctx context.Context) error {
	n, cfg := p.n, p.cfg
	if n.opt.pubsub != nil {
		p.ps = n.opt.pubsub
		n.log.Info("courier: Pub/Sub client given by the caller", "project", p.ps.Project())
		return nil
	}
	project := cfg.PubSub.Project
	var opts []option.ClientOption
	switch {
	case cfg.PubSub.Emulator == "embedded":
		// In the process alone unless dev mode asks for a port: the
		// emulator has no authentication (config validates emulatorAddr).
		ecfg := emulator.Config{DataDir: cfg.PubSub.EmulatorDataDir, InProcess: cfg.PubSub.EmulatorAddr == ""}
		if !ecfg.InProcess {
			host, port, err := net.SplitHostPort(cfg.PubSub.EmulatorAddr)
			if err != nil {
				return &config.ValidationError{Field: "pubsub.emulatorAddr", Value: cfg.PubSub.EmulatorAddr, Fix: "use host:port, e.g. 127.0.0.1:8085"}
			}
			ecfg.Host = host
			if ecfg.Port, err = strconv.Atoi(port); err != nil {
				return &config.ValidationError{Field: "pubsub.emulatorAddr", Value: cfg.PubSub.EmulatorAddr, Fix: "use host:port, e.g. 127.0.0.1:8085"}
			}
		}
		emu, err := emulator.Start(ctx, ecfg)
		if err != nil {
			return err
		}
		p.emu = emu
		p.closers = append(p.closers, emu.Close)
		where := emu.Addr
		if where == "" {
			where = "in process (no port)"
		}
		n.log.Info("courier: embedded Pub/Sub emulator", "addr", where, "project", project, "dataDir", cfg.PubSub.EmulatorDataDir)
		opts = emu.ClientOptions()
	case os.Getenv("PUBSUB_EMULATOR_HOST") != "":
		n.log.Info("courier: Pub/Sub emulator from PUBSUB_EMULATOR_HOST", "addr", os.Getenv("PUBSUB_EMULATOR_HOST"), "project", project)
	default:
		n.log.Info("courier: Google Cloud Pub/Sub", "project", project)
	}
	c, err := pubsub.NewClient(ctx, project, opts...)
	if err != nil {
		return fmt.Errorf("courier: Pub/Sub client for project %s: %w", project, err)
	}
	p.ps = c
	p.closers = append(p.closers, c.Close)
	return nil
}

func (p *parts) buildStore(ctx context.Context) error {
	n, cfg := p.n, p.cfg
	if n.opt.store != nil {
		p.store = n.opt.store
		return nil
	}
	var (
		s   jobs.Store
		err error
	)
	switch cfg.Store.Driver {
	case "sqlite":
		s, err = sqlite.Open(ctx, sqlite.Config{Path: cfg.Store.Path})
	case "postgres":
		if cfg.Store.URL == "" {
			return &config.ValidationError{Field: "store.url", Value: `""`, Fix: "set the PostgreSQL URL, e.g. postgres://user@127.0.0.1:5432/db, or $COURIER_STORE_URL"}
		}
		s, err = postgres.Open(ctx, postgres.Config{URL: cfg.Store.URL, Schema: cfg.Store.Schema})
	case "spanner":
		if cfg.Store.Database == "" {
			return &config.ValidationError{Field: "store.database", Value: `""`, Fix: "name the Spanner database: projects/P/instances/I/databases/D"}
		}
		s, err = spanner.Open(ctx, spanner.Config{Database: cfg.Store.Database})
	default:
		return &config.ValidationError{Field: "store.driver", Value: cfg.Store.Driver, Fix: "use sqlite, postgres or spanner"}
	}
	if err != nil {
		return err
	}
	p.store = s
	p.closers = append(p.closers, s.Close)
	return nil
}

// bisectType is the demo's workflow job type.
const bisectType = "courier.demo.v1.Bisect"

// buildHandlers fills the registry (the caller's, the demo's, the workflow
// job types) and applies the config's handlers.types to it. It returns the
// enqueue checks per type (enqueue limits, "needs Temporal").
func (p *parts) buildHandlers(ctx context.Context) (map[string]func(context.Context) error, error) {
	n, cfg := p.n, p.cfg
	p.reg = n.opt.registry
	if p.reg == nil {
		p.reg = handlers.NewRegistry()
	}
	if cfg.Handlers.Demo {
		if err := demo.Register(p.reg, demo.Config{}); err != nil {
			return nil, fmt.Errorf("courier: handlers.demo: %w", err)
		}
	}
	checks := map[string]func(context.Context) error{}
	if cfg.Temporal != nil {
		if err := p.buildTemporal(ctx); err != nil {
			return nil, err
		}
	} else if cfg.Handlers.Demo {
		checks[bisectType] = workflows.RequireTemporal(bisectType)
	}
	for _, name := range sortedKeys(cfg.Handlers.Types) {
		hc := cfg.Handlers.Types[name]
		if _, ok := p.reg.Lookup(name); !ok && checks[name] == nil {
			return nil, &config.ValidationError{Field: "handlers.types." + name, Value: "configured", Fix: "no handler of this type is registered (registered: " + fmt.Sprint(p.reg.Types()) + "); remove it, register it (courier.WithRegistry), or enable the handlers that provide it (handlers.demo)"}
		}
		if _, ok := p.reg.Lookup(name); ok {
			if err := p.reg.Configure(name, handlerConfig(hc)); err != nil {
				return nil, &config.ValidationError{Field: "handlers.types." + name, Value: "configured", Fix: err.Error()}
			}
		}
		if hc.EnqueueRatePerSecond > 0 && checks[name] == nil {
			var check func(context.Context) error
			var err error
			if shared := p.fleetLimits(hc); shared != nil {
				var lim *limits.Tokens
				lim, err = limits.NewTokens(limits.TokensConfig{Store: shared, Name: "enqueue:" + name, PerSecond: hc.EnqueueRatePerSecond, Burst: hc.EnqueueBurst})
				if err == nil {
					check = workflows.EnqueueLimitOver(lim, hc.EnqueueRatePerSecond, hc.EnqueueBurst)
				}
			} else {
				check, err = workflows.EnqueueLimit(hc.EnqueueRatePerSecond, hc.EnqueueBurst, nil)
			}
			if err != nil {
				return nil, &config.ValidationError{Field: "handlers.types." + name + ".enqueueRatePerSecond", Value: hc.EnqueueRatePerSecond, Fix: err.Error()}
			}
			checks[name] = check
		}
	}
	return checks, nil
}

// fleetLimits returns the store's fleet-wide limits when a type configured
// by hc gets them: the store shares them (jobs.Limits: PostgreSQL) and
// hc.rateScope is not "process". nil means limits per process.
func (p *parts) fleetLimits(hc config.Handler) jobs.Limits {
	if hc.RateScope == config.RateScopeProcess {
		return nil
	}
	l, _ := p.raw.(jobs.Limits)
	return l
}

// holdForToken is how long a worker holds a message for a fleet-wide
// rate-limit token; past it the job is put off through the outbox.
const holdForToken = time.Second

// handlerConfig converts a config file's handler settings.
func handlerConfig(h config.Handler) handlers.Config {
	return handlers.Config{
		RatePerSecond: h.RatePerSecond, Burst: h.Burst, Concurrency: h.Concurrency,
		Timeout: h.Timeout.D(), MaxAttempts: h.MaxAttempts, MinBackoff: h.MinBackoff.D(), MaxBackoff: h.MaxBackoff.D(),
	}
}

// buildTemporal connects Temporal, registers the demo workflow job type
// (with handlers.demo) and, in roles with workers, builds the Temporal
// worker.
func (p *parts) buildTemporal(ctx context.Context) error {
	n, cfg := p.n, p.cfg
	wcfg := *cfg.Temporal
	wcfg.Logger = n.log
	wcfg = wcfg.WithDefaults()
	c := n.opt.temporal
	if c == nil {
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		var err error
		c, err = tclient.DialContext(dctx, wcfg.ClientOptions())
		if err != nil {
			return fmt.Errorf("courier: temporal: cannot reach %s (namespace %s): %w; start a dev server with `make run-temporal`, or fix the temporal section of the config", wcfg.HostPort, wcfg.Namespace, err)
		}
		p.closers = append(p.closers, func() error { c.Close(); return nil })
	}
	// /readyz and gRPC health also follow Temporal when it is configured.
	if err := p.obs.ready.Add(readiness.Check{Name: "temporal", Func: func(ctx context.Context) error {
		_, err := c.CheckHealth(ctx, &tclient.CheckHealthRequest{})
		return err
	}}); err != nil {
		return err
	}
	n.log.Info("courier: Temporal", "hostPort", wcfg.HostPort, "namespace", wcfg.Namespace, "taskQueue", wcfg.TaskQueue)
	dcfg := wdemo.Config{TaskQueue: wcfg.TaskQueue}
	if cfg.Handlers.Demo {
		if err := wdemo.Register(p.reg, c, dcfg); err != nil {
			return err
		}
	}
	if !n.worker() {
		return nil
	}
	wcfg.Client = c
	wcfg.Register = func(r worker.Registry) {
		if cfg.Handlers.Demo {
			wdemo.RegisterWorker(r, dcfg)
		}
		for _, f := range n.opt.workflows {
			f(r)
		}
	}
	var err error
	p.temporal, err = workflows.NewWorker(wcfg)
	return err
}

// buildPublishing makes the publisher, the outbox relay and the janitor.
func (p *parts) buildPublishing() error {
	n, cfg := p.n, p.cfg
	var err error
	p.pub, err = publisher.New(p.ps, publisher.Config{Naming: p.naming(), Logger: n.log, OnError: p.obs.publishError})
	if err != nil {
		return err
	}
	p.relay, err = outbox.New(outbox.Config{Store: p.store, Publisher: p.obs.metrics.WrapPublisher(p.obs.tracing.WrapPublisher(p.pub, p.naming())),
		PollInterval: cfg.Jobs.RelayPollInterval.D(), Logger: n.log, Now: n.now()})
	if err != nil {
		return err
	}
	p.janitor, err = jobs.NewJanitor(jobs.JanitorConfig{Store: p.store, Retention: cfg.Jobs.Retention.D(), Logger: n.log})
	if err != nil {
		return err
	}
	if after := cfg.Jobs.RescueAfter.D(); after > 0 {
		p.rescuer, err = jobs.NewRescuer(jobs.RescuerConfig{Store: p.store, After: after, Logger: n.log})
	}
	return err
}

func (p *parts) naming() wire.Naming {
	return wire.Naming{Prefix: p.cfg.PubSub.TopicPrefix, Topics: p.cfg.PubSub.Topics}
}

// buildWorker makes the ingest worker, in roles with workers when there are
// handlers and they are not disabled.
func (p *parts) buildWorker() error {
	n, cfg := p.n, p.cfg
	if !n.worker() || cfg.Handlers.Disabled || len(p.reg.Entries()) == 0 {
		return nil
	}
	limiters := map[string]handlers.Limiter{}
	rateKeys, slots, slotKeys := map[string]handlers.KeyFunc{}, map[string]handlers.SlotLimiter{}, map[string]handlers.KeyFunc{}
	for _, e := range p.reg.Entries() {
		hc := cfg.Handlers.Types[e.Type] // zero when the file does not name the type: fleet-wide
		shared := p.fleetLimits(hc)
		if e.Config.RatePerSecond > 0 {
			var lim handlers.Limiter = handlers.NewLocalLimiter(e.Config.RatePerSecond, e.Config.Burst, nil)
			pull := cfg.Worker.Mode != "push" // a push is answered 429 at once: it needs no place in a line
			if _, ok := p.raw.(jobs.Deferrer); ok && shared == nil && pull {
				// Per process, but throttled messages are put off as well.
				var err error
				if lim, err = limits.Line(lim, e.Config.RatePerSecond, holdForToken); err != nil {
					return err
				}
			}
			if shared != nil {
				t, err := limits.NewTokens(limits.TokensConfig{Store: shared, Name: "rate:" + e.Type, PerSecond: e.Config.RatePerSecond,
					Burst: e.Config.Burst, MaxWait: holdForToken, Queue: pull})
				if err != nil {
					return &config.ValidationError{Field: "handlers.types." + e.Type + ".ratePerSecond", Value: e.Config.RatePerSecond, Fix: err.Error()}
				}
				lim = t
			}
			limiters[e.Type] = p.obs.metrics.WrapLimiter(e.Type, lim)
		}
		if label := config.KeyLabel(hc.RateKey); label != "" {
			rateKeys[e.Type] = handlers.LabelKey(label)
		}
		label := config.KeyLabel(hc.ConcurrencyKey)
		if e.Config.Concurrency > 0 && shared != nil {
			// Without a key, a refused message waits and asks again soon (at
			// most this process's own bound of them ask); with one, it is put
			// off for about a second.
			retry := time.Second
			if label == "" {
				retry = 100 * time.Millisecond
			}
			sl, err := limits.NewSlots(limits.SlotsConfig{Store: shared, Name: "concurrency:" + e.Type, Max: e.Config.Concurrency, Lease: 30 * time.Second,
				RetryAfter: retry, Hold: label == "", Logger: n.log})
			if err != nil {
				return &config.ValidationError{Field: "handlers.types." + e.Type + ".concurrency", Value: e.Config.Concurrency, Fix: err.Error()}
			}
			p.closers = append(p.closers, sl.Close)
			slots[e.Type] = sl
			if label != "" {
				slotKeys[e.Type] = handlers.LabelKey(label)
			}
		} else if label != "" {
			return &config.ValidationError{Field: "handlers.types." + e.Type + ".concurrencyKey", Value: hc.ConcurrencyKey,
				Fix: "keyed concurrency is fleet-wide only: it needs a shared store (store.driver postgres) and rateScope fleet; remove it or change those"}
		}
	}
	deferrer, _ := p.raw.(jobs.Deferrer)
	mws := append([]handlers.Middleware{p.obs.metrics.Middleware(), p.obs.tracing.Middleware()}, n.opt.middleware...)
	var push *ingest.PushConfig // nil: pull
	if cfg.Worker.Mode == "push" {
		var err error
		if push, err = p.pushConfig(); err != nil {
			return err
		}
	}
	var snoozer jobs.Snoozer
	if s, ok := p.raw.(jobs.Snoozer); ok {
		snoozer = s
	} else {
		n.log.Warn("courier: the job store keeps no snoozed jobs (it does not implement jobs.Snoozer): handlers.RetryAfter and handlers.Snooze are ordinary retryable errors", "store", fmt.Sprintf("%T", p.raw))
	}
	var quick jobs.StartSucceeder
	if q, ok := p.raw.(jobs.StartSucceeder); ok {
		quick = p.obs.metrics.WrapStartSucceeder(q)
	}
	var err error
	p.worker, err = ingest.New(ingest.Config{
		Client: p.ps, Store: p.store, Registry: p.reg, Naming: p.naming(),
		DisableCreate: cfg.PubSub.DisableCreate, MaxOutstandingMessages: cfg.Handlers.MaxOutstandingMessages,
		AckDeadline: cfg.Handlers.AckDeadline.D(), Logger: n.log, SeenInterval: max(cfg.Jobs.RescueAfter.D()/4, 0),
		Limiters: limiters, RateKeys: rateKeys, Slots: slots, ConcurrencyKeys: slotKeys, Deferrer: deferrer, Middleware: mws, DeadLetters: p.obs.metrics.WrapDeadLetters(ingest.NewDeadLetters(p.ps)),
		Push: push, Snoozer: snoozer, Paused: p.paused, Now: n.now(), Quick: quick, RunningAfter: cfg.Handlers.RunningAfter.D(),
	})
	return err
}

// buildAPI makes the JobService, the gRPC server (not in the worker role)
// and the HTTP server; both listen once this returns.
func (p *parts) buildAPI(checks map[string]func(context.Context) error) error {
	n, cfg := p.n, p.cfg
	types := jobservice.TypeMap{}
	for _, e := range p.reg.Entries() {
		types[e.Type] = jobservice.TypeInfo{MaxAttempts: e.Config.MaxAttempts, Timeout: e.Config.Timeout, Check: checks[e.Type]}
	}
	for name, check := range checks {
		if _, ok := types[name]; !ok {
			types[name] = jobservice.TypeInfo{Check: check} // refused at enqueue, e.g. no Temporal
		}
	}
	var err error
	jcfg := jobservice.Config{Store: p.store, Types: types, Notify: p.relay.Notify, Now: n.now()}
	if len(p.reg.Entries()) > 0 {
		// Dead letters are read through Pub/Sub, not a worker: any replica
		// lists and replays them.
		if p.dead, err = ingest.NewDeadLetterReader(ingest.DeadLetterReaderConfig{Client: p.ps, Registry: p.reg, Naming: p.naming()}); err != nil {
			return err
		}
		jcfg.DeadLetters = jobDeadLetters{deadLetters{p.dead}}
	}
	if sc, ok := p.raw.(jobs.Schedules); ok {
		jcfg.Schedules = sc
		if p.scheduler != nil {
			jcfg.ScheduleCreated = p.scheduler.Wake
		}
	}
	if tp, ok := p.raw.(jobs.TypePauser); ok {
		jcfg.TypePauser = tp
		if p.paused != nil {
			jcfg.TypesChanged = p.paused.Reload
		}
	}
	p.jobs, err = jobservice.New(jcfg)
	if err != nil {
		return err
	}
	if n.api() {
		gcfg := cfg.GRPC
		gcfg.Logger = n.log
		if o := p.obs.tracing.ServerOption(); o != nil {
			gcfg.ServerOptions = append(gcfg.ServerOptions, o)
		}
		services := append([]backend.Service{&hello.Service{Auth: hello.Open}, p.jobs}, n.opt.services...)
		p.grpc, err = backend.New(gcfg, services...)
		if pe := (*backend.PolicyError)(nil); errors.As(err, &pe) && pe.Configured {
			return policyConfigError(pe)
		}
		if err != nil {
			return err
		}
		if err := p.grpc.Listen(); err != nil {
			return err
		}
		p.closers = append(p.closers, p.grpc.Close)
	}
	if cfg.HTTP.Addr == "-" {
		return nil
	}
	var tc *tls.Config
	if t := cfg.HTTP.TLS; t != nil {
		bt := backend.TLSConfig{CertFile: t.CertFile, KeyFile: t.KeyFile}
		if cfg.GRPC.TLS != nil {
			bt.ClientCAFile = cfg.GRPC.TLS.ClientCAFile // the same mTLS authenticator checks them
		}
		if tc, err = backend.LoadTLS(bt); err != nil {
			return fmt.Errorf("courier: http.tls: %w", err)
		}
	}
	lis, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("courier: HTTP: listening on %s: %w; set http.addr to a free address, or \"-\" to turn HTTP off", cfg.HTTP.Addr, err)
	}
	if tc != nil {
		lis = tls.NewListener(lis, tc)
	}
	p.httpLis = lis
	p.closers = append(p.closers, func() error {
		if p.http == nil {
			return lis.Close()
		}
		return nil
	})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	if err := p.obs.routes(mux); err != nil {
		return err
	}
	if p.grpc != nil {
		api, err := httpjson.New(httpjson.Config{Server: p.grpc, Logger: n.log})
		if err != nil {
			return err
		}
		mux.Handle(httpjson.Prefix, api)
	}
	if err := p.pushRoute(mux); err != nil {
		return err
	}
	p.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	p.closers = append(p.closers, p.http.Close)
	return nil
}

// policyConfigError restates a grpc.policies error with its config path.
func policyConfigError(pe *backend.PolicyError) error {
	valid := strings.Join(pe.Valid, ", ")
	if pe.Method == "" {
		return &config.ValidationError{Field: "grpc.policies", Value: pe.Service, Fix: "no such service is hosted; the services are " + valid}
	}
	return &config.ValidationError{Field: "grpc.policies." + pe.Service + ".methods", Value: pe.Method,
		Fix: pe.Service + " has no such method; its methods are " + valid + " (a rule under a misspelt name would leave the real method under the service-wide rule)"}
}

// start runs the servers and loops. The returned channel gets the error of
// a server or worker that stops on its own.
func (p *parts) start(ctx context.Context) <-chan error {
	n := p.n
	failed := make(chan error, 4)
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.bgCancel = cancel
	if p.grpc != nil {
		go func() {
			if err := p.grpc.Serve(); err != nil && !errors.Is(err, backend.ErrClosed) {
				failed <- fmt.Errorf("courier: gRPC server: %w", err)
			}
		}()
	}
	if p.http != nil {
		go func() {
			if err := p.http.Serve(p.httpLis); serveErr(err) {
				failed <- fmt.Errorf("courier: HTTP server: %w", err)
			}
		}()
	}
	p.bg.Go(func() { p.relay.Run(bg) })
	p.bg.Go(func() { p.janitor.Run(bg) })
	if p.rescuer != nil {
		p.bg.Go(func() { p.rescuer.Run(bg) })
	}
	p.bg.Go(func() { p.obs.ready.Run(bg) })
	if p.scheduler != nil {
		p.bg.Go(func() { p.scheduler.Run(bg) })
	}
	if p.paused != nil && p.worker != nil {
		p.bg.Go(func() { p.paused.Run(bg) })
	}
	if p.temporal != nil {
		p.tempCh = make(chan error, 1)
		go func() { p.tempCh <- p.temporal.Run(bg) }()
	}
	if p.worker != nil {
		p.workerCh = make(chan error, 1)
		go func() {
			err := p.worker.Run(bg)
			p.workerCh <- err
			if err != nil {
				failed <- fmt.Errorf("courier: workers: %w", err)
			}
		}()
	}
	n.log.Debug("courier: started")
	return failed
}

// workerReady is closed once the worker receives (at once without one).
func (p *parts) workerReady() <-chan struct{} {
	if p.worker == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return p.worker.Ready()
}

// shutdown drains in the one order the Node owns: intake stops and RPCs
// drain together (open WatchJob streams end at once with Unavailable, so
// they do not hold the drain), running handlers get the rest of ctx, then
// the Temporal worker, the relay and background loops stop, the publisher
// sends what it holds, and everything is released.
//
// Work cut short by ctx's end (RPCs, handlers: their jobs go back to QUEUED
// and run again) is what a deadline is for, not a failure: it is logged, and
// reported as cut. The error is for what went wrong otherwise.
func (p *parts) shutdown(ctx context.Context) (cut bool, _ error) {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	add := func(err error) {
		if err == nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if ctx.Err() != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
			cut = true
			p.n.log.Warn("courier: shutdown deadline reached; work still running was cancelled (its jobs will run again)", "err", err)
			return
		}
		errs = append(errs, err)
	}
	p.jobs.StopWatches()
	// HTTP drains before the gRPC server stops: HTTP/JSON calls run on the
	// gRPC server (through its HTTP handler), whose graceful stop would end
	// them instead of waiting for them.
	wg.Go(func() {
		if p.http != nil {
			if err := p.http.Shutdown(ctx); err != nil {
				add(fmt.Errorf("courier: HTTP shutdown: %w", err))
			}
		}
		if p.grpc != nil {
			add(p.grpc.Shutdown(ctx))
		}
	})
	if p.worker != nil {
		wg.Go(func() { add(p.worker.Shutdown(ctx)) })
	}
	wg.Wait()
	if p.worker != nil {
		if err := <-p.workerCh; err != nil && !errors.Is(err, ingest.ErrClosed) {
			add(err)
		}
	}
	if p.temporal != nil {
		p.temporal.Stop()
		if err := <-p.tempCh; err != nil && !errors.Is(err, workflows.ErrClosed) {
			add(fmt.Errorf("courier: Temporal worker: %w", err))
		}
	}
	p.bgCancel()
	p.bg.Wait()
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	add(p.pub.Close(pctx))
	p.release()
	return cut, errors.Join(errs...)
}

// abort stops what start started after a failure before Ready.
func (p *parts) abort() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _ = p.shutdown(ctx)
}

// release closes everything built, newest first. It is idempotent.
func (p *parts) release() {
	for i := len(p.closers) - 1; i >= 0; i-- {
		if err := p.closers[i](); err != nil && !errors.Is(err, jobs.ErrClosed) && !errors.Is(err, net.ErrClosed) {
			p.n.log.Debug("courier: closing", "err", err)
		}
	}
	p.closers = nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
