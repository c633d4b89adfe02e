package handlers

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"
)

type ctxKey struct{}

func TestAdmit(t *testing.T) {
	var got any
	h := Admit()(func(ctx context.Context, _ *Request) (proto.Message, error) {
		got = ctx.Value(ctxKey{})
		return nil, nil
	})
	// Admit swaps the context.
	req := &Request{Admit: func(ctx context.Context) (context.Context, error) {
		return context.WithValue(context.Background(), ctxKey{}, "run"), nil
	}}
	if _, err := h(context.Background(), req); err != nil || got != "run" {
		t.Fatalf("err %v, handler saw %v; want the admitted context", err, got)
	}
	// An Admit error stops the attempt.
	got = nil
	stop := errors.New("not now")
	req.Admit = func(context.Context) (context.Context, error) { return nil, stop }
	if _, err := h(context.Background(), req); err != stop || got != nil {
		t.Fatalf("err %v, handler saw %v; want the Admit error and no run", err, got)
	}
	// No Admit: runs with the caller's context.
	if _, err := h(context.WithValue(context.Background(), ctxKey{}, "caller"), &Request{}); err != nil || got != "caller" {
		t.Fatalf("err %v, handler saw %v", err, got)
	}
}
