// Package config is the format of courierd's --config file and its
// validation: one YAML file (JSON is valid YAML too) that mirrors the Config
// structs of the packages it configures. YAML, because operators comment
// their configs; it is decoded strictly (sigs.k8s.io/yaml: YAML to JSON, then
// encoding/json with unknown fields refused), so a typo is an error naming
// the field, not a silently ignored setting.
//
// It is for cmd/courierd and tests that start it. It does no I/O beyond
// reading the file and builds nothing: cmd wires the values it holds.
package config

import (
	_ "embed"
	"errors"
	"fmt"
	"os"

	"sigs.k8s.io/yaml"

	"github.com/courierq/courier/backend"
	"github.com/courierq/courier/tracing"
	"github.com/courierq/courier/workflows"
)

// Demo is the committed demo configuration (demo.yaml), which courierd runs
// when started without --config.
//
//go:embed demo.yaml
var Demo []byte

// Config is the whole courierd configuration.
type Config struct {
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
	// Temporal, when set, connects workflow job types (e.g. the demo's
	// courier.demo.v1.Bisect) to Temporal and runs a Temporal worker for
	// them. Unset, workflow job types are refused at enqueue with
	// FailedPrecondition.
	Temporal *workflows.WorkerConfig `json:"temporal,omitempty"`
	// Tracing chooses the OpenTelemetry exporter; off by default.
	Tracing tracing.Config `json:"tracing"`
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
	// EmulatorDataDir persists the embedded emulator's state. "" keeps it
	// in memory.
	EmulatorDataDir string `json:"emulatorDataDir,omitempty"`
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
	// Driver is "sqlite" (the default) or "postgres".
	Driver string `json:"driver,omitempty"`
	// Path is the SQLite file. "" means .courier/jobs.db.
	Path string `json:"path,omitempty"`
	// URL is the PostgreSQL connection URL (or $COURIER_POSTGRES_URL).
	URL string `json:"url,omitempty"`
	// Schema is the PostgreSQL schema. "" means "courier".
	Schema string `json:"schema,omitempty"`
}

// Jobs configures job bookkeeping.
type Jobs struct {
	// Retention is how long finished jobs are kept. 0 means 7 days.
	Retention Duration `json:"retention,omitempty"`
	// RelayPollInterval bounds how late a run_after job (or one recorded by
	// another replica) is published. 0 means 1s.
	RelayPollInterval Duration `json:"relayPollInterval,omitempty"`
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
	// EnqueueRatePerSecond limits EnqueueJob for this type (per replica):
	// over it, EnqueueJob answers ResourceExhausted with the retry delay and
	// records nothing. 0 means no limit.
	EnqueueRatePerSecond float64 `json:"enqueueRatePerSecond,omitempty"`
	// EnqueueBurst is the enqueue limit's burst. 0 means 1.
	EnqueueBurst int `json:"enqueueBurst,omitempty"`
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
}

// Parse decodes and validates a configuration document.
func Parse(data []byte) (*Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := c.validate(); err != nil {
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
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("config: %s: %v: %s", e.Field, e.Value, e.Fix)
}

func (c *Config) validate() error {
	var errs []error
	if c.GRPC.DevMode && c.GRPC.Addr != "" {
		if err := loopbackAddr(c.GRPC.Addr); err != nil {
			errs = append(errs, &ValidationError{"grpc.addr", c.GRPC.Addr, "devMode serves only on loopback: use 127.0.0.1:PORT, or set devMode: false and configure grpc.auth"})
		}
	}
	if c.GRPC.DevMode && c.HTTP.Addr != "" && c.HTTP.Addr != "-" {
		if err := loopbackAddr(c.HTTP.Addr); err != nil {
			errs = append(errs, &ValidationError{"http.addr", c.HTTP.Addr, "devMode serves only on loopback: use 127.0.0.1:PORT"})
		}
	}
	switch c.PubSub.Emulator {
	case "", "embedded":
	default:
		errs = append(errs, &ValidationError{"pubsub.emulator", c.PubSub.Emulator, `use "embedded", or "" (then $PUBSUB_EMULATOR_HOST or real Pub/Sub)`})
	}
	if c.PubSub.Emulator != "embedded" && c.PubSub.Project == "" {
		errs = append(errs, &ValidationError{"pubsub.project", `""`, "name the Google Cloud project (with an emulator, any ID such as courier-dev)"})
	}
	switch c.Store.Driver {
	case "", "sqlite", "postgres":
	default:
		errs = append(errs, &ValidationError{"store.driver", c.Store.Driver, "use sqlite or postgres"})
	}
	if c.Store.Driver == "postgres" && c.Store.URL == "" && os.Getenv("COURIER_POSTGRES_URL") == "" {
		errs = append(errs, &ValidationError{"store.url", `""`, "set the PostgreSQL URL, e.g. postgres://user@127.0.0.1:5432/db, or $COURIER_POSTGRES_URL"})
	}
	switch c.Tracing.Exporter {
	case "", "off", "stdout", "otlp":
	default:
		errs = append(errs, &ValidationError{"tracing.exporter", c.Tracing.Exporter, `use "" or "off" (no tracing), "stdout" (spans as JSON on stdout) or "otlp" (with tracing.endpoint)`})
	}
	switch c.HTTP.Dashboard.Mode {
	case "", "on", "off":
	default:
		errs = append(errs, &ValidationError{"http.dashboard.mode", c.HTTP.Dashboard.Mode, `use "on" (the default) or "off"`})
	}
	for _, r := range c.HTTP.Dashboard.ReadRoles {
		if r == "" {
			errs = append(errs, &ValidationError{"http.dashboard.readRoles", c.HTTP.Dashboard.ReadRoles, "a role is empty; list role names such as viewer"})
			break
		}
	}
	if c.Jobs.Retention < 0 {
		errs = append(errs, &ValidationError{"jobs.retention", c.Jobs.Retention, "use a positive duration such as 168h, or 0 for 7 days"})
	}
	return errors.Join(errs...)
}
