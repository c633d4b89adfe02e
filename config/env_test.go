package config_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/courierq/courier/config"
)

// TestEnvVarsFollowTheRule: every setting has a variable, named by the one
// rule: COURIER_ and its path, upper-cased, "_" for ".".
func TestEnvVarsFollowTheRule(t *testing.T) {
	vars := config.EnvVars()
	for name, path := range map[string]string{
		"COURIER_HANDLERS_ACKDEADLINE":     "handlers.ackDeadline",
		"COURIER_STORE_URL":                "store.url",
		"COURIER_GRPC_AUTH_TOKENSFILE":     "grpc.auth.tokensFile",
		"COURIER_GRPC_TLS_CLIENTCAFILE":    "grpc.tls.clientCAFile",
		"COURIER_GRPC_POLICIES":            "grpc.policies",
		"COURIER_HTTP_DASHBOARD":           "http.dashboard",
		"COURIER_HTTP_TLS_CERTFILE":        "http.tls.certFile",
		"COURIER_HANDLERS_TYPES":           "handlers.types",
		"COURIER_PUBSUB_PROJECT":           "pubsub.project",
		"COURIER_TEMPORAL_HOSTPORT":        "temporal.hostPort",
		"COURIER_TRACING_EXPORTER":         "tracing.exporter",
		"COURIER_LOG_FORMAT":               "log.format",
		"COURIER_SHUTDOWNTIMEOUT":          "shutdownTimeout",
		"COURIER_JOBS_RESCUEAFTER":         "jobs.rescueAfter",
		"COURIER_GRPC_AUTH_TRUSTEDPROXIES": "grpc.auth.trustedProxies",
	} {
		if vars[name] != path {
			t.Errorf("%s sets %q, want %q", name, vars[name], path)
		}
	}
	for name, path := range vars {
		if config.EnvName(path) != name {
			t.Errorf("%s sets %s, whose name by the rule is %s", name, path, config.EnvName(path))
		}
	}
}

func TestParseEnv(t *testing.T) {
	env := []string{
		"COURIER_HANDLERS_ACKDEADLINE=90s",
		"COURIER_GRPC_AUTH_TRUSTEDPROXIES=10.0.0.0/8, 192.168.0.0/16",
		"COURIER_GRPC_AUTH_PROXYHEADERS=true",
		"COURIER_HANDLERS_TYPES={courier.demo.v1.Echo: {maxAttempts: 7}}",
		"COURIER_HANDLERS_MAXOUTSTANDINGMESSAGES=100",
		"COURIER_HTTP_DASHBOARD=off",
		"COURIER_PUBSUB_PROJECT=123456",
		"COURIER_TEMPORAL_HOSTPORT=127.0.0.1:7233",
		"COURIER_LOG_FORMAT=json",
		"COURIER_ADDR=127.0.0.1:8005", // the CLI's, not a setting: not reported
		"COURIER_HANDLERS_ACKDEADLIN=90s",
		"PATH=/bin",
	}
	c, unknown, err := config.ParseEnv(config.Demo, env)
	if err != nil {
		t.Fatal(err)
	}
	if c.Handlers.AckDeadline.D() != 90*time.Second || !slices.Equal(c.GRPC.Auth.TrustedProxies, []string{"10.0.0.0/8", "192.168.0.0/16"}) ||
		!c.GRPC.Auth.ProxyHeaders || c.Handlers.MaxOutstandingMessages != 100 || !c.HTTP.Dashboard.Off() || c.PubSub.Project != "123456" ||
		c.Temporal == nil || c.Temporal.HostPort != "127.0.0.1:7233" || c.Log.Format != "json" {
		t.Fatalf("config after the environment: %+v", c)
	}
	// A map variable sets the entries it names; the file's others stay.
	if c.Handlers.Types["courier.demo.v1.Echo"].MaxAttempts != 7 || c.Handlers.Types["courier.demo.v1.Sleep"].Concurrency != 100 {
		t.Fatalf("handlers.types after COURIER_HANDLERS_TYPES: %+v", c.Handlers.Types)
	}
	if !slices.Equal(unknown, []string{"COURIER_HANDLERS_ACKDEADLIN"}) {
		t.Errorf("unknown variables: %v", unknown)
	}
	// The file's settings stay where no variable is set.
	if c.GRPC.Addr != "127.0.0.1:8005" || !c.GRPC.DevMode {
		t.Errorf("settings no variable names changed: %+v", c.GRPC)
	}
}

// TestParseEnvErrorsNameTheVariable: a value its setting refuses, and a
// value that fails validation, are errors naming the variable.
func TestParseEnvErrorsNameTheVariable(t *testing.T) {
	for _, tc := range []struct{ env, want string }{
		{"COURIER_HANDLERS_ACKDEADLINE=5d", `$COURIER_HANDLERS_ACKDEADLINE (handlers.ackDeadline): "5d" is not a duration`},
		{"COURIER_HANDLERS_ACKDEADLINE=5s", "handlers.ackDeadline: 5s: Pub/Sub allows 10s..600s; 0 means 60s (set by $COURIER_HANDLERS_ACKDEADLINE)"},
		{"COURIER_HANDLERS_MAXOUTSTANDINGMESSAGES=lots", "$COURIER_HANDLERS_MAXOUTSTANDINGMESSAGES (handlers.maxOutstandingMessages): want a whole number"},
		{"COURIER_GRPC_DEVMODE=yes", "$COURIER_GRPC_DEVMODE (grpc.devMode): want true or false"},
		{"COURIER_HANDLERS_TYPES={a.B: {burts: 1}}", "$COURIER_HANDLERS_TYPES (handlers.types): handlers.types.a.B.burts: unknown field"},
		{"COURIER_HANDLERS_TYPES={a.B: {concurrency: -1}}", "handlers.types.a.B.concurrency: -1: use a positive number, or 0 for no bound (set by $COURIER_HANDLERS_TYPES)"},
		{"COURIER_GRPC_ADDR=0.0.0.0:8005", "grpc.addr: 0.0.0.0:8005: devMode serves only on loopback"},
		{"COURIER_ROLE=everything", "(set by $COURIER_ROLE)"},
	} {
		_, _, err := config.ParseEnv(config.Demo, []string{tc.env})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.env, err, tc.want)
		}
	}
	_, _, err := config.ParseEnv(config.Demo, []string{"COURIER_JOBS_RETENTION=forever"})
	var ee *config.EnvError
	if !errors.As(err, &ee) || ee.Var != "COURIER_JOBS_RETENTION" || ee.Path != "jobs.retention" {
		t.Errorf("want an *EnvError naming the variable and the setting, got %#v", err)
	}
}
