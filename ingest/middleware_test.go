package ingest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/ingest"
	"github.com/courierq/courier/internal/testenv"
	"github.com/courierq/courier/jobs"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
)

type mwKey struct{}

// TestMiddlewareWrapsTheRun: Config.Middleware runs once the job is
// RUNNING (or a quick run began), its context values reach the handler while cancellation still
// comes from the worker and the job (CancelJob cancels the handler), and it
// sees the end with the handler's error.
func TestMiddlewareWrapsTheRun(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind testenv.StoreKind) {
		running := make(chan jobs.State, 1)
		ended := make(chan error, 1)
		seen := make(chan any, 1)
		var s *stack
		mw := func(next handlers.Handler) handlers.Handler {
			return func(ctx context.Context, req *handlers.Request) (proto.Message, error) {
				j, err := s.store.Get(ctx, req.ID)
				if err != nil {
					t.Error(err)
				} else {
					running <- j.State
				}
				res, err := next(context.WithValue(ctx, mwKey{}, req.Type+"/"+req.ID), req)
				ended <- err
				return res, err
			}
		}
		reg := handlers.NewRegistry()
		handlers.Register(reg, func(ctx context.Context, job *handlers.Job[*demov1.Sleep]) (*demov1.SleepResult, error) {
			seen <- ctx.Value(mwKey{})
			<-ctx.Done()
			return nil, context.Cause(ctx)
		}, fastRetry)
		// RunningAfter an hour: a quick run stays unrecorded while it runs.
		s = newStack(t, kind, reg, ingest.Config{Middleware: []handlers.Middleware{mw}, RunningAfter: time.Hour})
		ctx := testCtx(t)
		id, err := s.pub.Publish(ctx, &demov1.Sleep{Duration: durationpb.New(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		// A quick run (the embedded store) is recorded RUNNING only once it
		// outlives RunningAfter: the middleware sees it QUEUED.
		want := jobs.Running
		if _, quick := s.store.(jobs.StartSucceeder); quick {
			want = jobs.Queued
		}
		if st := <-running; st != want {
			t.Fatalf("middleware ran with the job %s, want %s", st, want)
		}
		if v := <-seen; v != "courier.demo.v1.Sleep/"+id {
			t.Fatalf("handler ctx value %v, want the middleware's", v)
		}
		if _, err := s.store.Cancel(ctx, id); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-ended:
			if err == nil || !strings.Contains(err.Error(), "cancelled") {
				t.Errorf("middleware saw %v, want the job's cancellation", err)
			}
		case <-ctx.Done():
			t.Fatal("the handler did not end after the job was cancelled")
		}
		if job, _ := s.store.Get(ctx, id); job.State != jobs.Cancelled {
			t.Fatalf("job %+v, want CANCELLED", job)
		}
	})
}
