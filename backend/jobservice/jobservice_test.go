package jobservice_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/courierq/courier/backend/jobservice"
	"github.com/courierq/courier/internal/testenv"
	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/sqlite"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
	"github.com/courierq/courier/publisher"
)

type env struct {
	store  jobs.Store
	client courierv1.JobServiceClient
	ctx    context.Context
}

// newEnv serves a JobService over a real SQLite store on a loopback gRPC
// server.
func newEnv(t testing.TB, types jobservice.TypeMap) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	store, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "jobs.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if types == nil {
		types = jobservice.TypeMap{"courier.demo.v1.Echo": {MaxAttempts: 3}, "courier.demo.v1.Sleep": {MaxAttempts: 5}}
	}
	_, jc := testenv.JobService(t, store, types)
	return &env{store: store, client: jc, ctx: ctx}
}

func mustAny(t testing.TB, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func (e *env) enqueue(t *testing.T, m proto.Message, key string) *courierv1.EnqueueJobResponse {
	t.Helper()
	resp, err := e.client.EnqueueJob(e.ctx, &courierv1.EnqueueJobRequest{Payload: mustAny(t, m), IdempotencyKey: key, Labels: map[string]string{"team": "a"}})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func wantCode(t *testing.T, err error, code codes.Code, contains ...string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("got %v, want %v", err, code)
	}
	for _, c := range contains {
		if !strings.Contains(status.Convert(err).Message(), c) {
			t.Errorf("message %q does not mention %q", status.Convert(err).Message(), c)
		}
	}
}

func TestEnqueueAndGet(t *testing.T) {
	e := newEnv(t, nil)
	resp := e.enqueue(t, &demov1.Echo{Message: "hi"}, "")
	if resp.JobId == "" || resp.Duplicate {
		t.Fatalf("EnqueueJob: %v", resp)
	}
	j, err := e.client.GetJob(e.ctx, &courierv1.GetJobRequest{Id: resp.JobId})
	if err != nil {
		t.Fatal(err)
	}
	if j.Type != "courier.demo.v1.Echo" || j.State != courierv1.State_QUEUED || j.MaxAttempts != 3 || j.Labels["team"] != "a" || j.CreateTime == nil {
		t.Fatalf("GetJob: %v", j)
	}
	var echo demov1.Echo
	if err := j.Payload.UnmarshalTo(&echo); err != nil || echo.Message != "hi" {
		t.Fatalf("payload: %v %v", &echo, err)
	}
	due, err := e.store.ClaimOutbox(e.ctx, jobs.ClaimOutboxParams{Limit: 10, Owner: "test", LeaseFor: time.Minute})
	if err != nil || len(due) != 1 || due[0].JobID != resp.JobId {
		t.Fatalf("outbox after enqueue: %v %v", due, err)
	}
}

func TestEnqueueRejectsBadInput(t *testing.T) {
	e := newEnv(t, nil)
	big := &demov1.Echo{Message: strings.Repeat("x", jobservice.MaxPayloadBytes)}
	cases := []struct {
		name     string
		req      *courierv1.EnqueueJobRequest
		contains []string
	}{
		{"no payload", &courierv1.EnqueueJobRequest{}, []string{"payload is missing"}},
		{"unknown type", &courierv1.EnqueueJobRequest{Payload: &anypb.Any{TypeUrl: "type.googleapis.com/no.such.Type"}}, []string{"no.such.Type", "courier.demo.v1.Echo"}},
		{"unregistered type", &courierv1.EnqueueJobRequest{Payload: mustAny(t, durationpb.New(time.Second))}, []string{"google.protobuf.Duration", "no registered handler"}},
		{"bad bytes", &courierv1.EnqueueJobRequest{Payload: &anypb.Any{TypeUrl: "type.googleapis.com/courier.demo.v1.Echo", Value: []byte{0xff, 0xff}}}, []string{"not a valid courier.demo.v1.Echo"}},
		{"oversized", &courierv1.EnqueueJobRequest{Payload: mustAny(t, big)}, []string{"10000005 bytes", "limit of 10000000"}},
		// The payload is within Pub/Sub's 10 MB, but the message that
		// carries it (attributes, labels) is not: it could never publish.
		{"payload fits, message does not", &courierv1.EnqueueJobRequest{Payload: mustAny(t, &demov1.Echo{Message: strings.Repeat("x", 9_999_995)}), Labels: map[string]string{"team": "a"}},
			[]string{"payload (10000000 bytes)", fmt.Sprintf("message of %d bytes", publisher.EncodedSize("courier.demo.v1.Echo", make([]byte, 10_000_000), map[string]string{"team": "a"})), "limit of 10000000 bytes"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.client.EnqueueJob(e.ctx, c.req)
			wantCode(t, err, codes.InvalidArgument, c.contains...)
		})
	}
	list, _, err := e.store.List(e.ctx, jobs.ListParams{})
	if err != nil || len(list) != 0 {
		t.Fatalf("rejected enqueues recorded jobs: %v %v", list, err)
	}
}

func TestIdempotencyKey(t *testing.T) {
	e := newEnv(t, nil)
	first := e.enqueue(t, &demov1.Echo{Message: "a"}, "k1")
	again := e.enqueue(t, &demov1.Echo{Message: "a"}, "k1")
	if again.JobId != first.JobId || !again.Duplicate || first.Duplicate {
		t.Fatalf("same key: first %v, again %v", first, again)
	}
	other := e.enqueue(t, &demov1.Sleep{}, "k1")
	if other.JobId == first.JobId || other.Duplicate {
		t.Fatalf("same key, other type: %v", other)
	}
}

func TestGetAndCancelErrors(t *testing.T) {
	e := newEnv(t, nil)
	_, err := e.client.GetJob(e.ctx, &courierv1.GetJobRequest{Id: "no-such-job"})
	wantCode(t, err, codes.NotFound, "no-such-job")
	_, err = e.client.GetJob(e.ctx, &courierv1.GetJobRequest{})
	wantCode(t, err, codes.InvalidArgument, "id is empty")
	_, err = e.client.CancelJob(e.ctx, &courierv1.CancelJobRequest{Id: "no-such-job"})
	wantCode(t, err, codes.NotFound)

	id := e.enqueue(t, &demov1.Echo{}, "").JobId
	j, err := e.client.CancelJob(e.ctx, &courierv1.CancelJobRequest{Id: id})
	if err != nil || j.State != courierv1.State_CANCELLED {
		t.Fatalf("cancel queued: %v %v", j, err)
	}
	_, err = e.client.CancelJob(e.ctx, &courierv1.CancelJobRequest{Id: id})
	wantCode(t, err, codes.FailedPrecondition, "already ended", "CANCELLED")
}

func TestWatchJob(t *testing.T) {
	e := newEnv(t, nil)
	id := e.enqueue(t, &demov1.Sleep{}, "").JobId
	stream, err := e.client.WatchJob(e.ctx, &courierv1.WatchJobRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	recv := func() *courierv1.Job {
		t.Helper()
		j, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	if j := recv(); j.State != courierv1.State_QUEUED {
		t.Fatalf("first message: %v", j)
	}
	if _, err := e.store.Start(e.ctx, jobs.StartParams{ID: id, Attempt: 1, Lease: "test", LeaseFor: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if j := recv(); j.State != courierv1.State_RUNNING || j.Attempt != 1 {
		t.Fatalf("after Start: %v", j)
	}
	if err := e.store.Progress(e.ctx, jobs.ProgressParams{ID: id, Fraction: 0.5, Message: "half"}); err != nil {
		t.Fatal(err)
	}
	if j := recv(); j.Progress.GetFraction() != 0.5 || j.Progress.GetMessage() != "half" {
		t.Fatalf("after Progress: %v", j)
	}
	res, _ := proto.Marshal(&demov1.SleepResult{Attempt: 1})
	if _, err := e.store.Succeed(e.ctx, jobs.SucceedParams{ID: id, ResultType: "courier.demo.v1.SleepResult", Result: res}); err != nil {
		t.Fatal(err)
	}
	j := recv()
	if j.State != courierv1.State_SUCCEEDED || j.Result == nil || j.EndTime == nil {
		t.Fatalf("after Succeed: %v", j)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after a terminal state the stream should end, got %v", err)
	}

	_, err = e.client.WatchJob(e.ctx, &courierv1.WatchJobRequest{Id: "nope"})
	if err == nil {
		s, _ := e.client.WatchJob(e.ctx, &courierv1.WatchJobRequest{Id: "nope"})
		_, err = s.Recv()
	}
	wantCode(t, err, codes.NotFound)
}

func TestListJobs(t *testing.T) {
	e := newEnv(t, nil)
	var ids []string
	for range 5 {
		ids = append(ids, e.enqueue(t, &demov1.Echo{}, "").JobId)
	}
	e.enqueue(t, &demov1.Sleep{}, "")
	if _, err := e.client.CancelJob(e.ctx, &courierv1.CancelJobRequest{Id: ids[0]}); err != nil {
		t.Fatal(err)
	}
	var got []string
	token := ""
	for {
		resp, err := e.client.ListJobs(e.ctx, &courierv1.ListJobsRequest{Type: "courier.demo.v1.Echo", PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range resp.Jobs {
			got = append(got, j.Id)
		}
		if token = resp.NextPageToken; token == "" {
			break
		}
	}
	if len(got) != 5 {
		t.Fatalf("listed %d Echo jobs over pages, want 5: %v", len(got), got)
	}
	for i := range got {
		if got[i] != ids[len(ids)-1-i] {
			t.Fatalf("not newest first: got %v, enqueued %v", got, ids)
		}
	}
	resp, err := e.client.ListJobs(e.ctx, &courierv1.ListJobsRequest{State: courierv1.State_CANCELLED})
	if err != nil || len(resp.Jobs) != 1 || resp.Jobs[0].Id != ids[0] {
		t.Fatalf("list cancelled: %v %v", resp, err)
	}
	resp, err = e.client.ListJobs(e.ctx, &courierv1.ListJobsRequest{Labels: map[string]string{"team": "b"}})
	if err != nil || len(resp.Jobs) != 0 {
		t.Fatalf("list by a label nobody has: %v %v", resp, err)
	}
	_, err = e.client.ListJobs(e.ctx, &courierv1.ListJobsRequest{PageToken: "garbage"})
	wantCode(t, err, codes.InvalidArgument, "page token")
}

// TestLimits: IDs, idempotency keys, labels, label filters, type names and
// page tokens over the limits every store shares get InvalidArgument naming
// the field, the size and the limit, on each store, and the message quotes
// at most the value's start. Before the API bounded them, ~1,000 label
// filters on SQLite (expression depth) and a 1 MB key or ID on PostgreSQL
// (index row size, pg_notify payload) came back as Unavailable with raw SQL.
// Values at the limits are accepted.
func TestLimits(t *testing.T) {
	for _, kind := range testenv.StoreKinds() {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			store := testenv.Store(t, kind)
			_, jc := testenv.JobService(t, store, jobservice.TypeMap{"courier.demo.v1.Echo": {}})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			mb := strings.Repeat("k", 1<<20)
			filters := map[string]string{}
			for i := range 1000 {
				filters[fmt.Sprint("k", i)] = "v"
			}
			labels := func(n, keyLen, valueLen int) map[string]string {
				m := map[string]string{}
				for i := range n {
					k := fmt.Sprintf("%0*d", keyLen, i)
					m[k] = strings.Repeat("v", valueLen)
				}
				return m
			}
			enqueue := func(key string, l map[string]string) error {
				_, err := jc.EnqueueJob(ctx, &courierv1.EnqueueJobRequest{Payload: mustAny(t, &demov1.Echo{}), IdempotencyKey: key, Labels: l})
				return err
			}
			watch := func(id string) error {
				s, err := jc.WatchJob(ctx, &courierv1.WatchJobRequest{Id: id})
				if err == nil {
					_, err = s.Recv()
				}
				return err
			}
			for _, c := range []struct {
				name     string
				err      error
				contains []string
			}{
				{"1000 label filters", func() error {
					_, err := jc.ListJobs(ctx, &courierv1.ListJobsRequest{Labels: filters})
					return err
				}(), []string{"1000 label filters", "limit of 64"}},
				{"1 MB idempotency key", enqueue(mb, nil), []string{"idempotency_key is 1048576 bytes", "limit of 256 bytes"}},
				{"1 MB ID to GetJob", func() error { _, err := jc.GetJob(ctx, &courierv1.GetJobRequest{Id: mb}); return err }(), []string{"id is 1048576 bytes", "limit of 256 bytes"}},
				{"1 MB ID to CancelJob", func() error { _, err := jc.CancelJob(ctx, &courierv1.CancelJobRequest{Id: mb}); return err }(), []string{"id is 1048576 bytes", "limit of 256 bytes"}},
				{"1 MB ID to WatchJob", watch(mb), []string{"id is 1048576 bytes", "limit of 256 bytes"}},
				{"65 labels", enqueue("", labels(65, 2, 1)), []string{"65 labels", "limit of 64"}},
				{"64-byte label key", enqueue("", labels(1, 64, 1)), []string{"labels: key", "64 bytes", "limit of 63 bytes"}},
				{"1 MB label value", enqueue("", map[string]string{"team": mb}), []string{`value of "team" is 1048576 bytes`, "limit of 256 bytes"}},
				{"empty label key", enqueue("", map[string]string{"": "v"}), []string{"a key is empty"}},
				{"1 MB label filter value", func() error {
					_, err := jc.ListJobs(ctx, &courierv1.ListJobsRequest{Labels: map[string]string{"team": mb}})
					return err
				}(), []string{"label filters", "1048576 bytes", "limit of 256 bytes"}},
				{"1 MB type filter", func() error {
					_, err := jc.ListJobs(ctx, &courierv1.ListJobsRequest{Type: mb})
					return err
				}(), []string{"type is 1048576 bytes", "limit of 255 bytes"}},
				{"1 MB page token", func() error {
					_, err := jc.ListJobs(ctx, &courierv1.ListJobsRequest{PageToken: mb})
					return err
				}(), []string{"page_token is 1048576 bytes", "limit of 1024 bytes"}},
				{"1 MB payload type", func() error {
					_, err := jc.EnqueueJob(ctx, &courierv1.EnqueueJobRequest{Payload: &anypb.Any{TypeUrl: "type.googleapis.com/" + mb}})
					return err
				}(), []string{"payload type name is 1048576 bytes", "limit of 255 bytes"}},
			} {
				t.Run(c.name, func(t *testing.T) {
					wantCode(t, c.err, codes.InvalidArgument, c.contains...)
					if msg := status.Convert(c.err).Message(); len(msg) > 600 {
						t.Errorf("the message is %d bytes: it echoes the value: %.200q", len(msg), msg)
					}
				})
			}

			// At the limits, everything is accepted.
			key := strings.Repeat("k", jobs.MaxIdempotencyKeyBytes)
			if err := enqueue(key, labels(jobs.MaxLabels, jobs.MaxLabelKeyBytes, jobs.MaxLabelValueBytes)); err != nil {
				t.Fatalf("enqueue at the limits: %v", err)
			}
			resp, err := jc.ListJobs(ctx, &courierv1.ListJobsRequest{Labels: labels(jobs.MaxLabels, jobs.MaxLabelKeyBytes, jobs.MaxLabelValueBytes)})
			if err != nil || len(resp.Jobs) != 1 || resp.Jobs[0].IdempotencyKey != key {
				t.Fatalf("list by %d label filters at the limits: %v %v", jobs.MaxLabels, resp, err)
			}
			id := strings.Repeat("i", jobs.MaxIDBytes)
			_, err = jc.GetJob(ctx, &courierv1.GetJobRequest{Id: id})
			wantCode(t, err, codes.NotFound)
			_, err = jc.CancelJob(ctx, &courierv1.CancelJobRequest{Id: id})
			wantCode(t, err, codes.NotFound)
			wantCode(t, watch(id), codes.NotFound)
		})
	}
}

func TestCheckRejectsBeforeRecording(t *testing.T) {
	e := newEnv(t, jobservice.TypeMap{"courier.demo.v1.Echo": {Check: func(context.Context) error {
		return status.Error(codes.FailedPrecondition, "not now")
	}}})
	_, err := e.client.EnqueueJob(e.ctx, &courierv1.EnqueueJobRequest{Payload: mustAny(t, &demov1.Echo{})})
	wantCode(t, err, codes.FailedPrecondition, "not now")
	if n, _, _ := e.store.OutboxStats(e.ctx); n != 0 {
		t.Fatalf("outbox has %d entries after a refused enqueue", n)
	}
}

// BenchmarkGetJob measures GetJob over loopback gRPC on SQLite with 16
// concurrent callers: go test -run '^$' -bench GetJob ./backend/jobservice
func BenchmarkGetJob(b *testing.B) {
	e := newEnv(b, nil)
	var ids []string
	for i := range 1000 {
		payload := mustAny(b, &demov1.Echo{Message: fmt.Sprint(i)})
		resp, err := e.client.EnqueueJob(e.ctx, &courierv1.EnqueueJobRequest{Payload: payload})
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, resp.JobId)
	}
	b.SetParallelism(8) // 16 goroutines on 2 CPUs
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := e.client.GetJob(context.Background(), &courierv1.GetJobRequest{Id: ids[i%len(ids)]}); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
}
