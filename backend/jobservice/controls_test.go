package jobservice_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/courierq/courier/backend/jobservice"
	"github.com/courierq/courier/internal/testenv"
	"github.com/courierq/courier/jobs"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

// controlTypes: Echo allows 3 attempts and a 1-minute timeout; Sleep has
// no timeout.
var controlTypes = jobservice.TypeMap{
	"courier.demo.v1.Echo":  {MaxAttempts: 3, Timeout: time.Minute},
	"courier.demo.v1.Sleep": {MaxAttempts: 5},
}

// eachStore runs fn on a JobService over each store (SQLite, PostgreSQL).
func eachStore(t *testing.T, fn func(t *testing.T, e *env)) {
	for _, kind := range testenv.StoreKinds() {
		t.Run(string(kind), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			t.Cleanup(cancel)
			store := testenv.Store(t, kind)
			_, jc := testenv.JobService(t, store, controlTypes)
			fn(t, &env{store: store, client: jc, ctx: ctx})
		})
	}
}

func echo(t testing.TB, msg string) *anypb.Any { return mustAny(t, &demov1.Echo{Message: msg}) }

func (e *env) count(t *testing.T) int {
	t.Helper()
	resp, err := e.client.ListJobs(e.ctx, &courierv1.ListJobsRequest{PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return len(resp.Jobs)
}

func TestEnqueueJobs(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		resp, err := e.client.EnqueueJobs(e.ctx, &courierv1.EnqueueJobsRequest{Jobs: []*courierv1.EnqueueJobRequest{
			{Payload: echo(t, "0"), IdempotencyKey: "k"},
			{Payload: mustAny(t, &demov1.Sleep{}), Labels: map[string]string{"n": "1"}},
			{Payload: echo(t, "2"), IdempotencyKey: "k"},
			{Payload: echo(t, "3"), MaxAttempts: 2, OrderingKey: "o"},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Jobs) != 4 || resp.Jobs[2].JobId != resp.Jobs[0].JobId || !resp.Jobs[2].Duplicate || resp.Jobs[0].Duplicate {
			t.Fatalf("EnqueueJobs: %v", resp)
		}
		for i, want := range []string{"courier.demo.v1.Echo", "courier.demo.v1.Sleep", "courier.demo.v1.Echo", "courier.demo.v1.Echo"} {
			j, err := e.client.GetJob(e.ctx, &courierv1.GetJobRequest{Id: resp.Jobs[i].JobId})
			if err != nil || j.Type != want || j.State != courierv1.State_QUEUED {
				t.Fatalf("jobs[%d]: %v %v", i, j, err)
			}
			if i == 3 && (j.MaxAttempts != 2 || j.OrderingKey != "o") {
				t.Fatalf("jobs[3] lost its overrides: %v", j)
			}
		}
		if e.count(t) != 3 {
			t.Fatalf("%d jobs recorded, want 3", e.count(t))
		}

		// An invalid job fails the request, names its index and field, and
		// nothing is recorded.
		_, err = e.client.EnqueueJobs(e.ctx, &courierv1.EnqueueJobsRequest{Jobs: []*courierv1.EnqueueJobRequest{
			{Payload: echo(t, "fine"), IdempotencyKey: "fresh"},
			{Payload: echo(t, "too many"), MaxAttempts: 4},
		}})
		wantCode(t, err, codes.InvalidArgument, "jobs[1]", "max_attempts", "limit of 3")
		_, err = e.client.EnqueueJobs(e.ctx, &courierv1.EnqueueJobsRequest{Jobs: []*courierv1.EnqueueJobRequest{{Payload: echo(t, "")}, {}}})
		wantCode(t, err, codes.InvalidArgument, "jobs[1]", "payload is missing")
		_, err = e.client.EnqueueJobs(e.ctx, &courierv1.EnqueueJobsRequest{})
		wantCode(t, err, codes.InvalidArgument, "jobs is empty")
		big := make([]*courierv1.EnqueueJobRequest, jobservice.MaxEnqueueJobs+1)
		for i := range big {
			big[i] = &courierv1.EnqueueJobRequest{Payload: echo(t, "")}
		}
		_, err = e.client.EnqueueJobs(e.ctx, &courierv1.EnqueueJobsRequest{Jobs: big})
		wantCode(t, err, codes.InvalidArgument, "1001 entries", "limit of 1000")
		if e.count(t) != 3 {
			t.Fatalf("refused batches recorded jobs: %d, want 3", e.count(t))
		}
		// The key of the refused batch is free.
		r, err := e.client.EnqueueJob(e.ctx, &courierv1.EnqueueJobRequest{Payload: echo(t, "fine"), IdempotencyKey: "fresh"})
		if err != nil || r.Duplicate {
			t.Fatalf("the refused batch held its key: %v %v", r, err)
		}
		// The largest batch.
		resp, err = e.client.EnqueueJobs(e.ctx, &courierv1.EnqueueJobsRequest{Jobs: big[:jobservice.MaxEnqueueJobs]})
		if err != nil || len(resp.Jobs) != jobservice.MaxEnqueueJobs {
			t.Fatalf("EnqueueJobs of %d: %v", jobservice.MaxEnqueueJobs, err)
		}
	})
}

// storeOnly hides every optional interface of a real store.
type storeOnly struct{ jobs.Store }

func TestEnqueueJobsNeedsABatchStore(t *testing.T) {
	store := testenv.Store(t, testenv.SQLite)
	_, jc := testenv.JobService(t, storeOnly{store}, controlTypes)
	_, err := jc.EnqueueJobs(context.Background(), &courierv1.EnqueueJobsRequest{Jobs: []*courierv1.EnqueueJobRequest{{Payload: echo(t, "")}}})
	wantCode(t, err, codes.Unimplemented, "cannot record a batch in one transaction", "EnqueueJob for each job")
	_, err = jc.EnqueueJob(context.Background(), &courierv1.EnqueueJobRequest{Payload: echo(t, ""), IdempotencyKey: "k", UniqueWhileActive: true})
	wantCode(t, err, codes.Unimplemented, "unique_while_active")
}

func TestUniqueScopes(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		enq := func(req *courierv1.EnqueueJobRequest) *courierv1.EnqueueJobResponse {
			t.Helper()
			resp, err := e.client.EnqueueJob(e.ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			return resp
		}
		// While active: a second enqueue is a duplicate until the first
		// ends, then makes a new job.
		active := &courierv1.EnqueueJobRequest{Payload: echo(t, "a"), IdempotencyKey: "report:42", UniqueWhileActive: true}
		first := enq(active)
		if again := enq(active); !again.Duplicate || again.JobId != first.JobId {
			t.Fatalf("while active: %v, want a duplicate of %s", again, first.JobId)
		}
		if _, err := e.client.CancelJob(e.ctx, &courierv1.CancelJobRequest{Id: first.JobId}); err != nil {
			t.Fatal(err)
		}
		next := enq(active)
		if next.Duplicate || next.JobId == first.JobId {
			t.Fatalf("after the holder ended: %v, want a new job", next)
		}
		// A window: held within it (its end is tested on a store clock in
		// jobs/jobstest).
		window := &courierv1.EnqueueJobRequest{Payload: echo(t, "w"), IdempotencyKey: "digest", UniqueFor: durationpb.New(time.Hour)}
		w1 := enq(window)
		if w2 := enq(window); !w2.Duplicate || w2.JobId != w1.JobId {
			t.Fatalf("within the window: %v", w2)
		}
		// The default is unchanged: an ended job keeps its key.
		plain := &courierv1.EnqueueJobRequest{Payload: echo(t, "p"), IdempotencyKey: "once"}
		p1 := enq(plain)
		if _, err := e.client.CancelJob(e.ctx, &courierv1.CancelJobRequest{Id: p1.JobId}); err != nil {
			t.Fatal(err)
		}
		if p2 := enq(plain); !p2.Duplicate || p2.JobId != p1.JobId {
			t.Fatalf("default scope after the job ended: %v", p2)
		}

		for _, c := range []struct {
			req  *courierv1.EnqueueJobRequest
			want []string
		}{
			{&courierv1.EnqueueJobRequest{Payload: echo(t, ""), IdempotencyKey: "k", UniqueFor: durationpb.New(-time.Second)}, []string{"unique_for is -1s"}},
			{&courierv1.EnqueueJobRequest{Payload: echo(t, ""), UniqueFor: durationpb.New(time.Second)}, []string{"idempotency_key is empty"}},
			{&courierv1.EnqueueJobRequest{Payload: echo(t, ""), UniqueWhileActive: true}, []string{"idempotency_key is empty"}},
		} {
			_, err := e.client.EnqueueJob(e.ctx, c.req)
			wantCode(t, err, codes.InvalidArgument, c.want...)
		}
	})
}

func TestPerJobOverrides(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		resp, err := e.client.EnqueueJob(e.ctx, &courierv1.EnqueueJobRequest{Payload: echo(t, ""), MaxAttempts: 2, Timeout: durationpb.New(30 * time.Second), OrderingKey: "customer-7"})
		if err != nil {
			t.Fatal(err)
		}
		j, err := e.client.GetJob(e.ctx, &courierv1.GetJobRequest{Id: resp.JobId})
		if err != nil || j.MaxAttempts != 2 || j.Timeout.AsDuration() != 30*time.Second || j.OrderingKey != "customer-7" {
			t.Fatalf("GetJob: %v %v", j, err)
		}
		stored, err := e.store.Get(e.ctx, resp.JobId)
		if err != nil || stored.Timeout != 30*time.Second || stored.MaxAttempts != 2 || stored.OrderingKey != "customer-7" {
			t.Fatalf("stored: %+v %v", stored, err)
		}
		// Unset: the type's.
		resp, err = e.client.EnqueueJob(e.ctx, &courierv1.EnqueueJobRequest{Payload: echo(t, "")})
		if err != nil {
			t.Fatal(err)
		}
		if j, _ := e.client.GetJob(e.ctx, &courierv1.GetJobRequest{Id: resp.JobId}); j.MaxAttempts != 3 || j.Timeout != nil || j.OrderingKey != "" {
			t.Fatalf("defaults: %v", j)
		}
		// A type without a timeout takes any positive one.
		if _, err := e.client.EnqueueJob(e.ctx, &courierv1.EnqueueJobRequest{Payload: mustAny(t, &demov1.Sleep{}), Timeout: durationpb.New(24 * time.Hour)}); err != nil {
			t.Fatal(err)
		}

		for _, c := range []struct {
			req  *courierv1.EnqueueJobRequest
			want []string
		}{
			{&courierv1.EnqueueJobRequest{Payload: echo(t, ""), MaxAttempts: 4}, []string{"max_attempts is 4", "limit of 3", "courier.demo.v1.Echo"}},
			{&courierv1.EnqueueJobRequest{Payload: echo(t, ""), MaxAttempts: -1}, []string{"max_attempts is -1"}},
			{&courierv1.EnqueueJobRequest{Payload: echo(t, ""), Timeout: durationpb.New(2 * time.Minute)}, []string{"timeout is 2m0s", "limit of 1m0s"}},
			{&courierv1.EnqueueJobRequest{Payload: echo(t, ""), Timeout: durationpb.New(-time.Second)}, []string{"timeout is -1s"}},
			{&courierv1.EnqueueJobRequest{Payload: echo(t, ""), Timeout: durationpb.New(0)}, []string{"timeout is 0s"}},
			{&courierv1.EnqueueJobRequest{Payload: echo(t, ""), OrderingKey: strings.Repeat("k", jobs.MaxOrderingKeyBytes+1)}, []string{"ordering_key", fmt.Sprint(jobs.MaxOrderingKeyBytes)}},
		} {
			_, err := e.client.EnqueueJob(e.ctx, c.req)
			wantCode(t, err, codes.InvalidArgument, c.want...)
		}
	})
}

// BenchmarkEnqueueJobs compares, on each store, one EnqueueJobs of 1,000
// jobs with 1,000 EnqueueJob calls one after the other (one client, as a
// loop in a caller would make them), over a loopback gRPC connection.
// Each iteration does both and reports batch-jobs/s and single-jobs/s.
func BenchmarkEnqueueJobs(b *testing.B) {
	for _, kind := range testenv.StoreKinds() {
		b.Run(string(kind), func(b *testing.B) {
			ctx := context.Background()
			store := testenv.Store(b, kind)
			_, jc := testenv.JobService(b, store, controlTypes)
			reqs := make([]*courierv1.EnqueueJobRequest, 1000)
			for i := range reqs {
				reqs[i] = &courierv1.EnqueueJobRequest{Payload: echo(b, fmt.Sprint("job ", i)), Labels: map[string]string{"bench": "yes"}}
			}
			var batch, single time.Duration
			for b.Loop() {
				start := time.Now()
				if _, err := jc.EnqueueJobs(ctx, &courierv1.EnqueueJobsRequest{Jobs: reqs}); err != nil {
					b.Fatal(err)
				}
				batch += time.Since(start)
				start = time.Now()
				for _, r := range reqs {
					if _, err := jc.EnqueueJob(ctx, r); err != nil {
						b.Fatal(err)
					}
				}
				single += time.Since(start)
			}
			b.ReportMetric(float64(b.N*len(reqs))/batch.Seconds(), "batch-jobs/s")
			b.ReportMetric(float64(b.N*len(reqs))/single.Seconds(), "single-jobs/s")
		})
	}
}
