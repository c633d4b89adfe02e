package ingest_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/handlers/demo"
	"github.com/courierq/courier/ingest"
	"github.com/courierq/courier/internal/testenv"
	"github.com/courierq/courier/jobs"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
)

// Small backoffs: Google's emulator ignores them anyway.
var fastRetry = handlers.Config{MinBackoff: time.Second, MaxBackoff: time.Second}

func demoRegistry(t *testing.T, cfg demo.Config) *handlers.Registry {
	t.Helper()
	reg := handlers.NewRegistry()
	if err := demo.Register(reg, cfg); err != nil {
		t.Fatal(err)
	}
	return reg
}

func TestEchoSucceeds(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind testenv.StoreKind) {
		s := newStack(t, kind, demoRegistry(t, demo.Config{Echo: fastRetry, Sleep: fastRetry}), ingest.Config{})
		ctx := testCtx(t)
		id, err := s.pub.Publish(ctx, &demov1.Echo{Message: "hi"}, publisherLabels("team", "pay"))
		if err != nil {
			t.Fatal(err)
		}
		job := waitState(ctx, t, s.store, id, jobs.Succeeded)
		if job.State != jobs.Succeeded || job.Attempt != 1 || job.ResultType != "courier.demo.v1.EchoResult" {
			t.Fatalf("job %+v, want SUCCEEDED on attempt 1 with an EchoResult", job)
		}
		var res demov1.EchoResult
		if err := proto.Unmarshal(job.Result, &res); err != nil || res.GetMessage() != "hi" {
			t.Fatalf("result %v, %v; want message hi", &res, err)
		}
		if job.Type != "courier.demo.v1.Echo" || job.Labels["team"] != "pay" {
			t.Fatalf("job type %q labels %v", job.Type, job.Labels)
		}
	})
}

func TestSleepRetriesUntilSuccess(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind testenv.StoreKind) {
		s := newStack(t, kind, demoRegistry(t, demo.Config{Echo: fastRetry, Sleep: fastRetry}), ingest.Config{})
		ctx := testCtx(t)
		id, err := s.pub.Publish(ctx, &demov1.Sleep{Duration: durationpb.New(10 * time.Millisecond), FailAttempts: 2})
		if err != nil {
			t.Fatal(err)
		}
		job := waitState(ctx, t, s.store, id, jobs.Succeeded)
		if job.State != jobs.Succeeded || job.Attempt != 3 {
			t.Fatalf("job %+v, want SUCCEEDED on attempt 3", job)
		}
		var res demov1.SleepResult
		if err := proto.Unmarshal(job.Result, &res); err != nil || res.GetAttempt() != 3 || job.ProgressFraction != 1 {
			t.Fatalf("result %v (%v), progress %v; want attempt 3 and progress 1", &res, err, job.ProgressFraction)
		}
	})
}

func TestPermanentFailureIsNotRetried(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind testenv.StoreKind) {
		s := newStack(t, kind, demoRegistry(t, demo.Config{Echo: fastRetry, Sleep: fastRetry}), ingest.Config{})
		ctx := testCtx(t)
		id, err := s.pub.Publish(ctx, &demov1.Sleep{PermanentFailure: true})
		if err != nil {
			t.Fatal(err)
		}
		job := waitState(ctx, t, s.store, id, jobs.Failed)
		if job.State != jobs.Failed || job.Attempt != 1 || !strings.Contains(job.ErrorMessage, "permanent") {
			t.Fatalf("job %+v, want FAILED after 1 attempt with the handler's error", job)
		}
		dl := testenv.Pull(ctx, t, s.client, "courier-demo-v1-Sleep-dead-letter", 1)
		if got := dl[0].Attributes[ingest.AttrDeadLetterReason]; !strings.Contains(got, "permanent failure on attempt 1") || dl[0].Attributes["ce-id"] != id {
			t.Fatalf("dead letter attributes %v", dl[0].Attributes)
		}
	})
}

func TestLastAttemptDeadLetters(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind testenv.StoreKind) {
		cfg := fastRetry
		cfg.MaxAttempts = 2
		s := newStack(t, kind, demoRegistry(t, demo.Config{Sleep: cfg}), ingest.Config{})
		ctx := testCtx(t)
		id, err := s.pub.Publish(ctx, &demov1.Sleep{FailAttempts: 10})
		if err != nil {
			t.Fatal(err)
		}
		job := waitState(ctx, t, s.store, id, jobs.Failed)
		if job.State != jobs.Failed || job.Attempt != 2 || job.ErrorCode != int32(code.Code_UNKNOWN) {
			t.Fatalf("job %+v, want FAILED after attempt 2 of 2", job)
		}
		dl := testenv.Pull(ctx, t, s.client, "courier-demo-v1-Sleep-dead-letter", 1)
		if got := dl[0].Attributes[ingest.AttrDeadLetterReason]; !strings.Contains(got, "attempt 2 of 2 failed") || dl[0].Attributes[ingest.AttrDeadLetterAttempt] != "2" {
			t.Fatalf("dead letter attributes %v", dl[0].Attributes)
		}
	})
}

func TestPoisonMessagesAreDeadLettered(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind testenv.StoreKind) {
		s := newStack(t, kind, demoRegistry(t, demo.Config{Echo: fastRetry, Sleep: fastRetry}), ingest.Config{})
		ctx := testCtx(t)
		raw := s.client.Publisher("courier-demo-v1-Echo")
		defer raw.Stop()
		publishRaw := func(data []byte, attrs map[string]string) string {
			id, err := raw.Publish(ctx, &pubsub.Message{Data: data, Attributes: attrs}).Get(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return id
		}
		var ids []string
		publishEcho := func() {
			id, err := s.pub.Publish(ctx, &demov1.Echo{Message: "ok"})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		publishEcho()
		publishRaw([]byte{0xff, 0xff, 0xff}, map[string]string{"ce-type": "courier.demo.v1.Echo", "ce-id": "bad-bytes"})
		publishEcho()
		publishRaw([]byte("x"), map[string]string{"ce-type": "courier.demo.v1.Nope", "ce-id": "unknown-type"})
		publishEcho()
		noType := publishRaw([]byte("x"), nil)
		publishEcho()
		if _, _, err := s.store.Enqueue(ctx, jobs.EnqueueParams{Job: jobs.Job{ID: "a-sleep-job", Type: "courier.demo.v1.Sleep"}}); err != nil {
			t.Fatal(err)
		}
		echo, _ := proto.Marshal(&demov1.Echo{Message: "wrong type"})
		publishRaw(echo, map[string]string{"ce-type": "courier.demo.v1.Echo", "ce-id": "a-sleep-job"})
		// A message from a non-courier publisher with only ce-type runs, with
		// the message ID as job ID.
		data, _ := proto.Marshal(&demov1.Echo{Message: "foreign"})
		foreign := publishRaw(data, map[string]string{"ce-type": "courier.demo.v1.Echo"})
		ids = append(ids, foreign)

		for _, id := range ids {
			if job := waitState(ctx, t, s.store, id, jobs.Succeeded); job.State != jobs.Succeeded {
				t.Fatalf("job %s around the poison messages: %+v", id, job)
			}
		}
		dl := testenv.Pull(ctx, t, s.client, "courier-demo-v1-Echo-dead-letter", 4)
		reasons := map[string]string{}
		for _, m := range dl {
			key := m.Attributes["ce-id"]
			if key == "" {
				key = m.Attributes[ingest.AttrDeadLetterMessageID]
			}
			reasons[key] = m.Attributes[ingest.AttrDeadLetterReason]
		}
		for key, want := range map[string]string{
			"bad-bytes":    "decoding 3 bytes as courier.demo.v1.Echo",
			"unknown-type": `no handler is registered for type "courier.demo.v1.Nope"`,
			noType:         "no ce-type attribute",
			"a-sleep-job":  `which has type "courier.demo.v1.Sleep"`,
		} {
			if !strings.Contains(reasons[key], want) {
				t.Errorf("dead letter %s: reason %q, want it to contain %q (all: %v)", key, reasons[key], want, reasons)
			}
		}
		if job := waitState(ctx, t, s.store, "bad-bytes", jobs.Failed); job.State != jobs.Failed || job.ErrorCode != int32(code.Code_INVALID_ARGUMENT) {
			t.Fatalf("undecodable job %+v, want FAILED with INVALID_ARGUMENT", job)
		}
	})
}

func TestFinishedOrCancelledJobIsNotRunAgain(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind testenv.StoreKind) {
		var runs atomic.Int32
		reg := handlers.NewRegistry()
		handlers.Register(reg, func(ctx context.Context, job *handlers.Job[*demov1.Echo]) (*demov1.EchoResult, error) {
			runs.Add(1)
			return &demov1.EchoResult{Message: job.Payload.GetMessage()}, nil
		}, fastRetry)
		s := newStack(t, kind, reg, ingest.Config{})
		ctx := testCtx(t)
		id, err := s.pub.Publish(ctx, &demov1.Echo{Message: "once"})
		if err != nil {
			t.Fatal(err)
		}
		waitState(ctx, t, s.store, id, jobs.Succeeded)
		// A redelivery (here: a second publish with the same job ID) is acked unrun.
		if _, err := s.pub.PublishSync(ctx, &demov1.Echo{Message: "again"}, withID(id)); err != nil {
			t.Fatal(err)
		}
		s.logs.await(ctx, 1, "already ended", id)
		// Cancel on delivery: a queued job that was cancelled is skipped.
		queued, _, err := s.store.Enqueue(ctx, jobs.EnqueueParams{Job: jobs.Job{Type: "courier.demo.v1.Echo"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.store.Cancel(ctx, queued.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.pub.PublishSync(ctx, &demov1.Echo{Message: "cancelled"}, withID(queued.ID)); err != nil {
			t.Fatal(err)
		}
		s.logs.await(ctx, 1, "already ended", queued.ID, "CANCELLED")
		if n := runs.Load(); n != 1 {
			t.Fatalf("handler ran %d times, want 1", n)
		}
	})
}

func TestCancelRunningJob(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind testenv.StoreKind) {
		started := make(chan string, 1)
		stopped := make(chan error, 1)
		reg := handlers.NewRegistry()
		handlers.Register(reg, func(ctx context.Context, job *handlers.Job[*demov1.Sleep]) (*demov1.SleepResult, error) {
			started <- job.ID
			<-ctx.Done()
			stopped <- context.Cause(ctx)
			return nil, ctx.Err()
		}, fastRetry)
		s := newStack(t, kind, reg, ingest.Config{})
		ctx := testCtx(t)
		id, err := s.pub.Publish(ctx, &demov1.Sleep{Duration: durationpb.New(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		<-started
		if _, err := s.store.Cancel(ctx, id); err != nil {
			t.Fatal(err)
		}
		select {
		case cause := <-stopped:
			if !strings.Contains(cause.Error(), "cancelled") {
				t.Fatalf("handler ctx cause %v, want the job's cancellation", cause)
			}
		case <-ctx.Done():
			t.Fatal("cancelling the job did not cancel the handler's context")
		}
		s.logs.await(ctx, 1, "cancelled while running", id)
		if job, _ := s.store.Get(ctx, id); job.State != jobs.Cancelled {
			t.Fatalf("job %+v, want CANCELLED", job)
		}
	})
}

func TestShutdownLetsInFlightHandlerFinish(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind testenv.StoreKind) {
		started := make(chan struct{})
		release := make(chan struct{})
		var releaseOnce sync.Once
		releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
		reg := handlers.NewRegistry()
		handlers.Register(reg, func(ctx context.Context, job *handlers.Job[*demov1.Echo]) (*demov1.EchoResult, error) {
			close(started)
			<-release
			return &demov1.EchoResult{Message: "finished"}, ctx.Err()
		}, fastRetry)
		s := newStack(t, kind, reg, ingest.Config{})
		t.Cleanup(releaseAll) // after the stack's: a failing test must not leave the handler blocked
		ctx := testCtx(t)
		id, err := s.pub.Publish(ctx, &demov1.Echo{})
		if err != nil {
			t.Fatal(err)
		}
		<-started
		done := make(chan error, 1)
		go func() { done <- s.worker.Shutdown(ctx) }()
		s.logs.await(ctx, 1, "shutting down")
		select {
		case err := <-done:
			t.Fatalf("Shutdown returned %v while a handler was running", err)
		default:
		}
		releaseAll() // the handler ends only once Shutdown is under way
		if err := <-done; err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if job, _ := s.store.Get(ctx, id); job.State != jobs.Succeeded {
			t.Fatalf("job %+v, want SUCCEEDED: the in-flight handler should have finished", job)
		}
		if err := <-s.runErr; err != nil {
			t.Fatalf("Run after Shutdown: %v", err)
		}
		s.runErr <- nil // for the cleanup
	})
}

func TestShutdownDeadlineCancelsAndRequeues(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind testenv.StoreKind) {
		started := make(chan struct{}, 1)
		reg := handlers.NewRegistry()
		handlers.Register(reg, func(ctx context.Context, job *handlers.Job[*demov1.Echo]) (*demov1.EchoResult, error) {
			started <- struct{}{}
			<-ctx.Done()
			return nil, ctx.Err()
		}, fastRetry)
		s := newStack(t, kind, reg, ingest.Config{})
		ctx := testCtx(t)
		id, err := s.pub.Publish(ctx, &demov1.Echo{})
		if err != nil {
			t.Fatal(err)
		}
		<-started
		short, cancel := context.WithCancel(ctx)
		cancel() // the deadline has already passed
		if err := s.worker.Shutdown(short); !errors.Is(err, context.Canceled) {
			t.Fatalf("Shutdown past its deadline: %v, want context.Canceled", err)
		}
		job, _ := s.store.Get(ctx, id)
		if job.State != jobs.Queued || job.ErrorCode != int32(code.Code_UNAVAILABLE) {
			t.Fatalf("job %+v, want QUEUED again with UNAVAILABLE", job)
		}
		<-s.runErr
		s.runErr <- nil
	})
}

func TestNewValidates(t *testing.T) {
	reg := demoRegistry(t, demo.Config{})
	for _, tc := range []struct {
		name string
		cfg  ingest.Config
		want string
	}{
		{"no client", ingest.Config{Registry: reg}, "Config.Client"},
		{"ack deadline", ingest.Config{Client: &pubsub.Client{}, Store: nilStore{}, Registry: reg, AckDeadline: time.Second}, "AckDeadline"},
		{"empty registry", ingest.Config{Client: &pubsub.Client{}, Store: nilStore{}, Registry: handlers.NewRegistry()}, "no handlers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ingest.New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "ingest: ") {
				t.Fatalf("New: %v, want an error about %s", err, tc.want)
			}
		})
	}
}

// nilStore satisfies jobs.Store for New's validation; it is never called.
type nilStore struct{ jobs.Store }

func TestRunCreatesInfrastructure(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind testenv.StoreKind) {
		cfg := handlers.Config{MaxAttempts: 3, MinBackoff: 2 * time.Second, MaxBackoff: 30 * time.Second}
		s := newStack(t, kind, demoRegistry(t, demo.Config{Sleep: cfg}), ingest.Config{AckDeadline: 20 * time.Second})
		ctx := testCtx(t)
		project := "projects/" + s.client.Project()
		sub, err := s.client.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: project + "/subscriptions/courier-demo-v1-Sleep-worker"})
		if err != nil {
			t.Fatal(err)
		}
		if sub.Topic != project+"/topics/courier-demo-v1-Sleep" || sub.AckDeadlineSeconds != 20 ||
			sub.GetRetryPolicy().GetMinimumBackoff().AsDuration() != 2*time.Second ||
			sub.GetRetryPolicy().GetMaximumBackoff().AsDuration() != 30*time.Second ||
			sub.GetDeadLetterPolicy().GetDeadLetterTopic() != project+"/topics/courier-demo-v1-Sleep-dead-letter" ||
			sub.GetDeadLetterPolicy().GetMaxDeliveryAttempts() != 5 { // max(5, MaxAttempts 3)
			t.Fatalf("subscription %v", sub)
		}
		if _, err := s.client.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: project + "/subscriptions/courier-demo-v1-Sleep-dead-letter"}); err != nil {
			t.Fatalf("dead-letter subscription: %v", err)
		}
		// A second worker on the same project finds everything in place.
		w2, err := ingest.New(ingest.Config{Client: s.client, Store: s.store, Registry: demoRegistry(t, demo.Config{})})
		if err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 1)
		go func() { errc <- w2.Run(ctx) }()
		select {
		case <-w2.Ready():
		case err := <-errc:
			t.Fatalf("second worker: %v", err)
		}
		if err := w2.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("second worker Run: %v", err)
		}
		if err := w2.Run(ctx); !errors.Is(err, ingest.ErrClosed) {
			t.Fatalf("Run after Shutdown: %v, want ErrClosed", err)
		}
	})
}

func TestDisableCreateNeedsInfrastructure(t *testing.T) {
	t.Parallel()
	c := testenv.Client(t, testenv.Google(t))
	w, err := ingest.New(ingest.Config{Client: c, Store: nilStore{}, Registry: demoRegistry(t, demo.Config{}), DisableCreate: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	err = w.Run(testCtx(t))
	if err == nil || !strings.Contains(err.Error(), "courier-demo-v1-Echo-worker") || !strings.Contains(err.Error(), "courier-demo-v1-Sleep-worker") {
		t.Fatalf("Run with DisableCreate and no subscription: %v, want an error naming it", err)
	}
}

func TestShutdownNacksJobsWaitingForASlot(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind testenv.StoreKind) {
		started := make(chan string, 2)
		release := make(chan struct{})
		var releaseOnce sync.Once
		releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
		reg := handlers.NewRegistry()
		handlers.Register(reg, func(ctx context.Context, job *handlers.Job[*demov1.Echo]) (*demov1.EchoResult, error) {
			started <- job.ID
			<-release
			return &demov1.EchoResult{}, nil
		}, handlers.Config{Concurrency: 1, MinBackoff: time.Second, MaxBackoff: time.Second})
		s := newStack(t, kind, reg, ingest.Config{})
		t.Cleanup(releaseAll) // after the stack's: a failing test must not leave the handler blocked
		ctx := testCtx(t)
		var ids []string
		for range 2 {
			id, err := s.pub.Publish(ctx, &demov1.Echo{})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		running := <-started
		waiting := ids[0]
		if waiting == running {
			waiting = ids[1]
		}
		// The waiting job is held by the worker (Ensure ran) but not started.
		if job := waitState(ctx, t, s.store, waiting, jobs.Queued); job.State != jobs.Queued {
			t.Fatalf("waiting job %+v, want QUEUED", job)
		}
		done := make(chan error, 1)
		go func() { done <- s.worker.Shutdown(ctx) }()
		s.logs.await(ctx, 1, "stopping before the job started", waiting)
		releaseAll()
		if err := <-done; err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if job, _ := s.store.Get(ctx, running); job.State != jobs.Succeeded {
			t.Fatalf("running job %+v, want SUCCEEDED", job)
		}
		if job, _ := s.store.Get(ctx, waiting); job.State != jobs.Queued || job.Attempt != 0 {
			t.Fatalf("waiting job %+v, want QUEUED with no attempt", job)
		}
		select {
		case id := <-started:
			t.Fatalf("job %s started after Shutdown began", id)
		default:
		}
		<-s.runErr
		s.runErr <- nil
	})
}

func TestPanicIsRetried(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind testenv.StoreKind) {
		reg := handlers.NewRegistry()
		handlers.Register(reg, func(ctx context.Context, job *handlers.Job[*demov1.Echo]) (*demov1.EchoResult, error) {
			if job.Attempt == 1 {
				panic("first attempt explodes")
			}
			return &demov1.EchoResult{Message: "recovered"}, nil
		}, fastRetry)
		s := newStack(t, kind, reg, ingest.Config{})
		ctx := testCtx(t)
		id, err := s.pub.Publish(ctx, &demov1.Echo{})
		if err != nil {
			t.Fatal(err)
		}
		job := waitState(ctx, t, s.store, id, jobs.Succeeded)
		if job.State != jobs.Succeeded || job.Attempt != 2 {
			t.Fatalf("job %+v, want SUCCEEDED on attempt 2", job)
		}
		s.logs.await(ctx, 1, "handler panicked", id, "first attempt explodes", "goroutine")
	})
}

func TestTimeoutOnLastAttemptFails(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind testenv.StoreKind) {
		reg := handlers.NewRegistry()
		handlers.Register(reg, func(ctx context.Context, job *handlers.Job[*demov1.Echo]) (*demov1.EchoResult, error) {
			<-ctx.Done() // runs until the handler's Timeout
			return nil, ctx.Err()
		}, handlers.Config{Timeout: 10 * time.Millisecond, MaxAttempts: 1, MinBackoff: time.Second, MaxBackoff: time.Second})
		s := newStack(t, kind, reg, ingest.Config{})
		ctx := testCtx(t)
		id, err := s.pub.Publish(ctx, &demov1.Echo{})
		if err != nil {
			t.Fatal(err)
		}
		job := waitState(ctx, t, s.store, id, jobs.Failed)
		if job.State != jobs.Failed || job.Attempt != 1 || job.ErrorCode != int32(code.Code_DEADLINE_EXCEEDED) || !strings.Contains(job.ErrorMessage, "timed out") {
			t.Fatalf("job %+v, want FAILED on attempt 1 of 1 with DEADLINE_EXCEEDED", job)
		}
	})
}
