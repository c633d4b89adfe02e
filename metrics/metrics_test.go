package metrics_test

import (
	"context"
	"io"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/sqlite"
	"github.com/courierq/courier/metrics"
)

func TestStoreDecoratorAndFleetGauges(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 27, 12, 0, 30, 0, time.UTC)
	clock := func() time.Time { return now }
	s, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "jobs.db"), Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	m, err := metrics.New(metrics.Config{Registry: prometheus.NewRegistry(), Store: s, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	store := m.WrapStore(s)
	const typ = "courier.demo.v1.Echo"
	run := func(id string, ok bool) {
		t.Helper()
		if _, dup, err := store.Enqueue(ctx, jobs.EnqueueParams{Job: jobs.Job{ID: id, Type: typ, MaxAttempts: 1, IdempotencyKey: id}}); err != nil || dup {
			t.Fatalf("Enqueue %s: %v %v", id, dup, err)
		}
		if _, err := store.Start(ctx, jobs.StartParams{ID: id, Attempt: 1, Lease: "test", LeaseFor: time.Minute}); err != nil {
			t.Fatal(err)
		}
		if ok {
			_, err = store.Succeed(ctx, jobs.SucceedParams{ID: id})
		} else {
			_, err = store.Fail(ctx, jobs.FailParams{ID: id, Code: 2, Message: "x"})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	run("a", true)
	run("b", false)
	now = now.Add(2 * time.Minute)
	run("c", true)
	run("d", true)
	// A duplicate is not counted; a Succeed the store refuses is not either.
	if _, dup, _ := store.Enqueue(ctx, jobs.EnqueueParams{Job: jobs.Job{ID: "a2", Type: typ, IdempotencyKey: "a"}}); !dup {
		t.Fatal("re-enqueue of a was not a duplicate")
	}
	if _, err := store.Succeed(ctx, jobs.SucceedParams{ID: "a"}); err == nil {
		t.Fatal("second Succeed of a was accepted")
	}

	// One more job, queued since the start: the oldest queued one.
	if _, _, err := store.Enqueue(ctx, jobs.EnqueueParams{Job: jobs.Job{ID: "e", Type: typ}}); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`courier_jobs_enqueued_total{type="courier.demo.v1.Echo"} 5`,
		`courier_jobs_succeeded_total{type="courier.demo.v1.Echo"} 3`,
		`courier_jobs_failed_total{type="courier.demo.v1.Echo"} 1`,
		`courier_enqueue_to_start_seconds_count{type="courier.demo.v1.Echo"} 4`,
		`courier_jobs{state="SUCCEEDED",type="courier.demo.v1.Echo"} 3`,
		`courier_jobs{state="FAILED",type="courier.demo.v1.Echo"} 1`,
		`courier_jobs{state="QUEUED",type="courier.demo.v1.Echo"} 1`,
		`courier_oldest_queued_age_seconds{type="courier.demo.v1.Echo"} 0`,
		"courier_job_counts_up 1",
		"courier_outbox_backlog 4", // nothing relayed them; b's went with its final failure
		"courier_outbox_oldest_age_seconds 120",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestNewRefusesASecondRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := metrics.New(metrics.Config{Registry: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := metrics.New(metrics.Config{Registry: reg}); err == nil || !strings.HasPrefix(err.Error(), "metrics: ") {
		t.Fatalf("second New on one registry: %v", err)
	}
	if _, err := metrics.New(metrics.Config{}); err == nil {
		t.Fatal("New without a registry succeeded")
	}
}

func TestRateLimitWaiting(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(metrics.Config{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	// One token per 1000s: the first reservation has it, the next two wait
	// (for the test's whole life), and one of those is given back.
	lim := m.WrapLimiter("a", handlers.NewLocalLimiter(0.001, 1, nil))
	ctx := context.Background()
	var cancels []func()
	for range 3 {
		_, cancel, err := lim.Reserve(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		cancels = append(cancels, cancel)
	}
	cancels[2]()
	cancels[2]() // twice is harmless
	if got := m.WaitingNow("a"); got != 1 {
		t.Fatalf("WaitingNow(a) = %d, want 1", got)
	}
	if got := m.WaitingNow("b"); got != 0 {
		t.Fatalf("WaitingNow(b) = %d, want 0", got)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range families {
		if f.GetName() == "courier_rate_limit_waiting" {
			for _, mt := range f.GetMetric() {
				if mt.GetLabel()[0].GetValue() == "a" && mt.GetGauge().GetValue() == 1 {
					found = true
				}
			}
		}
	}
	if !found {
		t.Fatal("courier_rate_limit_waiting{type=\"a\"} 1 is not in the scrape")
	}
}
