package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/courierq/courier"
	"github.com/courierq/courier/client"
	"github.com/courierq/courier/internal/testenv"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

// scrape reads /metrics and returns the families by name.
func scrape(t *testing.T, st *courier.Node) map[string]*dto.MetricFamily {
	t.Helper()
	r, err := http.Get("http://" + st.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	if r.StatusCode != 200 {
		t.Fatalf("/metrics: status %d", r.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r.Body)
	if err != nil {
		t.Fatalf("/metrics is not Prometheus text: %v", err)
	}
	return fams
}

// value returns the value (counter, gauge) or sample count (histogram) of
// family name with label type=typ; -1 when absent.
func value(fams map[string]*dto.MetricFamily, name, typ string) float64 {
	f, ok := fams[name]
	if !ok {
		return -1
	}
	for _, m := range f.Metric {
		match := typ == ""
		for _, l := range m.Label {
			if l.GetName() == "type" && l.GetValue() == typ {
				match = true
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

// TestMetricsCountAWorkload runs a known workload through a real stack
// (courier's emulator, SQLite) and checks every counter against it.
func TestMetricsCountAWorkload(t *testing.T) {
	st := startCourierd(t, fmt.Sprintf("pubsub:\n  emulator: embedded\nstore:\n  path: %s\nhandlers:\n  demo: true\n  types:\n"+
		"    courier.demo.v1.Sleep: {maxAttempts: 5, minBackoff: 0s, maxBackoff: 1s}\n"+
		"    courier.demo.v1.Echo: {maxAttempts: 3, minBackoff: 0s, maxBackoff: 1s, ratePerSecond: 1000, burst: 2}\n",
		filepath.Join(t.TempDir(), "jobs.db")))
	conn, err := client.Dial(st.GRPCAddr(), client.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	jc := courierv1.NewJobServiceClient(conn)
	ctx := context.Background()
	const echo, sleep = "courier.demo.v1.Echo", "courier.demo.v1.Sleep"

	var ids []string
	for i := range 5 {
		a, _ := anypb.New(&demov1.Echo{Message: fmt.Sprint("m", i)})
		ids = append(ids, enqueue(t, jc, a, "").JobId)
	}
	retryOnce, _ := anypb.New(&demov1.Sleep{Duration: durationpb.New(0), FailAttempts: 1})
	permanent, _ := anypb.New(&demov1.Sleep{Duration: durationpb.New(0), PermanentFailure: true})
	ids = append(ids, enqueue(t, jc, retryOnce, "").JobId, enqueue(t, jc, permanent, "").JobId)
	later, _ := anypb.New(&demov1.Sleep{Duration: durationpb.New(0)})
	var waiting []string
	for range 2 {
		resp, err := jc.EnqueueJob(ctx, &courierv1.EnqueueJobRequest{Payload: later, RunAfter: timestamppb.New(time.Now().Add(time.Hour))})
		if err != nil {
			t.Fatal(err)
		}
		waiting = append(waiting, resp.JobId)
	}
	if _, err := jc.CancelJob(ctx, &courierv1.CancelJobRequest{Id: waiting[0]}); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		watchUntilDone(t, jc, id)
	}

	fams := scrape(t, st)
	for _, c := range []struct {
		name, typ string
		want      float64
	}{
		{"courier_jobs_enqueued_total", echo, 5},
		{"courier_jobs_started_total", echo, 5},
		{"courier_jobs_succeeded_total", echo, 5},
		{"courier_handler_duration_seconds", echo, 5},
		{"courier_enqueue_to_start_seconds", echo, 5},
		{"courier_rate_limit_wait_seconds", echo, 5},
		{"courier_handlers_in_flight", echo, 0},
		{"courier_jobs_enqueued_total", sleep, 4},
		{"courier_jobs_started_total", sleep, 3},       // retryOnce twice, permanent once
		{"courier_jobs_succeeded_total", sleep, 1},     // retryOnce
		{"courier_jobs_retried_total", sleep, 1},       // retryOnce's first attempt
		{"courier_jobs_failed_total", sleep, 1},        // permanent
		{"courier_jobs_dead_lettered_total", sleep, 1}, // permanent
		{"courier_jobs_cancelled_total", sleep, 1},     // waiting[0]
		{"courier_handler_duration_seconds", sleep, 3},
		{"courier_enqueue_to_start_seconds", sleep, 2}, // first attempts only
		{"courier_handlers_in_flight", sleep, 0},
		{"courier_outbox_stats_up", "", 1},
		{"courier_outbox_backlog", "", 1}, // waiting[1], due in an hour
		{"courier_pubsub_publish_errors_total", echo, -1},
	} {
		if got := value(fams, c.name, c.typ); got != c.want {
			t.Errorf("%s{type=%q} = %v, want %v", c.name, c.typ, got, c.want)
		}
	}
	if age := value(fams, "courier_outbox_oldest_age_seconds", ""); age < 0 {
		t.Errorf("courier_outbox_oldest_age_seconds = %v, want >= 0", age)
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("go runtime collector missing from /metrics")
	}
}

// readyz returns /readyz's status code and body.
func readyz(t *testing.T, st *courier.Node) (int, string) {
	t.Helper()
	r, err := http.Get("http://" + st.HTTPAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, string(b)
}

// TestReadyzFollowsTheStore runs courierd on PostgreSQL as a role of its own,
// then stops the store for it (the role may no longer log in and its
// connections are terminated): /readyz and the gRPC health of
// courier.v1.JobService turn unready, naming the store, and ready again when
// the role may log in again.
func TestReadyzFollowsTheStore(t *testing.T) {
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, testenv.PostgresURL())
	if err != nil {
		testenv.Missing(t, "PostgreSQL at "+testenv.PostgresURL(), err)
	}
	t.Cleanup(func() { admin.Close(ctx) })
	role := fmt.Sprintf("courier_readyz_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9)
	exec := func(sql string) {
		t.Helper()
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec("CREATE ROLE " + role + " LOGIN")
	t.Cleanup(func() {
		for _, sql := range []string{"DROP OWNED BY " + role + " CASCADE", "DROP ROLE " + role} {
			if _, err := admin.Exec(ctx, sql); err != nil {
				t.Errorf("%s: %v", sql, err)
			}
		}
	})
	exec("GRANT CREATE ON DATABASE " + admin.Config().Database + " TO " + role)
	_, schema := testenv.PostgresSchema(t)
	u, err := url.Parse(testenv.PostgresURL())
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)

	st := startCourierd(t, fmt.Sprintf("pubsub:\n  emulator: embedded\nstore:\n  driver: postgres\n  url: %s\n  schema: %s\nhandlers:\n  demo: true\n", u, schema))
	conn, err := client.Dial(st.GRPCAddr(), client.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	health := healthpb.NewHealthClient(conn)
	jobHealth := func() healthpb.HealthCheckResponse_ServingStatus {
		t.Helper()
		h, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: "courier.v1.JobService"})
		if err != nil {
			t.Fatal(err)
		}
		return h.Status
	}

	if code, body := readyz(t, st); code != 200 || !strings.Contains(body, "store: ok") || !strings.Contains(body, "pubsub: ok") {
		t.Fatalf("/readyz before: %d %q, want 200 with store and pubsub ok", code, body)
	}
	if s := jobHealth(); s != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("JobService health before: %v", s)
	}

	exec("ALTER ROLE " + role + " NOLOGIN")
	exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '" + role + "'")
	code, body := readyz(t, st)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "not ready") || strings.Contains(body, "store: ok") || !strings.Contains(body, "pubsub: ok") {
		t.Fatalf("/readyz with the store stopped: %d %q, want 503 naming the store (and pubsub ok)", code, body)
	}
	// /readyz is unauthenticated: the store's errors (the stale connection's,
	// then a new connection's naming database user, database and server) go
	// to the log, not to the body.
	for i := range 4 {
		_, body := readyz(t, st)
		for _, secret := range []string{role, admin.Config().Database, "user=", "FATAL", admin.Config().Host} {
			if strings.Contains(body, secret) {
				t.Errorf("/readyz (poll %d) with the store stopped shows %q: %q", i, secret, body)
			}
		}
	}
	if s := jobHealth(); s != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("JobService health with the store stopped: %v, want NOT_SERVING", s)
	}

	exec("ALTER ROLE " + role + " LOGIN")
	// The pool still holds connections the server terminated; each fails
	// one ping and is dropped, so poll until a ping gets a fresh one.
	polls := 0
	for deadline := time.Now().Add(30 * time.Second); ; polls++ {
		code, body := readyz(t, st)
		if code == 200 && strings.Contains(body, "store: ok") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz after the store returned: still %d %q after %d polls in 30s, want 200", code, body, polls)
		}
		time.Sleep(20 * time.Millisecond) // polling: no event says a stale connection is gone
	}
	t.Logf("/readyz ready again after %d failing polls", polls)
	if s := jobHealth(); s != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("JobService health after the store returned: %v, want SERVING", s)
	}
}
