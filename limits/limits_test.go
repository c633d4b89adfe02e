package limits_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/internal/testenv"
	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/limits"
)

func shared(t testing.TB) jobs.Limits {
	t.Helper()
	return testenv.Store(t, testenv.Postgres).(jobs.Limits)
}

// TestTokensFleetWide: three Tokens on one store (three replicas, each with
// its own batches) hand out tokens at the GCRA bound of one bucket: the
// k-th token (by the time it is free) is free no sooner than
// (k - burst) / rate after the first call. The bound cannot flake: a slow
// machine only makes tokens later.
func TestTokensFleetWide(t *testing.T) {
	const (
		rate    = 200.0
		burst   = 10
		replica = 3
		callers = 8 // per replica
		want    = 300
	)
	s := shared(t)
	var ts []*limits.Tokens
	for range replica {
		tk, err := limits.NewTokens(limits.TokensConfig{Store: s, Name: "rate:test", PerSecond: rate, Burst: burst, MaxWait: 200 * time.Millisecond, Queue: true})
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, tk)
	}
	if b := ts[0].Batch(); b != 4 {
		t.Fatalf("Batch() = %d, want 4 (200/s for 20ms)", b)
	}
	ctx := context.Background()
	start := time.Now()
	var (
		mu    sync.Mutex
		times []time.Time
		busy  int
	)
	var wg sync.WaitGroup
	for _, tk := range ts {
		for range callers {
			wg.Go(func() {
				for {
					mu.Lock()
					done := len(times) >= want
					mu.Unlock()
					if done {
						return
					}
					d, _, err := tk.Reserve(ctx, "k")
					var be *handlers.BusyError
					if errors.As(err, &be) {
						mu.Lock()
						busy++
						mu.Unlock()
						time.Sleep(be.RetryAfter) // the caller's own wait, not synchronisation
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					at := time.Now().Add(d)
					time.Sleep(d)
					mu.Lock()
					times = append(times, at)
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	for k, at := range times {
		// token k (from 0) of a bucket full at start is free at
		// start + (k+1-burst)/rate at the earliest; 1 token of slack for
		// the two clocks' rounding.
		earliest := start.Add(time.Duration(float64(k-burst) / rate * float64(time.Second)))
		if at.Before(earliest) {
			t.Fatalf("token %d was free %v after the start, before the fleet-wide bound %v (rate %v/s, burst %d)", k, at.Sub(start), earliest.Sub(start), rate, burst)
		}
	}
	elapsed := times[len(times)-1].Sub(start)
	t.Logf("%d tokens across %d replicas in %v (%.0f/s, limit %v/s); %d refusals put off", len(times), replica, elapsed, float64(len(times))/elapsed.Seconds(), rate, busy)
}

// TestTokensKeys: each key has a bucket of its own.
func TestTokensKeys(t *testing.T) {
	s := shared(t)
	tk, err := limits.NewTokens(limits.TokensConfig{Store: s, Name: "rate:keys", PerSecond: 1, Burst: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c"} {
		if d, _, err := tk.Reserve(ctx, k); err != nil || d != 0 {
			t.Fatalf("first token of key %s: wait %v, err %v; want one at once", k, d, err)
		}
	}
	_, _, err = tk.Reserve(ctx, "a")
	var be *handlers.BusyError
	if !errors.As(err, &be) || be.RetryAfter <= 0 || be.RetryAfter > time.Second {
		t.Fatalf("second token of key a at 1/s with MaxWait 0: %v; want a BusyError with RetryAfter in (0, 1s]", err)
	}
}

// TestTokensQueue: refused callers get places spaced at the rate, not one
// time for all.
func TestTokensQueue(t *testing.T) {
	s := shared(t)
	tk, err := limits.NewTokens(limits.TokensConfig{Store: s, Name: "rate:queue", PerSecond: 10, Burst: 1, MaxWait: 0, Queue: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, _, err := tk.Reserve(ctx, ""); err != nil {
		t.Fatal(err)
	}
	var prev time.Duration
	for i := range 5 {
		_, _, err := tk.Reserve(ctx, "")
		var be *handlers.BusyError
		if !errors.As(err, &be) {
			t.Fatalf("refusal %d: %v, want a BusyError", i, err)
		}
		if i > 0 && be.RetryAfter-prev < 90*time.Millisecond {
			t.Fatalf("refusal %d is told to come back in %v, the one before in %v; want places 100ms apart", i, be.RetryAfter, prev)
		}
		prev = be.RetryAfter
	}
}

// TestSlots: a fleet-wide bound over replicas; a dead holder's slot frees
// itself when its lease lapses.
func TestSlots(t *testing.T) {
	s := shared(t)
	ctx := context.Background()
	var sl []*limits.Slots
	for range 2 {
		x, err := limits.NewSlots(limits.SlotsConfig{Store: s, Name: "concurrency:test", Max: 2, Lease: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { x.Close() })
		sl = append(sl, x)
	}
	r1, err := sl[0].Acquire(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sl[1].Acquire(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	_, err = sl[1].Acquire(ctx, "k")
	if !errors.Is(err, handlers.ErrBusy) {
		t.Fatalf("third slot of 2 across two replicas: %v; want ErrBusy", err)
	}
	if _, err := sl[0].Acquire(ctx, "other"); err != nil {
		t.Fatalf("a slot of another key: %v", err)
	}
	r1()
	r1() // twice is fine
	// The released slot stays with its replica for Idle (20ms), for that
	// replica's next caller, then goes back to the store.
	acquire := func(x *limits.Slots, key, what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := x.Acquire(ctx, key)
			if err == nil {
				return
			}
			if !errors.Is(err, handlers.ErrBusy) || time.Now().After(deadline) {
				t.Fatalf("%s: %v", what, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	acquire(sl[1], "k", "the other replica, after a release")
	// The slots are held and renewed (lease 1s, renewed every 333ms): past
	// a lease they are still taken.
	time.Sleep(1500 * time.Millisecond) // lets a lease lapse if renewals did not happen
	if _, err := sl[0].Acquire(ctx, "k"); !errors.Is(err, handlers.ErrBusy) {
		t.Fatalf("after 1.5 lease: %v; want ErrBusy (renewed slots)", err)
	}
	// A dead worker's slots (taken, never renewed): free once their lease
	// lapses.
	n, err := s.TakeSlots(ctx, jobs.TakeSlotsParams{Name: `concurrency:test "dead"`, Max: 2, Holders: []string{"dead-1", "dead-2"}, LeaseFor: 300 * time.Millisecond})
	if err != nil || n != 2 {
		t.Fatalf("TakeSlots: %v %v", n, err)
	}
	if _, err := sl[0].Acquire(ctx, "dead"); !errors.Is(err, handlers.ErrBusy) {
		t.Fatalf("the dead holder's slot, before its lease lapsed: %v; want ErrBusy", err)
	}
	acquire(sl[0], "dead", "a dead holder's slot, 10s after its 300ms lease")
}

// TestSlotsBatch: a replica takes slots in batches and keeps a released one
// for its next caller: many acquisitions, few round trips, and never more
// than Max held across two replicas.
func TestSlotsBatch(t *testing.T) {
	s := shared(t)
	ctx := context.Background()
	var sl []*limits.Slots
	for range 2 {
		x, err := limits.NewSlots(limits.SlotsConfig{Store: s, Name: "concurrency:batch", Max: 16, Batch: 4})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { x.Close() })
		sl = append(sl, x)
	}
	var mu sync.Mutex
	running, most, done := 0, 0, 0
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Go(func() {
			for range 50 {
				release, err := sl[i%2].Acquire(ctx, "")
				if errors.Is(err, handlers.ErrBusy) {
					time.Sleep(time.Millisecond)
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				running++
				most = max(most, running)
				mu.Unlock()
				time.Sleep(time.Millisecond) // the job
				mu.Lock()
				running--
				done++
				mu.Unlock()
				release()
			}
		})
	}
	wg.Wait()
	if most > 16 {
		t.Fatalf("%d ran at once with 16 slots", most)
	}
	t.Logf("%d acquisitions, at most %d at once (16 slots)", done, most)
}

// BenchmarkTokens measures a token's cost when the limit is far above the
// load: the shared limiter (batches of up to Batch tokens per round trip)
// against the local one.
func BenchmarkTokens(b *testing.B) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		lim  func(b *testing.B) handlers.Limiter
	}{
		{"local", func(*testing.B) handlers.Limiter { return handlers.NewLocalLimiter(1e6, 1000, nil) }},
		{"shared", func(b *testing.B) handlers.Limiter {
			tk, err := limits.NewTokens(limits.TokensConfig{Store: shared(b), Name: "rate:bench", PerSecond: 1e6, Burst: 1000, MaxWait: time.Second, Queue: true})
			if err != nil {
				b.Fatal(err)
			}
			return tk
		}},
		{"shared-batch1", func(b *testing.B) handlers.Limiter {
			tk, err := limits.NewTokens(limits.TokensConfig{Store: shared(b), Name: "rate:bench", PerSecond: 1e6, Burst: 1000, MaxWait: time.Second, Queue: true, Batch: 1})
			if err != nil {
				b.Fatal(err)
			}
			return tk
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			lim := c.lim(b)
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, _, err := lim.Reserve(ctx, "k"); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

// TestLine: a local limiter under Line makes no one wait past maxWait;
// refused callers get places one interval apart, and their tokens back.
func TestLine(t *testing.T) {
	lim, err := limits.Line(handlers.NewLocalLimiter(10, 1, nil), 10, 250*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i, want := range []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond} {
		d, _, err := lim.Reserve(ctx, "k")
		if err != nil || d > want || d < want-20*time.Millisecond {
			t.Fatalf("reserve %d: wait %v, %v; want about %v", i, d, err, want)
		}
	}
	var prev time.Duration
	for i := range 3 {
		_, _, err := lim.Reserve(ctx, "k")
		var be *handlers.BusyError
		if !errors.As(err, &be) {
			t.Fatalf("refusal %d: %v; want a BusyError", i, err)
		}
		if i > 0 && be.RetryAfter-prev < 90*time.Millisecond {
			t.Fatalf("refusal %d comes back in %v, the one before in %v; want places 100ms apart", i, be.RetryAfter, prev)
		}
		prev = be.RetryAfter
	}
	// Each key has its own bucket and line.
	if _, _, err := lim.Reserve(ctx, "other"); err != nil {
		t.Fatalf("another key: %v", err)
	}
}
