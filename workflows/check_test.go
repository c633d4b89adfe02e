package workflows_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/courierq/courier/backend/jobservice"
	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/internal/testenv"
	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/limits"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
	"github.com/courierq/courier/workflows"
)

// clock is a settable time source.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// retryDelay returns the RetryInfo delay of a ResourceExhausted error, failing
// t when err is anything else.
func retryDelay(t *testing.T, err error) time.Duration {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.ResourceExhausted {
		t.Fatalf("got %v, want ResourceExhausted", err)
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	t.Fatalf("ResourceExhausted %q has no RetryInfo in its details %v", st.Message(), st.Details())
	return 0
}

func TestEnqueueLimit(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	check, err := workflows.EnqueueLimit(2, 3, c.now) // 2/s, burst 3
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 3 {
		if err := check(ctx); err != nil {
			t.Fatalf("enqueue %d of the burst: %v", i+1, err)
		}
	}
	if d := retryDelay(t, check(ctx)); d != 500*time.Millisecond {
		t.Errorf("retry delay %v, want 500ms (one token at 2/s)", d)
	}
	// A refusal takes no token: the delay only shrinks with time.
	c.t = c.t.Add(200 * time.Millisecond)
	if d := retryDelay(t, check(ctx)); d != 300*time.Millisecond {
		t.Errorf("retry delay %v, want 300ms", d)
	}
	c.t = c.t.Add(300 * time.Millisecond)
	if err := check(ctx); err != nil {
		t.Fatalf("after the retry delay: %v", err)
	}
	if d := retryDelay(t, check(ctx)); d != 500*time.Millisecond {
		t.Errorf("retry delay %v, want 500ms", d)
	}
}

func TestEnqueueLimitErrors(t *testing.T) {
	for _, tc := range []struct {
		rate  float64
		burst int
		want  string
	}{
		{0, 1, "rate is 0 per second"},
		{-1, 1, "rate is -1 per second"},
		{1, 0, "burst is 0"},
	} {
		if _, err := workflows.EnqueueLimit(tc.rate, tc.burst, nil); err == nil || !strings.HasPrefix(err.Error(), "workflows: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("EnqueueLimit(%v, %d): %v, want an error saying %q", tc.rate, tc.burst, err, tc.want)
		}
	}
}

// TestEnqueueLimitThroughJobService: over the limit, EnqueueJob on a real
// server answers ResourceExhausted with a retry delay and records nothing.
func TestEnqueueLimitThroughJobService(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	check, err := workflows.EnqueueLimit(1, 2, c.now)
	if err != nil {
		t.Fatal(err)
	}
	store := testenv.Store(t, testenv.SQLite)
	js := serveJobs(t, store, jobservice.TypeMap{workflows.Name[*demov1.Bisect](): {Check: check}})
	payload, _ := anypb.New(&demov1.Bisect{Good: 0, Bad: 10, Culprit: 5})
	enqueue := func() error {
		_, err := js.EnqueueJob(ctx, &courierv1.EnqueueJobRequest{Payload: payload})
		return err
	}
	for range 2 {
		if err := enqueue(); err != nil {
			t.Fatal(err)
		}
	}
	if d := retryDelay(t, enqueue()); d != time.Second {
		t.Errorf("retry delay %v, want 1s", d)
	}
	if n := countJobs(t, store); n != 2 {
		t.Errorf("%d jobs recorded, want the 2 admitted", n)
	}
	c.t = c.t.Add(time.Second)
	if err := enqueue(); err != nil {
		t.Fatalf("after the retry delay: %v", err)
	}
	if n := countJobs(t, store); n != 3 {
		t.Errorf("%d jobs recorded, want 3", n)
	}
}

func TestRequireTemporalThroughJobService(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	store := testenv.Store(t, testenv.SQLite)
	name := workflows.Name[*demov1.Bisect]()
	js := serveJobs(t, store, jobservice.TypeMap{name: {Check: workflows.RequireTemporal(name)}})
	payload, _ := anypb.New(&demov1.Bisect{Good: 0, Bad: 10, Culprit: 5})
	_, err := js.EnqueueJob(ctx, &courierv1.EnqueueJobRequest{Payload: payload})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("got %v, want FailedPrecondition", err)
	}
	for _, want := range []string{name, "make run-temporal", "temporal section"} {
		mustContain(t, "message", status.Convert(err).Message(), want)
	}
	if n := countJobs(t, store); n != 0 {
		t.Errorf("%d jobs recorded, want none", n)
	}
}

func countJobs(t *testing.T, store jobs.Store) int {
	t.Helper()
	list, _, err := store.List(context.Background(), jobs.ListParams{PageSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	return len(list)
}

// fixedClock is a handlers.Clock at a fixed instant.
type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time                       { return c.t }
func (c fixedClock) After(time.Duration) <-chan time.Time { return make(chan time.Time) }

// TestEnqueueLimitOver: over a handlers.Limiter (package limits' buckets
// shared by the fleet in production; a local one here), the check admits
// what the limiter gives at once and refuses the rest with the wait as
// RetryInfo, whether the limiter reports a wait or refuses (BusyError).
func TestEnqueueLimitOver(t *testing.T) {
	clk := fixedClock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	ctx := context.Background()
	check := workflows.EnqueueLimitOver(handlers.NewLocalLimiter(2, 3, clk), 2, 3)
	for i := range 3 {
		if err := check(ctx); err != nil {
			t.Fatalf("enqueue %d of the burst: %v", i+1, err)
		}
	}
	for range 2 { // a refusal takes no token
		if d := retryDelay(t, check(ctx)); d != 500*time.Millisecond {
			t.Errorf("retry delay %v, want 500ms (one token at 2/s)", d)
		}
	}
	refusing, err := limits.Line(handlers.NewLocalLimiter(2, 1, clk), 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	check = workflows.EnqueueLimitOver(refusing, 2, 1)
	if err := check(ctx); err != nil {
		t.Fatal(err)
	}
	if d := retryDelay(t, check(ctx)); d <= 0 {
		t.Errorf("retry delay %v after a BusyError, want the limiter's", d)
	}
}
