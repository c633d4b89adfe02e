package jobstest

import (
	"context"
	"fmt"
	"strings"
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
// (Ensure+Start+Succeed; for a jobs.StartSucceeder also Get+StartSucceed,
// a quick run) and Get/s. Each of its sub-benchmarks does at
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
	if _, ok := newStore(b).(jobs.StartSucceeder); ok {
		b.Run("QuickRun", func(b *testing.B) {
			// What a worker does per delivered message of a quick run
			// (jobs.StartSucceeder): Get, then StartSucceed.
			s := newStore(b)
			q := s.(jobs.StartSucceeder)
			n := max(b.N, benchMinOps)
			ids := seed(ctx, b, s, n)
			b.ResetTimer()
			elapsed := parallel(b, n, func(i int) error {
				if _, err := s.Get(ctx, ids[i]); err != nil {
					return err
				}
				_, err := q.StartSucceed(ctx, jobs.StartSucceedParams{ID: ids[i], Attempt: 1, Started: time.Now(),
					ResultType: "bench.v1.Result", Result: []byte("ok")})
				return err
			})
			b.ReportMetric(float64(n)/elapsed.Seconds(), "jobs/s")
		})
	}
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

// CountsJobs is how many jobs BenchmarkCounts measures Counts on.
const CountsJobs = 1_000_000

// CountsTypes is how many job types BenchmarkCounts's seed spreads the jobs
// over.
const CountsTypes = 10

// SeedMix is the share of seeded jobs in each state, in the order of
// jobs.States(), in percent: a store with history (mostly ended jobs) and a
// backlog.
var SeedMix = [5]int{10, 5, 70, 10, 5}

// BenchmarkCounts measures Counts (what the dashboard and /metrics call
// every few seconds) on a store holding CountsJobs jobs, which seed puts
// there with the store's fast bulk insert: CountsTypes types
// ("bench.v1.T0", ...) in the states of SeedMix, counters included. It
// reports milliseconds per call.
func BenchmarkCounts(b *testing.B, newStore func(tb testing.TB) jobs.Store, seed func(tb testing.TB, s jobs.Store, n int)) {
	ctx := context.Background()
	s := newStore(b)
	start := time.Now()
	seed(b, s, CountsJobs)
	b.Logf("seeded %d jobs in %v", CountsJobs, time.Since(start).Round(time.Millisecond))
	cs, err := s.Counts(ctx)
	if err != nil {
		b.Fatal(err)
	}
	total := 0
	for _, c := range cs {
		for _, n := range c.States {
			total += n
		}
		if c.States[jobs.Queued] > 0 && c.OldestQueued.IsZero() {
			b.Fatalf("Counts of %s: no OldestQueued with %d queued", c.Type, c.States[jobs.Queued])
		}
	}
	if len(cs) != CountsTypes || total != CountsJobs {
		b.Fatalf("Counts after seeding: %d types, %d jobs; want %d, %d", len(cs), total, CountsTypes, CountsJobs)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Counts(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/call")
}

// SeedStateSQL returns an SQL expression (for SQLite and PostgreSQL) of the
// state BenchmarkCounts's seed gives job number i (an integer expression),
// following SeedMix; the job's type is 'bench.v1.T' || (i % CountsTypes).
func SeedStateSQL(i string) string {
	var b strings.Builder
	b.WriteString("CASE")
	upTo := 0
	for k, st := range jobs.States() {
		upTo += SeedMix[k]
		fmt.Fprintf(&b, " WHEN (%s) %% 100 < %d THEN '%s'", i, upTo, st)
	}
	b.WriteString(" END")
	return b.String()
}
