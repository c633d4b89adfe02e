package ingest_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/courierq/courier/handlers/demo"
	"github.com/courierq/courier/ingest"
	"github.com/courierq/courier/internal/testenv"
	"github.com/courierq/courier/jobs"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
)

// TestPeekAndAckDeadLetters: a permanently failing job's dead letter is
// seen by every peek (peeking leaves it in place) with its type, job ID,
// reason and attempt; acking an unknown ID changes nothing; acking its ID
// removes it.
func TestPeekAndAckDeadLetters(t *testing.T) {
	t.Parallel()
	dead := make(chan string, 10)
	cfg := ingest.Config{DeadLetters: &countDeadLetters{dead: dead}}
	s := newStack(t, testenv.SQLite, demoRegistry(t, demo.Config{Echo: fastRetry, Sleep: fastRetry}), cfg)
	ctx := testCtx(t)
	id, err := s.pub.Publish(ctx, &demov1.Sleep{PermanentFailure: true})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case typ := <-dead:
		if typ != "courier.demo.v1.Sleep" {
			t.Fatalf("dead-lettered type %q", typ)
		}
	case <-ctx.Done():
		t.Fatal("no dead letter")
	}
	waitState(ctx, t, s.store, id, jobs.Failed)

	var msgID string
	for i := range 2 {
		got, err := s.worker.PeekDeadLetters(ctx, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 {
			t.Fatalf("peek %d: %d dead letters %+v, want 1", i, len(got), got)
		}
		d := got[0]
		if d.Type != "courier.demo.v1.Sleep" || d.JobID != id || d.Attempt != 1 || !strings.Contains(d.Reason, "permanent") ||
			d.Subscription != "courier-demo-v1-Sleep-dead-letter" || d.MessageID == "" || len(d.Data) == 0 || d.Published.IsZero() {
			t.Fatalf("peek %d: dead letter %+v", i, d)
		}
		msgID = d.MessageID
	}
	if got, err := s.worker.PeekDeadLetters(ctx, "courier.demo.v1.Echo", 0); err != nil || len(got) != 0 {
		t.Fatalf("peek of Echo: %+v, %v; want none", got, err)
	}
	if _, err := s.worker.PeekDeadLetters(ctx, "", 1001); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("peek with limit 1001: err %v, want one naming the limit", err)
	}
	if _, err := s.worker.AckDeadLetters(ctx, "courier-demo-v1-Sleep-worker", []string{msgID}); err == nil {
		t.Fatal("AckDeadLetters on a worker subscription: no error")
	}

	acked, err := s.worker.AckDeadLetters(ctx, "courier-demo-v1-Sleep-dead-letter", []string{"no-such-message"})
	if err != nil || len(acked) != 0 {
		t.Fatalf("ack of an unknown ID: %v, %v; want none acked", acked, err)
	}
	acked, err = s.worker.AckDeadLetters(ctx, "courier-demo-v1-Sleep-dead-letter", []string{msgID})
	if err != nil || !slices.Equal(acked, []string{msgID}) {
		t.Fatalf("ack: %v, %v; want [%s]", acked, err, msgID)
	}
	if got, err := s.worker.PeekDeadLetters(ctx, "", 0); err != nil || len(got) != 0 {
		t.Fatalf("peek after ack: %+v, %v; want none", got, err)
	}
}
