package main

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/courierq/courier/client"
	"github.com/courierq/courier/couriertest"
	"github.com/courierq/courier/handlers"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

// TestDeadLetters: courier dead-letters list, show and replay against a
// Node whose Echo handler fails for good until it is healed.
func TestDeadLetters(t *testing.T) {
	var healed atomic.Bool
	reg := handlers.NewRegistry()
	if err := handlers.Register(reg, func(ctx context.Context, job *handlers.Job[*demov1.Echo]) (*demov1.EchoResult, error) {
		if !healed.Load() {
			return nil, handlers.Permanent(errors.New("broken until healed"))
		}
		return &demov1.EchoResult{Message: job.Payload.GetMessage()}, nil
	}, handlers.Config{}); err != nil {
		t.Fatal(err)
	}
	n := couriertest.Start(t, reg)
	addr := n.GRPCAddr()
	ctx, cancel := context.WithTimeout(context.Background(), couriertest.Timeout)
	defer cancel()
	id := n.Enqueue(t, &demov1.Echo{Message: "dead"}, client.EnqueueOptions{})
	if j := n.Wait(t, id, nil); j.State != courierv1.State_FAILED {
		t.Fatalf("job: %v", j)
	}

	// A peek is best effort: list until it shows.
	name := regexp.MustCompile(`(?m)^(\S+-dead-letter/\S+)\s+courier\.demo\.v1\.Echo\s+` + regexp.QuoteMeta(id))
	var letter string
	for letter == "" {
		out, err := cli(t, "--addr", addr, "dead-letters", "list", "--type", "courier.demo.v1.Echo")
		if err != nil {
			t.Fatal(out, err)
		}
		if m := name.FindStringSubmatch(out); m != nil {
			letter = m[1]
		}
		if ctx.Err() != nil {
			t.Fatalf("dead-letters list never showed the dead job %s: %q", id, out)
		}
	}
	out, err := cli(t, "--addr", addr, "dead-letters", "show", letter)
	if err != nil || !strings.Contains(out, `{"message":"dead"}`) || !strings.Contains(out, "broken until healed") || !strings.Contains(out, id) {
		t.Fatalf("show: %q %v", out, err)
	}
	out, err = cli(t, "--addr", addr, "dead-letters", "show", "no-slash")
	if err == nil || !strings.Contains(err.Error(), "SUBSCRIPTION/MESSAGE_ID") {
		t.Fatalf("show of a bad name: %q %v", out, err)
	}
	out, err = cli(t, "--addr", addr, "dead-letters", "replay")
	if err == nil || !strings.Contains(err.Error(), "--type") {
		t.Fatalf("replay of nothing: %q %v", out, err)
	}
	out, err = cli(t, "--addr", addr, "dead-letters", "list", "--type", "no.such.Type")
	if err == nil || !strings.Contains(err.Error(), "not a registered job type") {
		t.Fatalf("list of an unknown type: %q %v", out, err)
	}

	healed.Store(true)
	out, err = cli(t, "--addr", addr, "dead-letters", "replay", letter)
	m := regexp.MustCompile(`→ job (\S+)`).FindStringSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("replay: %q %v", out, err)
	}
	j := n.RequireSucceeded(t, m[1], nil)
	if j.Labels["reenqueued-from"] != id {
		t.Fatalf("replayed job: %v", j)
	}
	out, err = cli(t, "--addr", addr, "dead-letters", "replay", letter)
	if err == nil || !strings.Contains(out, "NotFound") {
		t.Fatalf("second replay: %q %v", out, err)
	}
}
