// Package courier runs courier — protobuf jobs over Google Cloud Pub/Sub —
// inside your own program: New builds a Node from a config.Config and
// options that inject what you bring (your handler types in a
// handlers.Registry, extra gRPC services, an existing Pub/Sub client, job
// store, PostgreSQL pool, logger or Temporal client); Run starts everything
// in order and blocks; Shutdown drains; Close stops at once. The courierd
// binary is flags and signals around this same API.
//
//	reg := handlers.NewRegistry()
//	handlers.Register(reg, resize, handlers.Config{RatePerSecond: 50})
//	cfg, _ := config.Parse(config.Demo) // or config.Load("courier.yaml")
//	node, err := courier.New(cfg, courier.WithRegistry(reg))
//	...
//	err = node.Run(ctx) // until ctx ends: then a graceful shutdown
//
// A Node plays a role (config role): "all" runs the gRPC API, its HTTP/JSON
// form and the dashboard (on the HTTP port), the outbox relay and the
// workers; "api" leaves the workers out; "worker" leaves the gRPC API,
// HTTP/JSON and the dashboard out, so enqueue/poll replicas and worker
// replicas can be scaled apart over one store and one Pub/Sub project.
// Workers pull by default; with worker.mode push they receive Pub/Sub push
// requests on the HTTP port instead (each token checked by package
// pushauth), so a worker service can scale to zero. The scheduler of
// periodic jobs (package schedule) runs with the API ("all" and "api"),
// the replicas that are always up; the store makes each tick fire once
// however many run it. Paused job types are followed by the workers.
//
// It is the library form of courier for services and tests that run it. It
// is not a client: callers of a running courier use package client (or any
// gRPC client of courier.v1.JobService); handlers are written against
// package handlers.
package courier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/courierq/courier/config"
	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/publisher"
)

// ErrClosed is returned by Run when the Node was shut down or closed before
// it ran, or runs already.
var ErrClosed = errors.New("courier: node closed")

// Node is one courier process: the components a config.Config describes,
// started and stopped in one order. Make one with New.
type Node struct {
	cfg config.Config // defaults applied
	opt options
	log *slog.Logger

	mu       sync.Mutex
	started  bool
	ready    chan struct{} // closed once everything listens and workers receive
	stopping chan struct{} // closed by Shutdown: drain and stop
	hardStop chan struct{} // closed by Close: stop without draining
	done     chan struct{} // closed when Run has released everything
	stopOnce sync.Once
	hardOnce sync.Once

	shutdownCtx context.Context // Shutdown's ctx, read after stopping closes
	runErr      error           // what Run returned
	cut         error           // set when the drain had to cancel work: the cause

	parts *parts // built by Run
}

// New validates cfg (nil means the embedded demo's configuration,
// config.Demo), applies its defaults and the options, and returns a Node.
// It does no I/O and starts nothing: Run does.
func New(cfg *config.Config, opts ...Option) (*Node, error) {
	if cfg == nil {
		c, err := config.Parse(config.Demo)
		if err != nil {
			return nil, err
		}
		cfg = c
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{
		cfg:      cfg.WithDefaults(),
		ready:    make(chan struct{}),
		stopping: make(chan struct{}),
		hardStop: make(chan struct{}),
		done:     make(chan struct{}),
	}
	for _, o := range opts {
		if o != nil {
			o.apply(&n.opt)
		}
	}
	n.log = n.opt.logger
	if n.log == nil {
		n.log = slog.Default()
	}
	if n.opt.store != nil && n.opt.pool != nil {
		return nil, errors.New("courier: WithStore and WithPostgresPool both given; pass one: the pool is only for the store the Node opens")
	}
	if n.opt.pool != nil && n.cfg.Store.Driver != "postgres" {
		return nil, fmt.Errorf("courier: WithPostgresPool needs store.driver: postgres, not %q", n.cfg.Store.Driver)
	}
	if n.cfg.PubSub.Emulator != "embedded" && n.cfg.PubSub.Project == "" && n.opt.pubsub == nil {
		return nil, &config.ValidationError{Field: "pubsub.project", Value: `""`, Fix: "name the Google Cloud project, or use pubsub.emulator: embedded"}
	}
	return n, nil
}

// Config returns the Node's configuration with its defaults applied.
func (n *Node) Config() config.Config { return n.cfg }

// Ready is closed once Run has started everything: the servers listen and
// the workers receive. It stays open if Run fails before that.
func (n *Node) Ready() <-chan struct{} { return n.ready }

// Done is closed once Run has returned and released everything.
func (n *Node) Done() <-chan struct{} { return n.done }

// GRPCAddr is the gRPC API's bound address once Ready ("" in the worker
// role).
func (n *Node) GRPCAddr() string {
	if p := n.readyParts(); p != nil && p.grpc != nil {
		return p.grpc.Addr().String()
	}
	return ""
}

// HTTPAddr is the HTTP server's bound address once Ready ("" when
// http.addr is "-").
func (n *Node) HTTPAddr() string {
	if p := n.readyParts(); p != nil && p.httpLis != nil {
		return p.httpLis.Addr().String()
	}
	return ""
}

// now is the Node's clock (WithClock).
func (n *Node) now() func() time.Time {
	if n.opt.now != nil {
		return n.opt.now
	}
	return time.Now
}

// Store is the job store the Node uses (decorated with metrics and
// tracing), once Ready; nil before.
func (n *Node) Store() jobs.Store {
	if p := n.readyParts(); p != nil {
		return p.store
	}
	return nil
}

// Publisher publishes fire-and-forget jobs through the Node's Pub/Sub
// client, once Ready; nil before.
func (n *Node) Publisher() *publisher.Publisher {
	if p := n.readyParts(); p != nil {
		return p.pub
	}
	return nil
}

// PubSub is the Node's Pub/Sub client (the caller's, one it dialled, or one
// of the embedded emulator), once Ready; nil before.
func (n *Node) PubSub() *pubsub.Client {
	if p := n.readyParts(); p != nil {
		return p.ps
	}
	return nil
}

func (n *Node) readyParts() *parts {
	select {
	case <-n.ready:
		return n.parts
	default:
		return nil
	}
}

// Run builds and starts everything the configuration describes (in order:
// Pub/Sub, the job store, handlers, publisher and outbox relay, workers,
// gRPC, HTTP), closes Ready, and serves until ctx ends, Shutdown or Close is
// called, or a component fails. When ctx ends it shuts down gracefully
// within the config's shutdownTimeout. It returns nil after a clean stop,
// ErrClosed if the Node ran or was stopped before, and otherwise the error
// that stopped it (or that kept it from starting: what was built is
// released).
func (n *Node) Run(ctx context.Context) (err error) {
	n.mu.Lock()
	if n.started {
		n.mu.Unlock()
		return ErrClosed
	}
	n.started = true
	n.mu.Unlock()
	defer func() {
		n.runErr = err
		close(n.done)
	}()
	select {
	case <-n.stopping:
		return ErrClosed
	case <-n.hardStop:
		return ErrClosed
	default:
	}

	p, err := n.build(ctx)
	if err != nil {
		return err
	}
	n.parts = p
	failed := p.start(ctx)
	select {
	case <-p.workerReady():
	case err := <-failed:
		p.abort()
		return err
	case <-ctx.Done():
	case <-n.stopping:
	case <-n.hardStop:
	}
	close(n.ready)
	if ctx.Err() == nil {
		n.log.Info("courier: running", "role", n.cfg.Role, "grpc", n.GRPCAddr(), "http", n.HTTPAddr())
	}

	var (
		sctx   context.Context
		cancel context.CancelFunc = func() {}
		cause  error
	)
	select {
	case <-ctx.Done():
		n.log.Info("courier: shutting down", "timeout", n.cfg.ShutdownTimeout)
		sctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), n.cfg.ShutdownTimeout.D())
	case <-n.stopping:
		sctx = n.shutdownCtx
	case <-n.hardStop:
		c, cc := context.WithCancel(context.Background())
		cc()
		sctx = c
	case cause = <-failed:
		n.log.Error("courier: a component stopped; shutting down", "err", cause)
		sctx, cancel = context.WithTimeout(context.Background(), n.cfg.ShutdownTimeout.D())
	}
	defer cancel()
	// Close cuts a drain that is under way short.
	sctx, cancelHard := context.WithCancelCause(sctx)
	stopHard := context.AfterFunc(n.hardCtx(), func() { cancelHard(errors.New("courier: Close called")) })
	defer stopHard()
	cut, err := p.shutdown(sctx)
	if cut && !n.closedHard() { // Close asked for the cut: not worth reporting
		n.cut = fmt.Errorf("courier: shutdown cancelled work still running: %w", context.Cause(sctx))
	}
	if cause != nil {
		err = errors.Join(cause, err)
	}
	return err
}

// closedHard reports whether Close was called.
func (n *Node) closedHard() bool {
	select {
	case <-n.hardStop:
		return true
	default:
		return false
	}
}

// hardCtx is a context that ends when Close is called.
func (n *Node) hardCtx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-n.hardStop:
		case <-n.done:
		}
		cancel()
	}()
	return ctx
}

// Shutdown stops the Node gracefully: intake stops and open WatchJob
// streams end with Unavailable at once, in-flight RPCs and handlers get
// until ctx ends (then they are cancelled, and their jobs go back to
// QUEUED), then the relay, the publisher and the store are closed. It
// returns once Run has returned, with the drain's error (ctx's when it had
// to cancel work). Calling it before Run makes Run return ErrClosed; calling
// it again waits again.
func (n *Node) Shutdown(ctx context.Context) error {
	n.stopOnce.Do(func() {
		n.shutdownCtx = ctx
		close(n.stopping)
	})
	n.mu.Lock()
	started := n.started
	n.mu.Unlock()
	if !started {
		return nil
	}
	select {
	case <-n.done:
	case <-ctx.Done():
		n.Close()
	}
	<-n.done
	if n.runErr != nil {
		return n.runErr
	}
	return n.cut
}

// Close stops the Node at once: servers close, running handlers are
// cancelled (their jobs go back to QUEUED), and everything is released. It
// returns once Run has returned. It is idempotent.
func (n *Node) Close() error {
	n.hardOnce.Do(func() { close(n.hardStop) })
	n.mu.Lock()
	started := n.started
	n.mu.Unlock()
	if started {
		<-n.done
	}
	return nil
}

// serveErr reports whether err is what a server returns after a shutdown.
func serveErr(err error) bool {
	return err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed)
}
