// Package config is the format of courierd's --config file and its
// validation: one YAML file (JSON is valid YAML too) that mirrors the Config
// structs of the packages it configures. YAML, because operators comment
// their configs; it is decoded strictly (sigs.k8s.io/yaml: YAML to JSON, then
// encoding/json with unknown fields refused), so a typo is an error naming
// the field, not a silently ignored setting.
//
// It is the one place where courier's settings get their defaults
// (WithDefaults) and are checked (Parse): errors name the setting by its
// path in the file (e.g. "handlers.ackDeadline") and say how to fix it.
// # Environment
//
// Every setting can also come from the environment (ParseEnv, ApplyEnv),
// over the file, by one rule: COURIER_ and the setting's path in the file,
// upper-cased, with "_" for each ".": handlers.ackDeadline is
// COURIER_HANDLERS_ACKDEADLINE=90s, store.url is COURIER_STORE_URL,
// grpc.auth.tokensFile is COURIER_GRPC_AUTH_TOKENSFILE. Values are written
// as in the file: strings and durations as they are, true/false, numbers;
// a list of strings as "a,b" or "[a, b]"; a map (handlers.types,
// grpc.policies, pubsub.topics, grpc.auth.mtlsRoles, schedules) whole, as YAML or
// JSON, setting the entries it names: map entries have no variable of
// their own, because their keys (type and service names) hold dots.
// Setting a field of an optional section (temporal, grpc.tls, http.tls)
// turns the section on. An error names the variable. COURIER_ variables
// that name no setting are returned, for a warning.
//
// It is for courier's Node (package courier), cmd/courierd and tests. It
// does no I/O beyond reading the file and builds nothing: the Node wires
// the values it holds.
package config

import (
	_ "embed"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/courierq/courier/backend"
	"github.com/courierq/courier/tracing"
	"github.com/courierq/courier/workflows"
)

// Demo is the committed demo configuration (demo.yaml), which courierd runs
// when started without --config.
//
//go:embed demo.yaml
var Demo []byte

// Config is the whole courierd configuration. The zero value, after
// WithDefaults, is a complete configuration except for Pub/Sub's project
// (or pubsub.emulator: embedded).
type Config struct {
	// Role is what this process does: "all" (the default: API and workers),
	// "api" (gRPC and HTTP APIs, dashboard, outbox relay; no workers) or
	// "worker" (workers and the outbox relay; HTTP for /metrics and health
	// only). Replicas of each role can be scaled apart.
	Role string `json:"role,omitempty"`
	// ShutdownTimeout bounds a graceful shutdown: in-flight RPCs and
	// handlers get this long before they are cancelled. 0 means 30s.
	ShutdownTimeout Duration `json:"shutdownTimeout,omitempty"`
	// ReadyInterval is how often readiness (/readyz and gRPC health) checks
	// the store, Pub/Sub and Temporal. 0 means 5s.
	ReadyInterval Duration `json:"readyInterval,omitempty"`
	// GRPC configures the gRPC server: address, TLS, authentication and
	// per-service policies.
	GRPC backend.Config `json:"grpc"`
	// HTTP configures the HTTP server (dashboard, /metrics, /healthz).
	HTTP HTTP `json:"http"`
	// PubSub says which Pub/Sub to use and how topics are named.
	PubSub PubSub `json:"pubsub"`
	// Store is the job store.
	Store Store `json:"store"`
	// Jobs configures job bookkeeping: retention, the outbox relay.
	Jobs Jobs `json:"jobs"`
	// Handlers chooses the handlers this process runs and configures them.
	Handlers Handlers `json:"handlers"`
	// Schedules are periodic jobs, by name (see Schedule). The replicas of
	// the api role (and of "all") run the scheduler, whether or not any
	// schedule is configured: schedules also come from the API.
	Schedules map[string]Schedule `json:"schedules,omitempty"`
	// Worker chooses how workers receive messages: pull (the default) or
	// push (see Worker).
	Worker Worker `json:"worker,omitzero"`
	// Temporal, when set, connects workflow job types (e.g. the demo's
	// courier.demo.v1.Bisect) to Temporal and runs a Temporal worker for
	// them. Unset, workflow job types are refused at enqueue with
	// FailedPrecondition.
	Temporal *workflows.WorkerConfig `json:"temporal,omitempty"`
	// Tracing chooses the OpenTelemetry exporter; off by default.
	Tracing tracing.Config `json:"tracing"`
	// Log chooses the log's format and level (courierd's, and that of
	// loggers made by courier.NewLogger).
	Log Log `json:"log"`
}

// Log configures the log.
type Log struct {
	// Format is "text" (the default: slog's key=value lines) or "json": one
	// JSON object per line with Cloud Logging's field names (severity,
	// message, time), which Cloud Run and GKE read as structured logs.
	Format string `json:"format,omitempty"`
	// Level is the least severe level logged: "debug", "info" (the
	// default), "warn" or "error".
	Level string `json:"level,omitempty"`
}

// PubSub configures Pub/Sub.
type PubSub struct {
	// Project is the Google Cloud project ID. Required unless Emulator is
	// "embedded" (then "" means "courier-demo").
	Project string `json:"project,omitempty"`
	// Emulator: "embedded" runs courier's emulator in this process (the
	// demo); "" uses $PUBSUB_EMULATOR_HOST when set, else Google Cloud
	// Pub/Sub with Application Default Credentials.
	Emulator string `json:"emulator,omitempty"`
	// EmulatorDataDir persists the embedded emulator's state (topics,
	// subscriptions and unacked messages survive restarts, kill -9
	// included). "" keeps it in memory: a restart then loses the messages
	// in flight, and only the rescuer (jobs.rescueAfter) brings their jobs
	// back.
	EmulatorDataDir string `json:"emulatorDataDir,omitempty"`
	// EmulatorAddr, when set, makes the embedded emulator listen on this
	// loopback address (for other tools: PUBSUB_EMULATOR_HOST=ADDR), in dev
	// mode only: the emulator has no authentication, and anyone who reaches
	// its port can run jobs. "" (the default) serves it in the process
	// alone, on no port at all.
	EmulatorAddr string `json:"emulatorAddr,omitempty"`
	// TopicPrefix is put before every topic name made by the default rule
	// (the type's full name with dots as dashes).
	TopicPrefix string `json:"topicPrefix,omitempty"`
	// Topics overrides the topic of a type, by full protobuf name.
	Topics map[string]string `json:"topics,omitempty"`
	// DisableCreate: topics and subscriptions are owned by infrastructure;
	// courierd checks they exist instead of creating them.
	DisableCreate bool `json:"disableCreate,omitempty"`
}

// Store configures the job store.
type Store struct {
	// Driver is "sqlite" (the default), "postgres" or "spanner".
	Driver string `json:"driver,omitempty"`
	// Path is the SQLite file. "" means .courier/jobs.db.
	Path string `json:"path,omitempty"`
	// URL is the PostgreSQL connection URL. "" reads $COURIER_POSTGRES_URL
	// (the older name of $COURIER_STORE_URL).
	URL string `json:"url,omitempty"`
	// Schema is the PostgreSQL schema. "" means "courier". Lower-case
	// letters, digits and '_', at most 40 bytes.
	Schema string `json:"schema,omitempty"`
	// Database is the Cloud Spanner database of the spanner driver, by its
	// full name: projects/P/instances/I/databases/D. It must exist (the
	// store creates its tables). Set SPANNER_EMULATOR_HOST to use the
	// Spanner emulator.
	Database string `json:"database,omitempty"`
}

// Jobs configures job bookkeeping.
type Jobs struct {
	// Retention is how long finished jobs are kept. 0 means 7 days.
	Retention Duration `json:"retention,omitempty"`
	// RelayPollInterval bounds how late a run_after job (or one recorded by
	// another replica) is published. 0 means 1s.
	RelayPollInterval Duration `json:"relayPollInterval,omitempty"`
	// RescueAfter is how long a job may stay QUEUED with nothing in the
	// outbox and no worker holding its message (or RUNNING past its lease)
	// before the rescuer publishes it again: it keeps "an enqueued job is
	// never lost" true whatever lost the message (an in-memory emulator
	// restarted, a subscription deleted, retention expired). Set it above
	// the longest time a message can wait in a Pub/Sub backlog: a rescued
	// job that still had its message runs once, but its message is
	// delivered twice. 0 means 1h; a negative duration ("-1s") turns the
	// rescuer off.
	RescueAfter Duration `json:"rescueAfter,omitempty"`
	// SchedulePoll is how often the scheduler looks for due ticks: a tick
	// fires at most this late. 0 means 1s.
	SchedulePoll Duration `json:"schedulePoll,omitempty"`
	// ScheduleGrace is how late a tick may fire and still count as on time;
	// a later one (the fleet was down) is missed, and its schedule's
	// missed policy applies. At least schedulePoll. 0 means 1m.
	ScheduleGrace Duration `json:"scheduleGrace,omitempty"`
	// TypePausePoll is how often workers read which job types are paused
	// (PauseJobType): a pause takes effect on other replicas within it. 0
	// means 5s.
	TypePausePoll Duration `json:"typePausePoll,omitempty"`
}

// Handlers chooses and configures handlers.
type Handlers struct {
	// Demo registers the demo handlers (courier.demo.v1.Echo and Sleep).
	Demo bool `json:"demo,omitempty"`
	// Types configures handlers by full protobuf name of their payload.
	Types map[string]Handler `json:"types,omitempty"`
	// Disabled: this process runs no workers (an API-only replica); jobs are
	// still accepted for the types above.
	Disabled bool `json:"disabled,omitempty"`
	// AckDeadline of the subscriptions courierd creates: after a crash, the
	// messages a worker held come back this long after it last extended
	// them. 0 means 60s.
	AckDeadline Duration `json:"ackDeadline,omitempty"`
	// MaxOutstandingMessages is each subscription's flow control: how many
	// messages a worker holds at once. 0 means 4000.
	MaxOutstandingMessages int `json:"maxOutstandingMessages,omitempty"`
	// RunningAfter is how long a handler runs, on the embedded store
	// (store.driver sqlite), before its job is recorded RUNNING: a job whose
	// handler succeeds sooner has its start and end recorded in one write
	// (its timeline still shows both). Progress and failures are recorded
	// RUNNING at once. Shared stores record every run RUNNING before its
	// handler starts. 0 means 100ms.
	RunningAfter Duration `json:"runningAfter,omitempty"`
}

// Handler configures one handler; zero fields mean the handler's defaults.
type Handler struct {
	RatePerSecond float64  `json:"ratePerSecond,omitempty"`
	Burst         int      `json:"burst,omitempty"`
	Concurrency   int      `json:"concurrency,omitempty"`
	Timeout       Duration `json:"timeout,omitempty"`
	MaxAttempts   int      `json:"maxAttempts,omitempty"`
	MinBackoff    Duration `json:"minBackoff,omitempty"`
	MaxBackoff    Duration `json:"maxBackoff,omitempty"`
	// RateScope is where ratePerSecond, burst, concurrency and
	// enqueueRatePerSecond hold: "fleet" (the default) across every
	// replica when the store is shared (PostgreSQL), per process on SQLite;
	// "process": per process on any store.
	RateScope string `json:"rateScope,omitempty"`
	// RateKey gives each value of a job's label its own rate-limit bucket:
	// "label:NAME" (e.g. label:customer, each customer gets ratePerSecond).
	// "" means one bucket per type. ConcurrencyKey does the same for
	// concurrency.
	RateKey        string `json:"rateKey,omitempty"`
	ConcurrencyKey string `json:"concurrencyKey,omitempty"`
	// EnqueueRatePerSecond limits EnqueueJob for this type (across the
	// fleet, as rateScope says): over it, EnqueueJob answers
	// ResourceExhausted with the retry delay and records nothing. 0 means
	// no limit.
	EnqueueRatePerSecond float64 `json:"enqueueRatePerSecond,omitempty"`
	// EnqueueBurst is the enqueue limit's burst. 0 means 1.
	EnqueueBurst int `json:"enqueueBurst,omitempty"`
}

// validate checks one handler's settings; path names it in errors.
func (h Handler) validate(path string) []error {
	var errs []error
	bad := func(field string, v any, fix string) {
		errs = append(errs, &ValidationError{Field: path + "." + field, Value: v, Fix: fix})
	}
	switch {
	case h.RatePerSecond < 0 || math.IsNaN(h.RatePerSecond) || math.IsInf(h.RatePerSecond, 0):
		bad("ratePerSecond", h.RatePerSecond, "use a positive number, or 0 for no limit")
	}
	if h.Burst < 0 {
		bad("burst", h.Burst, "use a positive number, or 0 for 1")
	}
	if h.Concurrency < 0 {
		bad("concurrency", h.Concurrency, "use a positive number, or 0 for no bound")
	}
	if h.Timeout < 0 {
		bad("timeout", h.Timeout, "use a positive duration, or 0 for none")
	}
	if h.MaxAttempts < 0 {
		bad("maxAttempts", h.MaxAttempts, "use 1 or more, or 0 for the default (5)")
	}
	for _, b := range []struct {
		name string
		d    Duration
	}{{"minBackoff", h.MinBackoff}, {"maxBackoff", h.MaxBackoff}} {
		if b.d < 0 || b.d.D() > 600*time.Second {
			bad(b.name, b.d, "Pub/Sub allows 0..600s")
		}
	}
	if h.MinBackoff > 0 && h.MaxBackoff > 0 && h.MinBackoff > h.MaxBackoff {
		bad("minBackoff", h.MinBackoff, fmt.Sprintf("it is above maxBackoff (%v); lower it or raise maxBackoff", h.MaxBackoff))
	}
	if h.EnqueueRatePerSecond < 0 || math.IsNaN(h.EnqueueRatePerSecond) || math.IsInf(h.EnqueueRatePerSecond, 0) {
		bad("enqueueRatePerSecond", h.EnqueueRatePerSecond, "use a positive number, or 0 for no limit")
	}
	if h.EnqueueBurst < 0 {
		bad("enqueueBurst", h.EnqueueBurst, "use a positive number, or 0 for 1")
	}
	if h.RateScope != "" && h.RateScope != RateScopeFleet && h.RateScope != RateScopeProcess {
		bad("rateScope", h.RateScope, `use "fleet" (the default: across replicas on a shared store) or "process"`)
	}
	for _, k := range []struct{ field, v string }{{"rateKey", h.RateKey}, {"concurrencyKey", h.ConcurrencyKey}} {
		if k.v == "" {
			continue
		}
		name, ok := strings.CutPrefix(k.v, "label:")
		if !ok || name == "" || len(name) > 63 {
			bad(k.field, k.v, `use "label:NAME" (a job label's key, 1..63 bytes), e.g. label:customer`)
		}
	}
	if h.RateKey != "" && h.RatePerSecond == 0 {
		bad("rateKey", h.RateKey, "it keys ratePerSecond, which is not set; set ratePerSecond or remove rateKey")
	}
	if h.ConcurrencyKey != "" && h.Concurrency == 0 {
		bad("concurrencyKey", h.ConcurrencyKey, "it keys concurrency, which is not set; set concurrency or remove concurrencyKey")
	}
	return errs
}

var schemaRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,39}$`)

// spannerDatabaseRE is the form of a Spanner database's full name (as
// jobs/spanner checks it).
var spannerDatabaseRE = regexp.MustCompile(`^projects/[a-z0-9][-a-z0-9.:]*/instances/[a-z][-a-z0-9]*/databases/[a-z][-_a-z0-9]*$`)

// redactURL hides a password in a connection URL shown in an error.
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
			return u.String()
		}
	}
	return s
}

// HTTP configures the HTTP server.
type HTTP struct {
	// Addr is the listen address. "" means 127.0.0.1:8006; "-" turns the
	// HTTP server off.
	Addr string `json:"addr,omitempty"`
	// Dashboard: its mode ("" or "on" serves it at /, "off" does not) and
	// who may read it (see Dashboard). Its actions (cancel, re-enqueue) are
	// gRPC calls carrying the request's Authorization header, so the gRPC
	// API's policy decides them.
	Dashboard Dashboard `json:"dashboard,omitzero"`
	// TLS, when set, serves HTTPS. With grpc.tls.clientCAFile set, client
	// certificates are requested too and identify HTTP/JSON callers as
	// they identify gRPC callers (grpc.auth.mtlsRoles). Unset: plain HTTP
	// (behind a load balancer that terminates TLS, or on loopback).
	TLS *HTTPTLS `json:"tls,omitempty"`
}

// HTTPTLS is the HTTP server's certificate and key, as PEM files.
type HTTPTLS struct {
	CertFile string `json:"certFile"`
	KeyFile  string `json:"keyFile"`
}

// Parse decodes and validates a configuration document. It does not apply
// defaults (WithDefaults does), so a Config can be logged as written.
func Parse(data []byte) (*Config, error) {
	var c Config
	if err := decode(data, &c); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Load reads and parses the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ValidationError names the field that is wrong and says how to fix it.
type ValidationError struct {
	Field string
	Value any
	Fix   string
	// Env is the environment variable that set the field, if one did.
	Env string
}

func (e *ValidationError) Error() string {
	if e.Env != "" {
		return fmt.Sprintf("config: %s: %v: %s (set by $%s)", e.Field, e.Value, e.Fix, e.Env)
	}
	return fmt.Sprintf("config: %s: %v: %s", e.Field, e.Value, e.Fix)
}

// Validate checks c and returns every problem, each naming its setting.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field string, v any, fix string) {
		errs = append(errs, &ValidationError{Field: field, Value: v, Fix: fix})
	}
	switch c.Role {
	case "", "all", "api", "worker":
	default:
		bad("role", c.Role, `use "all" (the default), "api" or "worker"`)
	}
	if c.ReadyInterval < 0 {
		bad("readyInterval", c.ReadyInterval, "use a positive duration such as 5s, or 0 for 5s")
	}
	if c.ShutdownTimeout < 0 {
		bad("shutdownTimeout", c.ShutdownTimeout, "use a positive duration such as 30s, or 0 for 30s")
	}
	if c.GRPC.DevMode && c.GRPC.Addr != "" {
		if err := loopbackAddr(c.GRPC.Addr); err != nil {
			errs = append(errs, &ValidationError{Field: "grpc.addr", Value: c.GRPC.Addr, Fix: "devMode serves only on loopback: use 127.0.0.1:PORT, or set devMode: false and configure grpc.auth"})
		}
	}
	if c.GRPC.DevMode && c.HTTP.Addr != "" && c.HTTP.Addr != "-" {
		if err := loopbackAddr(c.HTTP.Addr); err != nil {
			errs = append(errs, &ValidationError{Field: "http.addr", Value: c.HTTP.Addr, Fix: "devMode serves only on loopback: use 127.0.0.1:PORT"})
		}
	}
	switch c.PubSub.Emulator {
	case "", "embedded":
	default:
		errs = append(errs, &ValidationError{Field: "pubsub.emulator", Value: c.PubSub.Emulator, Fix: `use "embedded", or "" (then $PUBSUB_EMULATOR_HOST or real Pub/Sub)`})
	}
	if a := c.PubSub.EmulatorAddr; a != "" {
		switch {
		case c.PubSub.Emulator != "embedded":
			bad("pubsub.emulatorAddr", a, `it is the embedded emulator's address: set pubsub.emulator: embedded, or remove it`)
		case !c.GRPC.DevMode:
			bad("pubsub.emulatorAddr", a, "the embedded emulator has no authentication, so it listens on a port only in dev mode (grpc.devMode: true); remove it to serve the emulator in the process alone")
		case loopbackAddr(a) != nil:
			bad("pubsub.emulatorAddr", a, "use a loopback address such as 127.0.0.1:8085")
		}
	}
	if c.PubSub.Emulator != "embedded" && c.PubSub.Project == "" {
		errs = append(errs, &ValidationError{Field: "pubsub.project", Value: `""`, Fix: "name the Google Cloud project (with an emulator, any ID such as courier-dev)"})
	}
	switch c.Store.Driver {
	case "", "sqlite", "postgres", "spanner":
	default:
		errs = append(errs, &ValidationError{Field: "store.driver", Value: c.Store.Driver, Fix: "use sqlite, postgres or spanner"})
	}
	if c.Store.Driver == "spanner" && c.Store.Database == "" {
		errs = append(errs, &ValidationError{Field: "store.database", Value: `""`, Fix: "name the Spanner database: projects/P/instances/I/databases/D"})
	}
	if c.Store.Driver == "postgres" && c.Store.URL == "" && os.Getenv("COURIER_POSTGRES_URL") == "" {
		errs = append(errs, &ValidationError{Field: "store.url", Value: `""`, Fix: "set the PostgreSQL URL, e.g. postgres://user@127.0.0.1:5432/db, or $COURIER_STORE_URL"})
	}
	switch c.Tracing.Exporter {
	case "", "off", "stdout", "otlp":
	default:
		errs = append(errs, &ValidationError{Field: "tracing.exporter", Value: c.Tracing.Exporter, Fix: `use "" or "off" (no tracing), "stdout" (spans as JSON on stdout) or "otlp" (with tracing.endpoint)`})
	}
	switch c.Log.Format {
	case "", "text", "json":
	default:
		bad("log.format", c.Log.Format, `use "text" (the default) or "json" (Cloud Logging's fields)`)
	}
	switch strings.ToLower(c.Log.Level) {
	case "", "debug", "info", "warn", "error":
	default:
		bad("log.level", c.Log.Level, `use "debug", "info" (the default), "warn" or "error"`)
	}
	switch c.HTTP.Dashboard.Mode {
	case "", "on", "off":
	default:
		errs = append(errs, &ValidationError{Field: "http.dashboard.mode", Value: c.HTTP.Dashboard.Mode, Fix: `use "on" (the default) or "off"`})
	}
	for _, r := range c.HTTP.Dashboard.ReadRoles {
		if r == "" {
			errs = append(errs, &ValidationError{Field: "http.dashboard.readRoles", Value: c.HTTP.Dashboard.ReadRoles, Fix: "a role is empty; list role names such as viewer"})
			break
		}
	}
	if t := c.HTTP.TLS; t != nil && (t.CertFile == "" || t.KeyFile == "") {
		bad("http.tls", fmt.Sprintf("certFile %q, keyFile %q", t.CertFile, t.KeyFile), "set both certFile and keyFile (PEM files), or remove http.tls to serve plain HTTP")
	}
	if c.Jobs.Retention < 0 {
		bad("jobs.retention", c.Jobs.Retention, "use a positive duration such as 168h, or 0 for 7 days")
	}
	if c.Jobs.RelayPollInterval < 0 {
		bad("jobs.relayPollInterval", c.Jobs.RelayPollInterval, "use a positive duration such as 1s, or 0 for 1s")
	}
	if r := c.Jobs.RescueAfter; r > 0 && r.D() < 10*time.Second {
		bad("jobs.rescueAfter", r, "use at least 10s: shorter would republish jobs whose messages are merely on their way")
	}
	if c.Store.Driver == "spanner" && c.Store.Database != "" && !spannerDatabaseRE.MatchString(c.Store.Database) {
		bad("store.database", c.Store.Database, "use the database's full name, projects/P/instances/I/databases/D")
	}
	if c.Store.Driver == "postgres" {
		if c.Store.Schema != "" && !schemaRE.MatchString(c.Store.Schema) {
			bad("store.schema", c.Store.Schema, "use lower-case letters, digits and '_', starting with a letter or '_', at most 40 bytes")
		}
		if c.Store.URL != "" {
			if u, err := url.Parse(c.Store.URL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
				bad("store.url", redactURL(c.Store.URL), "use a PostgreSQL URL such as postgres://user@127.0.0.1:5432/db")
			}
		}
	}
	h := c.Handlers
	if a := h.AckDeadline.D(); a != 0 && (a < 10*time.Second || a > 600*time.Second) {
		bad("handlers.ackDeadline", h.AckDeadline, "Pub/Sub allows 10s..600s; 0 means 60s")
	}
	if h.RunningAfter < 0 {
		bad("handlers.runningAfter", h.RunningAfter, "use a positive duration, or 0 for 100ms")
	}
	if h.MaxOutstandingMessages < 0 {
		bad("handlers.maxOutstandingMessages", h.MaxOutstandingMessages, "use a positive number, or 0 for 4000")
	}
	for _, typ := range sortedKeys(h.Types) {
		errs = append(errs, h.Types[typ].validate("handlers.types."+typ)...)
	}
	errs = append(errs, c.Worker.validate(c)...)
	if c.Jobs.SchedulePoll < 0 {
		bad("jobs.schedulePoll", c.Jobs.SchedulePoll, "use a positive duration such as 1s, or 0 for 1s")
	}
	if c.Jobs.ScheduleGrace < 0 || (c.Jobs.ScheduleGrace > 0 && c.Jobs.ScheduleGrace < max(c.Jobs.SchedulePoll, Duration(time.Second))) {
		bad("jobs.scheduleGrace", c.Jobs.ScheduleGrace, "use a duration of at least jobs.schedulePoll (and 1s), or 0 for 1m")
	}
	if c.Jobs.TypePausePoll < 0 {
		bad("jobs.typePausePoll", c.Jobs.TypePausePoll, "use a positive duration such as 5s, or 0 for 5s")
	}
	for _, name := range sortedKeys(c.Schedules) {
		errs = append(errs, c.Schedules[name].validate("schedules."+name, name)...)
	}
	return errors.Join(errs...)
}

// Values of handlers.types.T.rateScope.
const (
	RateScopeFleet   = "fleet"
	RateScopeProcess = "process"
)

// KeyLabel returns the label a rateKey or concurrencyKey names ("" for
// none).
func KeyLabel(key string) string {
	name, _ := strings.CutPrefix(key, "label:")
	return name
}

// Defaults of settings left zero (WithDefaults applies them).
const (
	DefaultRole                   = "all"
	DefaultShutdownTimeout        = 30 * time.Second
	DefaultReadyInterval          = 5 * time.Second
	DefaultHTTPAddr               = "127.0.0.1:8006"
	DefaultGRPCAddr               = "127.0.0.1:8005"
	DefaultEmbeddedProject        = "courier-demo"
	DefaultSQLitePath             = ".courier/jobs.db"
	DefaultPostgresSchema         = "courier"
	DefaultRetention              = 7 * 24 * time.Hour
	DefaultRelayPollInterval      = time.Second
	DefaultRescueAfter            = time.Hour
	DefaultAckDeadline            = 60 * time.Second
	DefaultRunningAfter           = 100 * time.Millisecond
	DefaultMaxOutstandingMessages = 4000
	DefaultEnqueueBurst           = 1
	DefaultRateScope              = RateScopeFleet
	DefaultLogFormat              = "text"
	DefaultLogLevel               = "info"
)

// WithDefaults returns a copy of c with every zero setting at its default:
// the one place courier's defaults are decided. Settings of packages that
// keep their own defaults (handler limits, TLS, tracing) are left as they
// are.
func (c Config) WithDefaults() Config {
	if c.Role == "" {
		c.Role = DefaultRole
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = Duration(DefaultShutdownTimeout)
	}
	if c.ReadyInterval == 0 {
		c.ReadyInterval = Duration(DefaultReadyInterval)
	}
	if c.GRPC.Addr == "" {
		c.GRPC.Addr = DefaultGRPCAddr
	}
	if c.HTTP.Addr == "" {
		c.HTTP.Addr = DefaultHTTPAddr
	}
	if c.PubSub.Emulator == "embedded" && c.PubSub.Project == "" {
		c.PubSub.Project = DefaultEmbeddedProject
	}
	switch c.Store.Driver {
	case "", "sqlite":
		c.Store.Driver = "sqlite"
		if c.Store.Path == "" {
			c.Store.Path = DefaultSQLitePath
		}
	case "postgres":
		if c.Store.URL == "" {
			c.Store.URL = os.Getenv("COURIER_POSTGRES_URL")
		}
		if c.Store.Schema == "" {
			c.Store.Schema = DefaultPostgresSchema
		}
	}
	if c.Jobs.Retention == 0 {
		c.Jobs.Retention = Duration(DefaultRetention)
	}
	if c.Log.Format == "" {
		c.Log.Format = DefaultLogFormat
	}
	if c.Log.Level == "" {
		c.Log.Level = DefaultLogLevel
	}
	if c.Jobs.RelayPollInterval == 0 {
		c.Jobs.RelayPollInterval = Duration(DefaultRelayPollInterval)
	}
	if c.Jobs.RescueAfter == 0 {
		c.Jobs.RescueAfter = Duration(DefaultRescueAfter)
	}
	if c.Jobs.SchedulePoll == 0 {
		c.Jobs.SchedulePoll = Duration(DefaultSchedulePoll)
	}
	if c.Jobs.ScheduleGrace == 0 {
		c.Jobs.ScheduleGrace = Duration(max(DefaultScheduleGrace, c.Jobs.SchedulePoll.D()))
	}
	if c.Jobs.TypePausePoll == 0 {
		c.Jobs.TypePausePoll = Duration(DefaultTypePausePoll)
	}
	if len(c.Schedules) > 0 {
		scheds := make(map[string]Schedule, len(c.Schedules))
		for k, s := range c.Schedules {
			if s.Missed == "" {
				s.Missed = "skip"
			}
			scheds[k] = s
		}
		c.Schedules = scheds
	}
	if c.Handlers.AckDeadline == 0 {
		c.Handlers.AckDeadline = Duration(DefaultAckDeadline)
	}
	if c.Handlers.RunningAfter == 0 {
		c.Handlers.RunningAfter = Duration(DefaultRunningAfter)
	}
	if c.Handlers.MaxOutstandingMessages == 0 {
		c.Handlers.MaxOutstandingMessages = DefaultMaxOutstandingMessages
	}
	c.Worker = c.Worker.withDefaults()
	if len(c.Handlers.Types) > 0 {
		types := make(map[string]Handler, len(c.Handlers.Types))
		for k, h := range c.Handlers.Types {
			if h.EnqueueRatePerSecond > 0 && h.EnqueueBurst == 0 {
				h.EnqueueBurst = DefaultEnqueueBurst
			}
			if h.RateScope == "" {
				h.RateScope = DefaultRateScope
			}
			types[k] = h
		}
		c.Handlers.Types = types
	}
	return c
}
