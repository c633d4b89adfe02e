package config_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/courierq/courier/config"
)

func TestDemoConfig(t *testing.T) {
	c, err := config.Parse(config.Demo)
	if err != nil {
		t.Fatal(err)
	}
	if c.GRPC.Addr != "127.0.0.1:8005" || !c.GRPC.DevMode || c.HTTP.Addr != "127.0.0.1:8006" {
		t.Fatalf("demo config: %+v", c)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"grpc:\n  adr: 127.0.0.1:1\n", `grpc.adr: unknown field; valid fields here: addr,`},
		{"grpc:\n  addr: 0.0.0.0:8005\n  devMode: true\n", "grpc.addr"},
		{"grpc:\n  devMode: true\nhttp:\n  addr: 10.0.0.1:80\n", "http.addr"},
		{"grpc:\n  devMode: true\nhttp:\n  dashboard: maybe\n", "http.dashboard.mode"},
		{"grpc:\n  devMode: true\nhttp:\n  dashboard: {readRole: [x]}\n", `unknown field "readRole"`},
		{"grpc:\n  devMode: true\nhttp:\n  dashboard: {readRoles: [\"\"]}\n", "http.dashboard.readRoles"},
		// Every error names the setting by its path in the file.
		{"jobs:\n  retention: 5\n", `jobs.retention: a duration must be a string such as "90s"`},
		{"jobs:\n  retention: 5d\n", `jobs.retention: "5d" is not a duration`},
		{"jobs:\n  relayPollInterval: -1s\n", "jobs.relayPollInterval"},
		{"jobs:\n  rescueAfter: 1s\n", "jobs.rescueAfter"},
		{"handlers:\n  ackDeadline: 5s\n", "handlers.ackDeadline: 5s: Pub/Sub allows 10s..600s"},
		{"handlers:\n  maxOutstandingMessages: -1\n", "handlers.maxOutstandingMessages: -1"},
		{"handlers:\n  runningAfter: -1s\n", "handlers.runningAfter: -1s"},
		{"handlers:\n  maxOutstandingMessages: lots\n", "handlers.maxOutstandingMessages: want a whole number"},
		{"handlers:\n  types:\n    a.B: {minBackoff: 20s, maxBackoff: 10s}\n", "handlers.types.a.B.minBackoff: 20s: it is above maxBackoff (10s)"},
		{"handlers:\n  types:\n    a.B: {concurrency: -1}\n", "handlers.types.a.B.concurrency"},
		{"handlers:\n  types:\n    a.B: {burts: 1}\n", "handlers.types.a.B.burts: unknown field"},
		{"handlers:\n  types:\n    a.B: {ratePerSecond: 1, rateScope: cluster}\n", `handlers.types.a.B.rateScope: cluster: use "fleet"`},
		{"handlers:\n  types:\n    a.B: {ratePerSecond: 1, rateKey: customer}\n", `handlers.types.a.B.rateKey: customer: use "label:NAME"`},
		{"handlers:\n  types:\n    a.B: {ratePerSecond: 1, rateKey: \"label:\"}\n", "handlers.types.a.B.rateKey"},
		{"handlers:\n  types:\n    a.B: {rateKey: label:customer}\n", "handlers.types.a.B.rateKey: label:customer: it keys ratePerSecond, which is not set"},
		{"handlers:\n  types:\n    a.B: {concurrencyKey: label:customer}\n", "handlers.types.a.B.concurrencyKey: label:customer: it keys concurrency"},
		{"store:\n  driver: postgres\n  url: postgres://x@h/db\n  schema: Bad-Schema\n", "store.schema: Bad-Schema"},
		{"store:\n  driver: postgres\n  url: \"mysql://u:secret@h/db\"\n", "store.url: mysql://u:xxxxx@h/db"},
		{"store:\n  driver: spanner\n", "store.database"},
		{"store:\n  driver: spanner\n  database: projects/p/instances/i\n", "store.database: projects/p/instances/i"},
		{"store:\n  driver: mysql\n", "use sqlite, postgres or spanner"},
		{"role: everything\n", "role: everything"},
		{"shutdownTimeout: -3s\n", "shutdownTimeout"},
	} {
		_, err := config.Parse([]byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tc.doc, err, tc.want)
			continue
		}
		for _, goName := range []string{"Config.", "Jobs.", "Handlers.", "Store.", "Go struct", "time.Duration", "secret"} {
			if strings.Contains(err.Error(), goName) {
				t.Errorf("Parse(%q) = %v: names %q instead of the setting's path", tc.doc, err, goName)
			}
		}
	}
	_, err := config.Parse([]byte("grpc:\n  addr: 0.0.0.0:8005\n  devMode: true\n"))
	var ve *config.ValidationError
	if !errors.As(err, &ve) || ve.Field != "grpc.addr" {
		t.Errorf("want a *ValidationError for grpc.addr, got %v", err)
	}
}

func TestDashboardForms(t *testing.T) {
	for _, tc := range []struct {
		doc   string
		off   bool
		roles []string
	}{
		{"grpc:\n  devMode: true\n", false, nil},
		{"grpc:\n  devMode: true\nhttp:\n  dashboard: \"off\"\n", true, nil},
		{"grpc:\n  devMode: true\nhttp:\n  dashboard: \"on\"\n", false, nil},
		{"grpc:\n  devMode: true\nhttp:\n  dashboard:\n    readRoles: [viewer, operator]\n", false, []string{"viewer", "operator"}},
		{"grpc:\n  devMode: true\nhttp:\n  dashboard: {mode: \"off\"}\n", true, nil},
	} {
		c, err := config.Parse([]byte("pubsub:\n  emulator: embedded\n" + tc.doc))
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.doc, err)
			continue
		}
		if c.HTTP.Dashboard.Off() != tc.off || strings.Join(c.HTTP.Dashboard.ReadRoles, ",") != strings.Join(tc.roles, ",") {
			t.Errorf("Parse(%q): dashboard %+v, want off=%v roles %v", tc.doc, c.HTTP.Dashboard, tc.off, tc.roles)
		}
	}
}

func TestWithDefaults(t *testing.T) {
	c, err := config.Parse([]byte("pubsub:\n  emulator: embedded\nhandlers:\n  types:\n    a.B: {enqueueRatePerSecond: 5}\n"))
	if err != nil {
		t.Fatal(err)
	}
	d := c.WithDefaults()
	if d.Role != "all" || d.ShutdownTimeout.D() != 30*time.Second || d.HTTP.Addr != "127.0.0.1:8006" || d.GRPC.Addr != "127.0.0.1:8005" ||
		d.PubSub.Project != "courier-demo" || d.Store.Driver != "sqlite" || d.Store.Path != ".courier/jobs.db" ||
		d.Jobs.Retention.D() != 7*24*time.Hour || d.Jobs.RelayPollInterval.D() != time.Second || d.Jobs.RescueAfter.D() != time.Hour ||
		d.Handlers.AckDeadline.D() != time.Minute || d.Handlers.MaxOutstandingMessages != 4000 || d.Handlers.Types["a.B"].EnqueueBurst != 1 ||
		d.Handlers.RunningAfter.D() != 100*time.Millisecond ||
		d.Handlers.Types["a.B"].RateScope != "fleet" {
		t.Fatalf("defaults: %+v", d)
	}
	if c.Role != "" || c.Handlers.Types["a.B"].EnqueueBurst != 0 {
		t.Fatal("WithDefaults changed the Config it was called on")
	}
}

func TestRateKeys(t *testing.T) {
	c, err := config.Parse([]byte("pubsub:\n  emulator: embedded\nhandlers:\n  types:\n    a.B: {ratePerSecond: 10, rateKey: label:customer, concurrency: 2, concurrencyKey: label:tenant, rateScope: process}\n"))
	if err != nil {
		t.Fatal(err)
	}
	h := c.Handlers.Types["a.B"]
	if config.KeyLabel(h.RateKey) != "customer" || config.KeyLabel(h.ConcurrencyKey) != "tenant" || h.RateScope != config.RateScopeProcess || config.KeyLabel("") != "" {
		t.Fatalf("parsed %+v", h)
	}
}
