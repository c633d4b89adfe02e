package handlers

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/protobuf/proto"
)

// fakeClock stands still at now; After records the wait asked for and fires
// at once (or never, when block is set).
type fakeClock struct {
	now   time.Time
	waits []time.Duration
	block bool
}

func (c *fakeClock) Now() time.Time { return c.now }
func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.waits = append(c.waits, d)
	ch := make(chan time.Time, 1)
	if !c.block {
		ch <- c.now.Add(d)
	}
	return ch
}

func okHandler(calls *int) Handler {
	return func(context.Context, *Request) (proto.Message, error) {
		*calls++
		return nil, nil
	}
}

func TestRateLimitWaitsForTokens(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	lim := rate.NewLimiter(50, 5)
	calls := 0
	h := RateLimit(lim, clock)(okHandler(&calls))
	for i := range 8 {
		if _, err := h(context.Background(), &Request{Type: "t"}); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if calls != 8 {
		t.Fatalf("handler ran %d times, want 8", calls)
	}
	// Burst 5 runs at once; then one token each 20ms, all reserved at the same instant.
	want := []time.Duration{20 * time.Millisecond, 40 * time.Millisecond, 60 * time.Millisecond}
	if len(clock.waits) != len(want) {
		t.Fatalf("waits %v, want %v", clock.waits, want)
	}
	for i := range want {
		if clock.waits[i] != want[i] {
			t.Fatalf("wait %d = %v, want %v (all: %v)", i, clock.waits[i], want[i], clock.waits)
		}
	}
	// The model: at a fixed instant the limiter is empty.
	if lim.AllowN(clock.now, 1) {
		t.Fatal("limiter allowed a token at the same instant after 8 reservations")
	}
}

func TestRateLimitCancelGivesTokenBack(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), block: true}
	lim := rate.NewLimiter(1, 1)
	calls := 0
	h := RateLimit(lim, clock)(okHandler(&calls))
	if _, err := h(context.Background(), &Request{Type: "t"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := h(ctx, &Request{Type: "t"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if calls != 1 {
		t.Fatalf("handler ran %d times, want 1", calls)
	}
	// The cancelled reservation was returned: one second later exactly one token is there.
	if !lim.AllowN(clock.now.Add(time.Second), 1) {
		t.Fatal("token of the cancelled wait was not given back")
	}
}

func TestRateLimitZeroBurst(t *testing.T) {
	calls := 0
	h := RateLimit(rate.NewLimiter(10, 0), &fakeClock{})(okHandler(&calls))
	if _, err := h(context.Background(), &Request{Type: "t"}); err == nil || calls != 0 {
		t.Fatalf("err = %v, calls = %d; want an error and no call", err, calls)
	}
}

func TestRateLimitObservedReportsWaits(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var got []time.Duration
	calls := 0
	h := RateLimitObserved(rate.NewLimiter(50, 2), clock, func(typ string, d time.Duration) {
		if typ != "t" {
			t.Errorf("onWait type %q, want t", typ)
		}
		got = append(got, d)
	}, nil)(okHandler(&calls))
	for range 4 {
		if _, err := h(context.Background(), &Request{Type: "t"}); err != nil {
			t.Fatal(err)
		}
	}
	want := []time.Duration{0, 0, 20 * time.Millisecond, 40 * time.Millisecond}
	if len(got) != len(want) {
		t.Fatalf("waits reported %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("waits reported %v, want %v", got, want)
		}
	}
}

// TestRateLimitObservedCountsWaiting: a request that must wait is counted
// while it waits and uncounted when it gets its token or gives up.
func TestRateLimitObservedCountsWaiting(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	waiting := 0
	var seen []int
	calls := 0
	h := RateLimitObserved(rate.NewLimiter(50, 1), clock, nil, func(typ string, delta int) {
		waiting += delta
		seen = append(seen, waiting)
	})(okHandler(&calls))
	for range 3 {
		if _, err := h(context.Background(), &Request{Type: "t"}); err != nil {
			t.Fatal(err)
		}
	}
	// The first had a token; the next two each waited: 1, 0, 1, 0.
	if want := []int{1, 0, 1, 0}; fmt.Sprint(seen) != fmt.Sprint(want) || waiting != 0 {
		t.Fatalf("waiting counts %v (now %d), want %v then 0", seen, waiting, want)
	}
	clock.block = true // the token never comes: only ctx can end the wait
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h(ctx, &Request{Type: "t"}); err == nil {
		t.Fatal("a cancelled wait should fail")
	}
	if waiting != 0 {
		t.Fatalf("after a cancelled wait, %d still counted as waiting", waiting)
	}
}
