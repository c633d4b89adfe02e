package jobstest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/courierq/courier/jobs"
)

// BenchWorkers is how many goroutines BenchmarkStore drives the store with.
const BenchWorkers = 100

// benchMinOps is the least work one measurement does, so that
// `-benchtime 1x` still measures throughput rather than one call.
const benchMinOps = 20000

// BenchmarkStore measures a store from newStore under BenchWorkers
// concurrent goroutines and reports throughput: Enqueue/s, Start+Succeed
// pairs/s (two conditional updates each), worker burn-down jobs/s
// (Ensure+Start+Succeed) and Get/s. Each of its sub-benchmarks does at
// least benchMinOps operations per run, so `-benchtime 1x` is meaningful.
func BenchmarkStore(b *testing.B, newStore func(tb testing.TB) jobs.Store) {
	ctx := context.Background()
	b.Run("Enqueue", func(b *testing.B) {
		s := newStore(b)
		n := max(b.N, benchMinOps)
		b.ResetTimer()
		elapsed := parallel(b, n, func(i int) error {
			_, _, err := s.Enqueue(ctx, jobs.EnqueueParams{Job: benchJob(i)})
			return err
		})
		b.ReportMetric(float64(n)/elapsed.Seconds(), "enqueues/s")
	})
	b.Run("StartSucceed", func(b *testing.B) {
		s := newStore(b)
		n := max(b.N, benchMinOps)
		ids := seed(ctx, b, s, n)
		b.ResetTimer()
		elapsed := parallel(b, n, func(i int) error {
			if _, err := s.Start(ctx, jobs.StartParams{ID: ids[i], Attempt: 1, Lease: "bench", LeaseFor: time.Minute}); err != nil {
				return err
			}
			_, err := s.Succeed(ctx, jobs.SucceedParams{ID: ids[i], ResultType: "bench.v1.Result", Result: []byte("ok")})
			return err
		})
		b.ReportMetric(float64(n)/elapsed.Seconds(), "pairs/s")
		b.ReportMetric(2*float64(n)/elapsed.Seconds(), "updates/s")
	})
	b.Run("Burndown", func(b *testing.B) {
		// What a worker does per delivered message: Ensure (finds the job
		// Enqueue recorded), Start, Succeed.
		s := newStore(b)
		n := max(b.N, benchMinOps)
		ids := seed(ctx, b, s, n)
		b.ResetTimer()
		elapsed := parallel(b, n, func(i int) error {
			if _, err := s.Ensure(ctx, jobs.EnsureParams{Job: jobs.Job{ID: ids[i], Type: "bench.v1.Echo"}}); err != nil {
				return err
			}
			if _, err := s.Start(ctx, jobs.StartParams{ID: ids[i], Attempt: 1, Lease: "bench", LeaseFor: time.Minute}); err != nil {
				return err
			}
			_, err := s.Succeed(ctx, jobs.SucceedParams{ID: ids[i], ResultType: "bench.v1.Result", Result: []byte("ok")})
			return err
		})
		b.ReportMetric(float64(n)/elapsed.Seconds(), "jobs/s")
	})
	b.Run("Get", func(b *testing.B) {
		s := newStore(b)
		const jobsN = 5000
		ids := seed(ctx, b, s, jobsN)
		n := max(b.N, benchMinOps)
		b.ResetTimer()
		elapsed := parallel(b, n, func(i int) error {
			_, err := s.Get(ctx, ids[i%jobsN])
			return err
		})
		b.ReportMetric(float64(n)/elapsed.Seconds(), "gets/s")
	})
}

func benchJob(i int) jobs.Job {
	return jobs.Job{
		Type:    "bench.v1.Echo",
		Payload: fmt.Appendf(nil, "payload %d", i),
		Labels:  map[string]string{"bench": "yes"},
	}
}

// seed enqueues n jobs (concurrently, untimed) and returns their IDs.
func seed(ctx context.Context, b *testing.B, s jobs.Store, n int) []string {
	b.Helper()
	ids := make([]string, n)
	parallel(b, n, func(i int) error {
		j, _, err := s.Enqueue(ctx, jobs.EnqueueParams{Job: benchJob(i)})
		if err == nil {
			ids[i] = j.ID
		}
		return err
	})
	return ids
}

// parallel runs fn(0..n-1) on BenchWorkers goroutines and returns the
// wall time; the first error fails the benchmark.
func parallel(b *testing.B, n int, fn func(i int) error) time.Duration {
	b.Helper()
	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	start := time.Now()
	for range BenchWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					errOnce.Do(func() { first = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if first != nil {
		b.Fatal(first)
	}
	return elapsed
}
