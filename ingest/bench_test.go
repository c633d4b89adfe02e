package ingest_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/handlers/demo"
	"github.com/courierq/courier/ingest"
	"github.com/courierq/courier/internal/testenv"
	"github.com/courierq/courier/jobs"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
	"github.com/courierq/courier/publisher"
)

// BenchmarkBurnDownEcho publishes b.N Echo jobs fire-and-forget, then starts
// a worker and measures how fast it runs them all to SUCCEEDED (SQLite store,
// Google's emulator). Reports jobs/s.
func BenchmarkBurnDownEcho(b *testing.B) { benchBurnDown(b, false) }

// BenchmarkBurnDownEnqueuedEcho is BenchmarkBurnDownEcho for jobs recorded in
// the store first (as EnqueueJob does) and published with their IDs: the
// worker then reads the job instead of creating it.
func BenchmarkBurnDownEnqueuedEcho(b *testing.B) { benchBurnDown(b, true) }

// benchBurnDown publishes b.N Echo jobs, then starts a worker and measures
// how fast it runs them all to SUCCEEDED (SQLite store). Reports jobs/s.
func benchBurnDown(b *testing.B, enqueue bool) {
	reg := handlers.NewRegistry()
	if err := demo.Register(reg, demo.Config{}); err != nil {
		b.Fatal(err)
	}
	s := startStack(b, testenv.SQLite, reg, ingest.Config{}, false)
	ctx := context.Background()
	// Create the infrastructure, then stop: the jobs must queue up first.
	w0 := s.worker
	go w0.Run(ctx)
	<-w0.Ready()
	w0.Shutdown(ctx)
	ids := make([]string, b.N)
	payload, _ := proto.Marshal(&demov1.Echo{Message: "bench"})
	for i := range b.N {
		var opts []publisher.Option
		if enqueue {
			job, _, err := s.store.Enqueue(ctx, jobs.EnqueueParams{Job: jobs.Job{Type: "courier.demo.v1.Echo", Payload: payload}})
			if err != nil {
				b.Fatal(err)
			}
			opts = append(opts, publisher.WithID(job.ID))
		}
		id, err := s.pub.Publish(ctx, &demov1.Echo{Message: "bench"}, opts...)
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = id
	}
	if err := s.pub.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	w, err := ingest.New(ingest.Config{Client: s.client, Store: s.store, Registry: reg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { w.Close() })
	b.ResetTimer()
	begin := time.Now()
	go w.Run(ctx)
	for _, id := range ids {
		if job := waitState(ctx, b, s.store, id, jobs.Succeeded); job.State != jobs.Succeeded {
			b.Fatalf("job %+v", job)
		}
	}
	el := time.Since(begin)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "jobs/s")
}
