package courier

import (
	"log/slog"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/jackc/pgx/v5/pgxpool"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tclient "go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/courierq/courier/backend"
	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/jobs"
)

// Option injects something the caller brings into a Node: its own handler
// types, services, clients or store. Options do what no config file can
// (pass values); everything a file can say is in config.Config.
type Option interface{ apply(*options) }

type options struct {
	registry     *handlers.Registry
	services     []backend.Service
	pubsub       *pubsub.Client
	store        jobs.Store
	pool         *pgxpool.Pool
	logger       *slog.Logger
	temporal     tclient.Client
	workflows    []func(worker.Registry)
	middleware   []handlers.Middleware
	spanExporter sdktrace.SpanExporter
	now          func() time.Time
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithRegistry gives the Node the caller's handler types: their handlers run
// on workers, and JobService accepts jobs of them. The config file's
// handlers.types settings override what the code registered, field by field
// (handlers.Registry.Configure). With handlers.demo on, the demo types are
// added to it. Default: an empty registry.
func WithRegistry(r *handlers.Registry) Option {
	return optionFunc(func(o *options) { o.registry = r })
}

// WithServices hosts more gRPC services beside JobService and Hello, each
// with its own policy (a config file's grpc.policies can replace it).
func WithServices(s ...backend.Service) Option {
	return optionFunc(func(o *options) { o.services = append(o.services, s...) })
}

// WithPubSubClient uses c instead of dialling Pub/Sub from the config's
// pubsub section. The caller closes it after the Node stops. Default: the
// Node dials (or runs the embedded emulator) and closes its own.
func WithPubSubClient(c *pubsub.Client) Option {
	return optionFunc(func(o *options) { o.pubsub = c })
}

// WithStore uses s as the job store instead of opening the one the config's
// store section names. The caller closes it after the Node stops.
func WithStore(s jobs.Store) Option {
	return optionFunc(func(o *options) { o.store = s })
}

// WithPostgresPool opens the PostgreSQL job store (store.driver: postgres)
// on the caller's pool instead of a pool of its own, so that an application
// and courier share connections (and, with postgres.EnqueueTx,
// transactions). The caller closes the pool after the Node stops.
func WithPostgresPool(p *pgxpool.Pool) Option {
	return optionFunc(func(o *options) { o.pool = p })
}

// WithLogger sends the Node's logs to l. Default: slog.Default().
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(o *options) { o.logger = l })
}

// WithTemporalClient uses c for workflow job types instead of dialling the
// config's temporal section (which must still be present: it names the task
// queue). The caller closes c after the Node stops.
func WithTemporalClient(c tclient.Client) Option {
	return optionFunc(func(o *options) { o.temporal = c })
}

// WithWorkflows registers the caller's workflows and activities on the
// Node's Temporal worker (with a temporal section in the config).
func WithWorkflows(register func(worker.Registry)) Option {
	return optionFunc(func(o *options) { o.workflows = append(o.workflows, register) })
}

// WithMiddleware wraps every handler in mw once its job is RUNNING, inside
// courier's own metrics and tracing middleware and outside the timeout;
// the first runs first.
func WithMiddleware(mw ...handlers.Middleware) Option {
	return optionFunc(func(o *options) { o.middleware = append(o.middleware, mw...) })
}

// WithSpanExporter sends spans to e (synchronously) whatever the config's
// tracing section says; tests pass an in-memory exporter.
func WithSpanExporter(e sdktrace.SpanExporter) Option {
	return optionFunc(func(o *options) { o.spanExporter = e })
}

// WithClock makes now the Node's clock for schedules (when their ticks are
// due, and the first tick of a new one) and for delays (when a job that
// returned handlers.RetryAfter or handlers.Snooze is due). Tests pass a clock they move (and
// give the store the same one, e.g. jobs/sqlite Config.Now, through
// WithStore). Default: time.Now.
func WithClock(now func() time.Time) Option {
	return optionFunc(func(o *options) { o.now = now })
}
