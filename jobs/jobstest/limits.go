package jobstest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/courierq/courier/jobs"
)

// testLimits checks jobs.Limits, for stores that implement it. The store's
// clock is its own (the database's), so the checks hold for any time the
// calls take: they are the GCRA's invariants, not exact counts.
func testLimits(ctx context.Context, t *testing.T, s jobs.Store) {
	l, ok := s.(jobs.Limits)
	if !ok {
		t.Skip("the store does not implement jobs.Limits (optional)")
	}
	const T = 100 * time.Millisecond
	take := func(bucket string, burst, want int, maxWait time.Duration, queue bool) jobs.TokenGrant {
		t.Helper()
		g, err := l.TakeTokens(ctx, jobs.TakeTokensParams{Bucket: bucket, Interval: T, Burst: burst, Want: want, MaxWait: maxWait, Queue: queue})
		if err != nil {
			t.Fatalf("TakeTokens(%s): %v", bucket, err)
		}
		if g.Granted < 0 || g.Granted > want {
			t.Fatalf("TakeTokens(%s, want %d): granted %d", bucket, want, g.Granted)
		}
		if g.Granted > 0 && g.First+time.Duration(g.Granted-1)*T > maxWait+time.Millisecond {
			t.Fatalf("TakeTokens(%s, maxWait %v): %d tokens, the last free in %v, past maxWait", bucket, maxWait, g.Granted, g.First+time.Duration(g.Granted-1)*T)
		}
		return g
	}
	// A new bucket is full: the burst at once, no more.
	if g := take("a", 3, 5, 0, false); g.Granted != 3 || g.First+2*T > time.Millisecond {
		t.Fatalf("a new bucket of burst 3, asked for 5 free now: %+v; want 3 free now", g)
	}
	g := take("a", 3, 1, 0, false)
	if g.Granted != 0 || g.RetryAfter <= 0 || g.RetryAfter > T {
		t.Fatalf("an empty bucket, asked for one free now: %+v; want none and a RetryAfter in (0, %v]", g, T)
	}
	// A refusal takes nothing: the next token is no further off.
	if g2 := take("a", 3, 1, 0, false); g2.Granted != 0 || g2.RetryAfter > g.RetryAfter {
		t.Fatalf("a second refusal: %+v; the first said %v", g2, g.RetryAfter)
	}
	// Within a wait, tokens one interval apart.
	if g := take("a", 3, 5, 350*time.Millisecond, false); g.Granted < 1 || g.First <= 0 {
		t.Fatalf("asked for 5 within 350ms of an empty bucket: %+v; want some, the first not free yet", g)
	}
	// Keys are separate buckets.
	if g := take("b", 1, 1, 0, false); g.Granted != 1 {
		t.Fatalf("another bucket: %+v; want its token", g)
	}
	// The line: each refusal with Queue gets a place an interval after
	// the one before.
	var prev time.Duration
	for i := range 3 {
		g := take("b", 1, 1, 0, true)
		if g.Granted != 0 {
			t.Fatalf("refusal %d: %+v", i, g)
		}
		if i > 0 && g.RetryAfter-prev < T-10*time.Millisecond {
			t.Fatalf("refusal %d: come back in %v, the one before in %v; want places %v apart", i, g.RetryAfter, prev, T)
		}
		prev = g.RetryAfter
	}
	for _, p := range []jobs.TakeTokensParams{
		{Bucket: "", Interval: T, Burst: 1, Want: 1},
		{Bucket: "x", Interval: 0, Burst: 1, Want: 1},
		{Bucket: "x", Interval: T, Burst: 0, Want: 1},
		{Bucket: "x", Interval: T, Burst: 1, Want: 0},
	} {
		if _, err := l.TakeTokens(ctx, p); !errors.Is(err, jobs.ErrInvalidArgument) {
			t.Errorf("TakeTokens(%+v): %v; want ErrInvalidArgument", p, err)
		}
	}

	// Slots: at most Max live holders; the same holder again renews; a
	// release frees one; a lapsed lease frees one.
	slot := func(holder string, lease time.Duration) bool {
		t.Helper()
		n, err := l.TakeSlots(ctx, jobs.TakeSlotsParams{Name: "s", Max: 2, Holders: []string{holder}, LeaseFor: lease})
		if err != nil || n < 0 || n > 1 {
			t.Fatalf("TakeSlots(%s): %d, %v", holder, n, err)
		}
		return n == 1
	}
	if !slot("h1", time.Minute) || !slot("h2", time.Minute) {
		t.Fatal("the first two of two slots were refused")
	}
	if slot("h3", time.Minute) {
		t.Fatal("a third of two slots was given")
	}
	if !slot("h1", time.Minute) {
		t.Fatal("a holder taking its slot again was refused")
	}
	if err := l.RenewSlots(ctx, []string{"h1", "h2", "unknown"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := l.ReleaseSlots(ctx, []string{"h1"}); err != nil {
		t.Fatal(err)
	}
	if !slot("h3", 50*time.Millisecond) {
		t.Fatal("a released slot was not given")
	}
	if slot("h4", time.Minute) {
		t.Fatal("a slot was given while two live ones are held")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !slot("h4", time.Minute) { // h3's 50ms lease lapses
		if time.Now().After(deadline) {
			t.Fatal("a slot whose 50ms lease lapsed 10s ago is still held")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Several holders in one call: as many as the limit allows, in order.
	if n, err := l.TakeSlots(ctx, jobs.TakeSlotsParams{Name: "batch", Max: 3, Holders: []string{"b1", "b2"}, LeaseFor: time.Minute}); err != nil || n != 2 {
		t.Fatalf("two of three slots in one call: %d, %v", n, err)
	}
	if n, err := l.TakeSlots(ctx, jobs.TakeSlotsParams{Name: "batch", Max: 3, Holders: []string{"b3", "b4", "b5"}, LeaseFor: time.Minute}); err != nil || n != 1 {
		t.Fatalf("three more of three slots, two taken: %d, %v; want 1", n, err)
	}
	if err := l.ReleaseSlots(ctx, []string{"b1", "b2", "b3"}); err != nil {
		t.Fatal(err)
	}
	if n, err := l.TakeSlots(ctx, jobs.TakeSlotsParams{Name: "batch", Max: 3, Holders: []string{"b4", "b5", "b6", "b7"}, LeaseFor: time.Minute}); err != nil || n != 3 {
		t.Fatalf("after releasing them all: %d, %v; want 3", n, err)
	}
	for _, p := range []jobs.TakeSlotsParams{
		{Name: "s", Max: 0, Holders: []string{"h"}, LeaseFor: time.Minute},
		{Name: "s", Max: 1, LeaseFor: time.Minute},
		{Name: "", Max: 1, Holders: []string{"h"}, LeaseFor: time.Minute},
	} {
		if _, err := l.TakeSlots(ctx, p); !errors.Is(err, jobs.ErrInvalidArgument) {
			t.Errorf("TakeSlots(%+v): %v; want ErrInvalidArgument", p, err)
		}
	}
}
