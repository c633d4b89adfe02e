package ingest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/ingest"
	"github.com/courierq/courier/internal/testenv"
	"github.com/courierq/courier/jobs"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
)

type hookKey struct{}

// TestHooksObserveADelivery: the Deliver hook's context values reach the
// running handler while cancellation still comes from the worker and the
// job (CancelJob cancels the handler), and Running and Deliver see the end
// with the handler's error.
func TestHooksObserveADelivery(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind testenv.StoreKind) {
		delivered := make(chan error, 1)
		running := make(chan string, 1)
		ranEnd := make(chan error, 1)
		seen := make(chan any, 1)
		reg := handlers.NewRegistry(handlers.RegistryConfig{})
		handlers.Register(reg, func(ctx context.Context, job *handlers.Job[*demov1.Sleep]) (*demov1.SleepResult, error) {
			seen <- ctx.Value(hookKey{})
			<-ctx.Done()
			return nil, context.Cause(ctx)
		}, fastRetry)
		s := newStack(t, kind, reg, ingest.Config{Hooks: ingest.Hooks{
			Deliver: func(ctx context.Context, typ string, attrs map[string]string) (context.Context, func(error)) {
				return context.WithValue(ctx, hookKey{}, typ+"/"+attrs["ce-id"]), func(err error) { delivered <- err }
			},
			Running: func(typ string) func(error) {
				running <- typ
				return func(err error) { ranEnd <- err }
			},
		}})
		ctx := testCtx(t)
		id, err := s.pub.Publish(ctx, &demov1.Sleep{Duration: durationpb.New(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if v := <-seen; v != "courier.demo.v1.Sleep/"+id {
			t.Fatalf("handler ctx value %v, want the Deliver hook's", v)
		}
		if typ := <-running; typ != "courier.demo.v1.Sleep" {
			t.Fatalf("Running(%q)", typ)
		}
		if _, err := s.store.Cancel(ctx, id); err != nil {
			t.Fatal(err)
		}
		for name, c := range map[string]chan error{"Running's end": ranEnd, "Deliver's end": delivered} {
			select {
			case err := <-c:
				if err == nil || !strings.Contains(err.Error(), "cancelled") {
					t.Errorf("%s got %v, want the job's cancellation", name, err)
				}
			case <-ctx.Done():
				t.Fatalf("%s not called after the job was cancelled", name)
			}
		}
		if job, _ := s.store.Get(ctx, id); job.State != jobs.Cancelled {
			t.Fatalf("job %+v, want CANCELLED", job)
		}
	})
}
