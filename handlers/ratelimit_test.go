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
	h := RateLimit(&LocalLimiter{limit: lim.Limit(), burst: lim.Burst(), clock: clock, buckets: map[string]*bucket{"t": {lim: lim}}}, nil, clock)(okHandler(&calls))
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
	h := RateLimit(&LocalLimiter{limit: lim.Limit(), burst: lim.Burst(), clock: clock, buckets: map[string]*bucket{"t": {lim: lim}}}, nil, clock)(okHandler(&calls))
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
	h := RateLimit(NewLocalLimiter(10, 0, &fakeClock{}), nil, &fakeClock{})(okHandler(&calls))
	if _, err := h(context.Background(), &Request{Type: "t"}); err == nil || calls != 0 {
		t.Fatalf("err = %v, calls = %d; want an error and no call", err, calls)
	}
}

// TestLabelKeyBuckets: each label value has a bucket of its own, so one
// busy key does not make the others wait.
func TestLabelKeyBuckets(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	calls := 0
	h := RateLimit(NewLocalLimiter(1, 1, clock), LabelKey("customer"), clock)(okHandler(&calls))
	for _, c := range []string{"a", "a", "a", "b", "c"} {
		if _, err := h(context.Background(), &Request{Type: "t", Labels: map[string]string{"customer": c}}); err != nil {
			t.Fatal(err)
		}
	}
	// a waited 1s and 2s for its second and third; b and c had a token each.
	if want := []time.Duration{time.Second, 2 * time.Second}; fmt.Sprint(clock.waits) != fmt.Sprint(want) {
		t.Fatalf("waits %v, want %v", clock.waits, want)
	}
}
