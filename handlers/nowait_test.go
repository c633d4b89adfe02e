package handlers

import (
	"context"
	"errors"
	"testing"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/protobuf/proto"
)

// Under WithoutWaiting, a rate limit with no token left answers at once
// with a BusyError saying when one will be there, and gives the token back;
// with tokens it runs as before.
func TestRateLimitWithoutWaiting(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), block: true}
	lim := rate.NewLimiter(2, 1)
	calls := 0
	h := RateLimit(&LocalLimiter{limit: lim.Limit(), burst: lim.Burst(), clock: clock, buckets: map[string]*bucket{"t": {lim: lim}}}, nil, clock)(okHandler(&calls))
	ctx := WithoutWaiting(context.Background())
	if _, err := h(ctx, &Request{Type: "t"}); err != nil {
		t.Fatal(err)
	}
	_, err := h(ctx, &Request{Type: "t"})
	var be *BusyError
	if !errors.As(err, &be) || !errors.Is(err, ErrBusy) || be.RetryAfter != 500*time.Millisecond {
		t.Fatalf("err = %v, want a BusyError (ErrBusy) with RetryAfter 500ms", err)
	}
	if calls != 1 || len(clock.waits) != 0 {
		t.Fatalf("handler ran %d times and waited %v, want 1 run and no wait", calls, clock.waits)
	}
	// The token was given back: half a second on, one is there again.
	if !lim.AllowN(clock.now.Add(500*time.Millisecond), 1) {
		t.Fatal("the refused attempt kept its token")
	}
}

// Under WithoutWaiting, a concurrency limit with no slot free answers at
// once with a BusyError; a caller that may wait still waits for the slot.
func TestConcurrencyWithoutWaiting(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	h := Concurrency(1)(func(ctx context.Context, req *Request) (proto.Message, error) {
		if req.ID == "first" {
			close(started)
			<-release
		}
		return nil, nil
	})
	first := make(chan error, 1)
	go func() { _, err := h(context.Background(), &Request{ID: "first", Type: "t"}); first <- err }()
	<-started
	if _, err := h(WithoutWaiting(context.Background()), &Request{ID: "second", Type: "t"}); !errors.Is(err, ErrBusy) {
		t.Fatalf("err = %v, want ErrBusy while the only slot is taken", err)
	}
	waited := make(chan error, 1)
	go func() { _, err := h(context.Background(), &Request{ID: "third", Type: "t"}); waited <- err }()
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-waited; err != nil {
		t.Fatalf("a waiting caller got %v once the slot freed", err)
	}
	if _, err := h(WithoutWaiting(context.Background()), &Request{ID: "fourth", Type: "t"}); err != nil {
		t.Fatalf("with the slot free: %v", err)
	}
}
