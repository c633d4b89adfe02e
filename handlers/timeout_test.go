package handlers

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

func TestTimeout(t *testing.T) {
	h := Timeout(time.Millisecond)(func(ctx context.Context, _ *Request) (proto.Message, error) {
		<-ctx.Done() // awaits the deadline: an event, not a sleep
		return nil, ctx.Err()
	})
	_, err := h(context.Background(), &Request{})
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrTimeout wrapping DeadlineExceeded", err)
	}
	if IsPermanent(err) {
		t.Fatal("a timeout must be retryable")
	}
}

func TestTimeoutPassesThrough(t *testing.T) {
	want := errors.New("boom")
	var deadline bool
	h := Timeout(time.Hour)(func(ctx context.Context, _ *Request) (proto.Message, error) {
		_, deadline = ctx.Deadline()
		return nil, want
	})
	if _, err := h(context.Background(), &Request{}); err != want {
		t.Fatalf("err = %v, want it unchanged", err)
	}
	if !deadline {
		t.Fatal("handler ctx has no deadline")
	}
	h = Timeout(0)(func(ctx context.Context, _ *Request) (proto.Message, error) {
		_, deadline = ctx.Deadline()
		return nil, nil
	})
	h(context.Background(), &Request{})
	if deadline {
		t.Fatal("Timeout(0) set a deadline")
	}
}
