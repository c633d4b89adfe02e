package ingest_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/ingest"
	"github.com/courierq/courier/internal/testenv"
	"github.com/courierq/courier/jobs"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
)

// TestTimingRateLimit50PerSecondBurst5Takes9900msFor500Jobs is the one test
// with a timing threshold, on purpose: it is the done-when check that a
// handler limited to 50/s with burst 5 needs at least (500-5)/50 = 9.9 s for
// 500 jobs, from the first publish to the last SUCCEEDED. The bound is a
// minimum, so a slow machine cannot make it flaky.
// It takes about 10 s and is never skipped in -short mode.
func TestTimingRateLimit50PerSecondBurst5Takes9900msFor500Jobs(t *testing.T) {
	t.Parallel()
	const n = 500
	var mu sync.Mutex
	var starts []time.Time
	reg := handlers.NewRegistry()
	err := handlers.Register(reg, func(ctx context.Context, job *handlers.Job[*demov1.Echo]) (*demov1.EchoResult, error) {
		mu.Lock()
		starts = append(starts, time.Now())
		mu.Unlock()
		return &demov1.EchoResult{Message: job.Payload.GetMessage()}, nil
	}, handlers.Config{RatePerSecond: 50, Burst: 5, MinBackoff: time.Second, MaxBackoff: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, testenv.SQLite, reg, ingest.Config{})
	ctx := testCtx(t)

	begin := time.Now()
	ids := make([]string, 0, n)
	for range n {
		id, err := s.pub.Publish(ctx, &demov1.Echo{Message: "rate"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for _, id := range ids {
		if job := waitState(ctx, t, s.store, id, jobs.Succeeded); job.State != jobs.Succeeded {
			t.Fatalf("job %s: %+v", id, job)
		}
	}
	total := time.Since(begin)

	mu.Lock()
	defer mu.Unlock()
	if len(starts) != n {
		t.Fatalf("handler ran %d times, want %d", len(starts), n)
	}
	slices.SortFunc(starts, func(a, b time.Time) int { return a.Compare(b) })
	spread := starts[n-1].Sub(starts[0])
	// Logged, not checked: handler starts trail their tokens by a store write
	// whose latency varies, so their spread can be a little under 9.9 s.
	t.Logf("500 jobs at 50/s burst 5: %v from first publish to last SUCCEEDED; handler starts spread over %v", total.Round(time.Millisecond), spread.Round(time.Millisecond))
	if total < 9900*time.Millisecond {
		t.Fatalf("500 jobs took %v, want at least 9.9s", total)
	}
}
