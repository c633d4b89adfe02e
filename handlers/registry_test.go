package handlers_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/courierq/courier/handlers"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
)

func TestRegisterAndRun(t *testing.T) {
	reg := handlers.NewRegistry()
	var progress []float64
	err := handlers.Register(reg, func(ctx context.Context, job *handlers.Job[*demov1.Echo]) (*demov1.EchoResult, error) {
		job.Progress(ctx, 2, "clamped")
		return &demov1.EchoResult{Message: job.Payload.GetMessage() + "/" + job.ID}, nil
	}, handlers.Config{Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	e, ok := reg.Lookup("courier.demo.v1.Echo")
	if !ok {
		t.Fatalf("Echo not registered; types: %v", reg.Types())
	}
	if e.Config.MaxAttempts != handlers.DefaultMaxAttempts || e.Config.MinBackoff != handlers.DefaultMinBackoff {
		t.Fatalf("defaults not applied: %+v", e.Config)
	}
	data, _ := proto.Marshal(&demov1.Echo{Message: "hi"})
	payload, err := e.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.Handler(context.Background(), &handlers.Request{
		ID: "j1", Type: e.Type, Attempt: 1, Payload: payload,
		Progress: func(_ context.Context, f float64, _ string) error { progress = append(progress, f); return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.(*demov1.EchoResult).GetMessage(); got != "hi/j1" {
		t.Fatalf("result %q", got)
	}
	if len(progress) != 1 || progress[0] != 1 {
		t.Fatalf("progress %v, want [1]", progress)
	}
	if _, err := e.Decode([]byte{0xff, 0xff}); err == nil || !strings.Contains(err.Error(), "courier.demo.v1.Echo") {
		t.Fatalf("Decode of bad bytes: %v", err)
	}
}

func TestRegisterErrors(t *testing.T) {
	reg := handlers.NewRegistry()
	fn := func(ctx context.Context, job *handlers.Job[*demov1.Echo]) (*demov1.EchoResult, error) {
		return nil, nil
	}
	if err := handlers.Register(reg, fn, handlers.Config{}); err != nil {
		t.Fatal(err)
	}
	if err := handlers.Register(reg, fn, handlers.Config{}); !errors.Is(err, handlers.ErrDuplicate) {
		t.Fatalf("second Register: %v, want ErrDuplicate", err)
	}
	for _, tc := range []struct {
		field string
		cfg   handlers.Config
	}{
		{"RatePerSecond", handlers.Config{RatePerSecond: -1}},
		{"Concurrency", handlers.Config{Concurrency: -2}},
		{"MinBackoff", handlers.Config{MinBackoff: time.Hour}},
		{"MaxAttempts", handlers.Config{MaxAttempts: -1}},
		{"MaxBackoff", handlers.Config{MinBackoff: time.Minute, MaxBackoff: time.Second}},
	} {
		t.Run(tc.field, func(t *testing.T) {
			err := handlers.Register(handlers.NewRegistry(), fn, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), "Config."+tc.field) || !strings.HasPrefix(err.Error(), "handlers: ") {
				t.Fatalf("err = %v, want one naming Config.%s", err, tc.field)
			}
		})
	}
}

func TestNilResultIsNoResult(t *testing.T) {
	reg := handlers.NewRegistry()
	handlers.Register(reg, func(ctx context.Context, job *handlers.Job[*demov1.Echo]) (*demov1.EchoResult, error) {
		return nil, nil
	}, handlers.Config{})
	e, _ := reg.Lookup("courier.demo.v1.Echo")
	res, err := e.Handler(context.Background(), &handlers.Request{Payload: &demov1.Echo{}})
	if err != nil || res != nil {
		t.Fatalf("res, err = %v, %v; want nil, nil", res, err)
	}
}

func TestChainOrder(t *testing.T) {
	var order []string
	mw := func(name string) handlers.Middleware {
		return func(next handlers.Handler) handlers.Handler {
			return func(ctx context.Context, r *handlers.Request) (proto.Message, error) {
				order = append(order, name)
				return next(ctx, r)
			}
		}
	}
	h := handlers.ChainMiddleware(func(context.Context, *handlers.Request) (proto.Message, error) {
		order = append(order, "handler")
		return nil, nil
	}, mw("a"), mw("b"))
	h(context.Background(), &handlers.Request{})
	if strings.Join(order, ",") != "a,b,handler" {
		t.Fatalf("order %v, want first added runs first", order)
	}
}

func TestConfigure(t *testing.T) {
	reg := handlers.NewRegistry()
	fn := func(ctx context.Context, job *handlers.Job[*demov1.Echo]) (*demov1.EchoResult, error) {
		return nil, nil
	}
	if err := handlers.Register(reg, fn, handlers.Config{RatePerSecond: 5, Concurrency: 3}); err != nil {
		t.Fatal(err)
	}
	if err := reg.Configure("courier.demo.v1.Echo", handlers.Config{Concurrency: 7, MaxAttempts: 2}); err != nil {
		t.Fatal(err)
	}
	e, _ := reg.Lookup("courier.demo.v1.Echo")
	if e.Config.RatePerSecond != 5 || e.Config.Burst != 1 || e.Config.Concurrency != 7 || e.Config.MaxAttempts != 2 {
		t.Fatalf("config after Configure: %+v; want the registered rate, burst defaulted, concurrency and attempts overridden", e.Config)
	}
	if err := reg.Configure("no.such.Type", handlers.Config{}); err == nil || !strings.Contains(err.Error(), "courier.demo.v1.Echo") {
		t.Fatalf("Configure of an unregistered type: %v; want an error listing the registered types", err)
	}
	if err := reg.Configure("courier.demo.v1.Echo", handlers.Config{Burst: -1}); err == nil || !strings.Contains(err.Error(), "Config.Burst") {
		t.Fatalf("Configure with a bad burst: %v", err)
	}
}
