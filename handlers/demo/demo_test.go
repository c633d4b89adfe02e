package demo_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/handlers/demo"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
)

func run(t *testing.T, reg *handlers.Registry, attempt int, p *demov1.Sleep, progress *[]float64) (*demov1.SleepResult, error) {
	t.Helper()
	e, ok := reg.Lookup("courier.demo.v1.Sleep")
	if !ok {
		t.Fatal("Sleep not registered")
	}
	res, err := e.Handler(context.Background(), &handlers.Request{ID: "j", Type: e.Type, Attempt: attempt, Payload: p,
		Progress: func(_ context.Context, f float64, _ string) error { *progress = append(*progress, f); return nil }})
	if res == nil {
		return nil, err
	}
	return res.(*demov1.SleepResult), err
}

func TestSleep(t *testing.T) {
	reg := handlers.NewRegistry()
	if err := demo.Register(reg, demo.Config{ProgressSteps: 4}); err != nil {
		t.Fatal(err)
	}
	var progress []float64
	p := &demov1.Sleep{Duration: durationpb.New(4 * time.Millisecond), FailAttempts: 2}
	for attempt := 1; attempt <= 2; attempt++ {
		if _, err := run(t, reg, attempt, p, &progress); err == nil || handlers.IsPermanent(err) {
			t.Fatalf("attempt %d: err = %v, want a retryable error", attempt, err)
		}
	}
	res, err := run(t, reg, 3, p, &progress)
	if err != nil || res.GetAttempt() != 3 || res.GetSlept().AsDuration() < 4*time.Millisecond {
		t.Fatalf("attempt 3: %v, %v", res, err)
	}
	if len(progress) != 4 || progress[3] != 1 {
		t.Fatalf("progress %v, want 4 steps ending at 1", progress)
	}
	_, err = run(t, reg, 1, &demov1.Sleep{PermanentFailure: true}, &progress)
	if !handlers.IsPermanent(err) {
		t.Fatalf("permanent_failure: err = %v, want permanent", err)
	}
}

func TestEcho(t *testing.T) {
	res, err := demo.Echo(context.Background(), &handlers.Job[*demov1.Echo]{Payload: &demov1.Echo{Message: "hi"}})
	if err != nil || res.GetMessage() != "hi" {
		t.Fatalf("%v, %v", res, err)
	}
	reg := handlers.NewRegistry()
	demo.Register(reg, demo.Config{})
	if err := demo.Register(reg, demo.Config{}); !errors.Is(err, handlers.ErrDuplicate) {
		t.Fatalf("second Register: %v", err)
	}
}
