package workflows

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
)

// Defaults of WorkerConfig fields left zero.
const (
	DefaultHostPort  = "127.0.0.1:7233"
	DefaultNamespace = "default"
	DefaultTaskQueue = "courier"
)

// ErrClosed is returned by Run after Stop, and by a second Run.
var ErrClosed = errors.New("workflows: worker stopped")

// WorkerConfig configures a Worker. Register is required; every other zero
// field means its default. The json names are those of courierd's --config
// temporal section.
type WorkerConfig struct {
	// HostPort is the Temporal frontend. "" means DefaultHostPort.
	// Ignored when Client is set.
	HostPort string `json:"hostPort,omitempty"`
	// Namespace is the Temporal namespace. "" means DefaultNamespace.
	// Ignored when Client is set.
	Namespace string `json:"namespace,omitempty"`
	// TaskQueue is the task queue the worker polls; the workflow job types'
	// Spec.TaskQueue must name it. "" means DefaultTaskQueue.
	TaskQueue string `json:"taskQueue,omitempty"`
	// Client, when set, is used instead of dialling HostPort; the caller
	// closes it after the worker stops. nil means Run dials its own and
	// closes it when it returns.
	Client client.Client `json:"-"`
	// Register registers the workflows and activities the worker runs,
	// e.g. func(r worker.Registry) { demo.RegisterWorker(r, cfg) }.
	// Required.
	Register func(r worker.Registry) `json:"-"`
	// Logger receives the SDK's logs. nil means slog.Default().
	Logger *slog.Logger `json:"-"`
}

// WithDefaults returns c with zero fields set to their defaults.
func (c WorkerConfig) WithDefaults() WorkerConfig {
	if c.HostPort == "" {
		c.HostPort = DefaultHostPort
	}
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	if c.TaskQueue == "" {
		c.TaskQueue = DefaultTaskQueue
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// ClientOptions are the options Run dials Temporal with when Config.Client
// is nil; callers that start workflows (Register) can dial with them too.
func (c WorkerConfig) ClientOptions() client.Options {
	c = c.WithDefaults()
	return client.Options{HostPort: c.HostPort, Namespace: c.Namespace, Logger: tlog.NewStructuredLogger(c.Logger)}
}

// Worker runs registered workflows and activities: it polls one Temporal
// task queue. Make one with NewWorker, then Run it.
type Worker struct {
	cfg WorkerConfig

	mu      sync.Mutex
	started bool
	stopped bool
	stop    chan struct{} // closed by Stop
	done    chan struct{} // closed when Run returns
}

// NewWorker validates cfg and returns a Worker; it connects to nothing and
// starts nothing (see Run).
func NewWorker(cfg WorkerConfig) (*Worker, error) {
	if cfg.Register == nil {
		return nil, errors.New("workflows: WorkerConfig.Register is nil; set it to a func that registers the workflows and activities to run (e.g. demo.RegisterWorker)")
	}
	return &Worker{cfg: cfg.WithDefaults(), stop: make(chan struct{}), done: make(chan struct{})}, nil
}

// Run dials Temporal (unless Config.Client is set), starts polling the task
// queue and blocks until ctx ends or Stop is called; then it stops the SDK
// worker, which waits for running activity and workflow tasks (bounded by
// the SDK's WorkerStopTimeout), and returns nil. Workflows themselves live
// on in Temporal. It returns ErrClosed after Stop or on a second call, and
// an error naming the address when Temporal cannot be reached.
func (w *Worker) Run(ctx context.Context) error {
	w.mu.Lock()
	if w.started || w.stopped {
		w.mu.Unlock()
		return ErrClosed
	}
	w.started = true
	w.mu.Unlock()
	defer close(w.done)

	c := w.cfg.Client
	if c == nil {
		var err error
		c, err = client.DialContext(ctx, w.cfg.ClientOptions())
		if err != nil {
			return fmt.Errorf("workflows: connecting to Temporal at %s (namespace %s): %w; is it running? `make run-temporal` starts a dev server", w.cfg.HostPort, w.cfg.Namespace, err)
		}
		defer c.Close()
	}
	tw := worker.New(c, w.cfg.TaskQueue, worker.Options{})
	w.cfg.Register(tw)
	if err := tw.Start(); err != nil {
		return fmt.Errorf("workflows: starting the worker of task queue %s: %w", w.cfg.TaskQueue, err)
	}
	select {
	case <-ctx.Done():
	case <-w.stop:
	}
	tw.Stop()
	return nil
}

// Stop makes Run return, after the SDK worker has stopped, and waits for it.
// Safe to call more than once, and before Run (Run then returns ErrClosed).
func (w *Worker) Stop() {
	w.mu.Lock()
	started := w.started
	if !w.stopped {
		w.stopped = true
		close(w.stop)
	}
	w.mu.Unlock()
	if started {
		<-w.done
	}
}
