package couriertest_test

import (
	"context"
	"testing"

	"github.com/courierq/courier/client"
	"github.com/courierq/courier/couriertest"
	"github.com/courierq/courier/handlers"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

func TestStartEnqueueAndRequire(t *testing.T) {
	reg := handlers.NewRegistry()
	if err := handlers.Register(reg, func(ctx context.Context, job *handlers.Job[*demov1.Echo]) (*demov1.EchoResult, error) {
		return &demov1.EchoResult{Message: "echo: " + job.Payload.GetMessage()}, nil
	}, handlers.Config{}); err != nil {
		t.Fatal(err)
	}
	n := couriertest.Start(t, reg)
	id := n.Enqueue(t, &demov1.Echo{Message: "hi"}, client.EnqueueOptions{Labels: map[string]string{"team": "a"}})
	n.Enqueue(t, &demov1.Echo{Message: "other"}, client.EnqueueOptions{})

	var res demov1.EchoResult
	job := n.RequireSucceeded(t, id, &res)
	if job.GetState() != courierv1.State_SUCCEEDED || res.GetMessage() != "echo: hi" {
		t.Fatalf("job %v result %q, want SUCCEEDED with the echo", job.GetState(), res.GetMessage())
	}
	got, payload := couriertest.RequireEnqueued(t, n, func(e *demov1.Echo) bool { return e.GetMessage() == "hi" })
	if got.GetId() != id || payload.GetMessage() != "hi" || got.GetLabels()["team"] != "a" {
		t.Fatalf("RequireEnqueued found %s %q %v, want job %s", got.GetId(), payload.GetMessage(), got.GetLabels(), id)
	}
}
