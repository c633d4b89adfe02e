package courier_test

import (
	"context"

	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/protobuf/proto"

	"github.com/courierq/courier"
	"github.com/courierq/courier/config"
	"github.com/courierq/courier/couriertest"
	"github.com/courierq/courier/emulator"
	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/internal/testenv"
	"github.com/courierq/courier/jobs"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
)

// fleetBenchJobs is how many jobs each case of BenchmarkFleet runs.
const fleetBenchJobs = 6000

// BenchmarkFleet (make bench-fleet): replicas (Nodes) on one PostgreSQL
// schema and one emulator work through fleetBenchJobs Echo jobs, written
// to the store by 16 writers at once: jobs/s from the first enqueue to
// the last success, with 1, 2 and 3 replicas; then 3 replicas with a
// fleet-wide rate limit far above the load (ratePerSecond 100000, burst
// 1000), whose rate against the unlimited one is the shared limiter's
// cost, and with a fleet-wide concurrency limit far above it (two round
// trips a job: a slot taken and released).
func BenchmarkFleet(b *testing.B) {
	for _, c := range []struct {
		name     string
		replicas int
		h        config.Handler
	}{
		{"replicas=1", 1, config.Handler{}},
		{"replicas=2", 2, config.Handler{}},
		{"replicas=3", 3, config.Handler{}},
		{"replicas=3/shared-limiter", 3, config.Handler{RatePerSecond: 100000, Burst: 1000}},
		{"replicas=3/shared-concurrency", 3, config.Handler{Concurrency: 100000}},
	} {
		b.Run(c.name, func(b *testing.B) {
			var rate float64
			for range b.N {
				rate = fleetRun(b, c.replicas, c.h)
			}
			b.ReportMetric(rate, "jobs/s")
		})
	}
}

func fleetRun(b *testing.B, replicas int, h config.Handler) float64 {
	url, schema := testenv.PostgresSchema(b)
	emu, err := emulator.Start(context.Background(), emulator.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer emu.Close()
	cfg := &config.Config{
		PubSub:   config.PubSub{Project: "bench"},
		Store:    config.Store{Driver: "postgres", URL: url, Schema: schema},
		Jobs:     config.Jobs{RelayPollInterval: config.Duration(100 * time.Millisecond)},
		Handlers: config.Handlers{Types: map[string]config.Handler{"courier.demo.v1.Echo": h}},
	}
	var nodes []*couriertest.Node
	var stops []func()
	for range replicas {
		reg := handlers.NewRegistry()
		if err := handlers.Register(reg, func(ctx context.Context, job *handlers.Job[*demov1.Echo]) (*demov1.EchoResult, error) {
			return &demov1.EchoResult{}, nil
		}, handlers.Config{}); err != nil {
			b.Fatal(err)
		}
		c, err := pubsub.NewClient(context.Background(), "bench", emu.ClientOptions()...)
		if err != nil {
			b.Fatal(err)
		}
		stops = append(stops, func() { c.Close() })
		nodes = append(nodes, couriertest.StartConfig(b, cfg, courier.WithRegistry(reg), courier.WithPubSubClient(c)))
	}
	defer func() {
		for i, n := range nodes {
			n.Close()
			stops[i]()
		}
	}()
	store := nodes[0].Store()
	payload, _ := proto.Marshal(&demov1.Echo{Message: "bench"})
	start := time.Now()
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < fleetBenchJobs; i += 16 {
				// Each replica's relay publishes what it enqueued; spread
				// them as the API replicas would.
				if _, _, err := nodes[i%replicas].Store().Enqueue(context.Background(), jobs.EnqueueParams{Job: jobs.Job{Type: "courier.demo.v1.Echo", Payload: payload}}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for {
		cs, err := store.Counts(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		done := 0
		for _, c := range cs {
			done += c.States[jobs.Succeeded]
		}
		if done >= fleetBenchJobs {
			break
		}
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("%d of %d jobs done after 5 minutes", done, fleetBenchJobs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(start)
	rate := float64(fleetBenchJobs) / elapsed.Seconds()
	b.Logf("%d replicas, limits %+v: %d jobs in %v: %.0f jobs/s", replicas, h, fleetBenchJobs, elapsed.Round(time.Millisecond), rate)
	return rate
}
