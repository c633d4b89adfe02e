package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/courierq/courier"
	"github.com/courierq/courier/client"
	"github.com/courierq/courier/internal/testenv"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
	hellov1 "github.com/courierq/courier/proto/hello/v1"
	"github.com/courierq/courier/publisher"
)

func TestMain(m *testing.M) {
	if os.Getenv(fleetChildEnv) != "" { // this binary runs as a fleet replica (fleet_test.go)
		os.Exit(fleetChild())
	}
	testenv.Main(m)
}

// startCourierd runs courierd in this process with the given config body
// (gRPC and HTTP on free ports are added) and returns the ready stack.
func startCourierd(t *testing.T, body string, opts ...courier.Option) *courier.Node {
	t.Helper()
	return startCourierdDoc(t, "grpc:\n  addr: 127.0.0.1:0\n  devMode: true\nhttp:\n  addr: 127.0.0.1:0\n"+body, opts...)
}

// startCourierdDoc runs courierd in this process with the whole config
// document doc (and opts for courier.New) and returns the ready Node.
func startCourierdDoc(t *testing.T, doc string, opts ...courier.Option) *courier.Node {
	t.Helper()
	cfgPath := filepath.Join(t.TempDir(), "courierd.yaml")
	if err := os.WriteFile(cfgPath, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	readyc := make(chan *courier.Node, 1)
	done := make(chan error, 1)
	var logw io.Writer = io.Discard
	level := "warn"
	if p := os.Getenv("COURIER_TEST_LOG"); p != "" { // debugging aid: courierd's log to a file
		f, err := os.OpenFile(p, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		logw, level = f, "debug"
	}
	go func() {
		done <- run(ctx, []string{"--config", cfgPath, "--log-level", level}, logw, func(st *courier.Node) { readyc <- st }, opts...)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("courierd run after cancel: %v", err)
		}
	})
	select {
	case st := <-readyc:
		return st
	case err := <-done:
		done <- nil // for the cleanup
		t.Fatalf("courierd run: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("courierd did not become ready in 60s")
	}
	return nil
}

func demoConfig(t *testing.T) string {
	return fmt.Sprintf("pubsub:\n  emulator: embedded\nstore:\n  path: %s\nhandlers:\n  demo: true\n  types:\n    courier.demo.v1.Sleep: {maxAttempts: 5, minBackoff: 0s, maxBackoff: 1s}\n    courier.demo.v1.Echo: {maxAttempts: 3, minBackoff: 0s, maxBackoff: 1s}\n", filepath.Join(t.TempDir(), "jobs.db"))
}

func TestRunServesAndShutsDown(t *testing.T) {
	st := startCourierd(t, demoConfig(t))
	ctx := context.Background()
	conn, err := client.Dial(st.GRPCAddr(), client.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := hellov1.NewHelloClient(conn).SayHello(ctx, &hellov1.SayHelloRequest{Name: "x"})
	if err != nil || resp.Message != "Hello, x!" {
		t.Fatalf("SayHello: %v %v", resp, err)
	}
	for _, svc := range []string{"hello.v1.Hello", "courier.v1.JobService"} {
		h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health of %s: %v %v", svc, h, err)
		}
	}
	r, err := http.Get("http://" + st.HTTPAddr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != 200 || strings.TrimSpace(string(body)) != "ok" {
		t.Fatalf("/healthz: %d %q", r.StatusCode, body)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"grpc:\n  addr: 0.0.0.0:0\n  devMode: true\npubsub: {emulator: embedded}\n", "loopback"},
		{"pubsub: {emulator: embedded}\nstore: {path: " + filepath.Join(t.TempDir(), "jobs.db") + "}\nhandlers:\n  types:\n    no.such.Type: {}\n", "no.such.Type"},
		{"grpc: {addr: 127.0.0.1:0}\n", "pubsub.project"},
		// A misspelt method in a policy would leave EnqueueJob under the
		// service-wide rule; a policy for a service not hosted does nothing.
		{"grpc:\n  addr: 127.0.0.1:0\n  policies:\n    courier.v1.JobService:\n      roles: [reader]\n      methods: {EnqueueJobb: {roles: [writer]}}\npubsub: {emulator: embedded}\nstore: {path: " + filepath.Join(t.TempDir(), "jobs.db") + "}\nhttp: {addr: '-'}\n",
			"config: grpc.policies.courier.v1.JobService.methods: EnqueueJobb: courier.v1.JobService has no such method; its methods are " + strings.Join(jobServiceMethods(), ", ")},
		{"grpc:\n  addr: 127.0.0.1:0\n  policies:\n    courier.v1.JobServce: {roles: [reader]}\npubsub: {emulator: embedded}\nstore: {path: " + filepath.Join(t.TempDir(), "jobs.db") + "}\nhttp: {addr: '-'}\n",
			"config: grpc.policies: courier.v1.JobServce: no such service is hosted; the services are courier.v1.JobService, hello.v1.Hello"},
	} {
		cfgPath := filepath.Join(t.TempDir(), "bad.yaml")
		os.WriteFile(cfgPath, []byte(tc.doc), 0o600)
		// Bounded: a config wrongly accepted serves until ctx ends, then
		// run returns nil and the case fails.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := run(ctx, []string{"--config", cfgPath}, io.Discard, nil)
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config %q: got %v, want an error containing %q", tc.doc, err, tc.want)
		}
	}
}

// watchUntilDone follows a job to its end and returns every state seen.
func watchUntilDone(t *testing.T, jc courierv1.JobServiceClient, id string) (*courierv1.Job, []*courierv1.Job) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stream, err := jc.WatchJob(ctx, &courierv1.WatchJobRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	var seen []*courierv1.Job
	for {
		j, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("watching %s: %v (seen %v)", id, err, seen)
		}
		seen = append(seen, j)
	}
	if len(seen) == 0 {
		t.Fatalf("watch of %s sent nothing", id)
	}
	return seen[len(seen)-1], seen
}

func enqueue(t *testing.T, jc courierv1.JobServiceClient, m *anypb.Any, key string) *courierv1.EnqueueJobResponse {
	t.Helper()
	resp, err := jc.EnqueueJob(context.Background(), &courierv1.EnqueueJobRequest{Payload: m, IdempotencyKey: key})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestFullPath runs jobs end to end through courierd on each emulator and
// store (SQLite, PostgreSQL, Spanner on its emulator): gRPC enqueue and fire-and-forget publish reach SUCCEEDED with their
// results; retries; permanent failure; idempotency; cancel.
func TestFullPath(t *testing.T) {
	for _, tc := range []struct{ name, emulator, store string }{
		{"courier emulator, sqlite", "courier", "sqlite"},
		{"courier emulator, postgres", "courier", "postgres"},
		{"google emulator, sqlite", "google", "sqlite"},
		{"google emulator, postgres", "google", "postgres"},
		{"courier emulator, spanner", "courier", "spanner"},
		{"google emulator, spanner", "google", "spanner"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := demoConfig(t)
			if tc.emulator == "google" {
				srv := testenv.Google(t)
				t.Setenv("PUBSUB_EMULATOR_HOST", srv.Addr)
				body = strings.Replace(body, "pubsub:\n  emulator: embedded\n", fmt.Sprintf("pubsub:\n  project: p-%d\n", time.Now().UnixNano()), 1)
			}
			if tc.store == "postgres" {
				url, schema := testenv.PostgresSchema(t)
				body = strings.Replace(body, "store:\n", fmt.Sprintf("store:\n  driver: postgres\n  url: %q\n  schema: %s\n", url, schema), 1)
			}
			if tc.store == "spanner" {
				// The database on the Spanner emulator (SPANNER_EMULATOR_HOST).
				db := testenv.SpannerDatabase(t)
				body = strings.Replace(body, "store:\n", fmt.Sprintf("store:\n  driver: spanner\n  database: %s\n", db), 1)
			}
			st := startCourierd(t, body)
			conn, err := client.Dial(st.GRPCAddr(), client.Config{})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			jc := courierv1.NewJobServiceClient(conn)
			anyOf := func(m proto.Message) *anypb.Any {
				a, err := anypb.New(m)
				if err != nil {
					t.Fatal(err)
				}
				return a
			}

			// gRPC enqueue.
			id := enqueue(t, jc, anyOf(&demov1.Echo{Message: "hi"}), "").JobId
			j, _ := watchUntilDone(t, jc, id)
			var res demov1.EchoResult
			if j.State != courierv1.State_SUCCEEDED || j.Result.UnmarshalTo(&res) != nil || res.Message != "hi" {
				t.Fatalf("Echo by gRPC: %v", j)
			}

			// Fire-and-forget publish: the worker records the job on receipt.
			pub, err := publisher.New(st.PubSub(), publisher.Config{NewID: func() (string, error) { return "fire-" + tc.store, nil }})
			if err != nil {
				t.Fatal(err)
			}
			created, stopWatching := st.Store().Subscribe("fire-" + tc.store)
			defer stopWatching()
			pid, err := pub.Publish(context.Background(), &demov1.Echo{Message: "fire"})
			if err != nil {
				t.Fatal(err)
			}
			if err := pub.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			select {
			case <-created:
			case <-time.After(60 * time.Second):
				t.Fatal("the published job was not recorded in 60s")
			}
			pj, _ := watchUntilDone(t, jc, pid)
			if pj.State != courierv1.State_SUCCEEDED || pj.Result.UnmarshalTo(&res) != nil || res.Message != "fire" {
				t.Fatalf("published Echo: %v", pj)
			}

			// Retries: fails twice, succeeds on attempt 3.
			id = enqueue(t, jc, anyOf(&demov1.Sleep{FailAttempts: 2}), "").JobId
			j, _ = watchUntilDone(t, jc, id)
			if j.State != courierv1.State_SUCCEEDED || j.Attempt != 3 {
				t.Fatalf("Sleep fail_attempts 2: %v", j)
			}

			// Permanent failure: one attempt.
			id = enqueue(t, jc, anyOf(&demov1.Sleep{PermanentFailure: true}), "").JobId
			j, _ = watchUntilDone(t, jc, id)
			if j.State != courierv1.State_FAILED || j.Attempt != 1 || j.Error.GetMessage() == "" {
				t.Fatalf("Sleep permanent_failure: %v", j)
			}

			// Idempotency key.
			first := enqueue(t, jc, anyOf(&demov1.Echo{Message: "once"}), "key-1")
			again := enqueue(t, jc, anyOf(&demov1.Echo{Message: "once"}), "key-1")
			if again.JobId != first.JobId || !again.Duplicate {
				t.Fatalf("idempotency: %v then %v", first, again)
			}

			// Cancel a queued job (held back by run_after): it ends CANCELLED and never runs.
			qresp, err := jc.EnqueueJob(context.Background(), &courierv1.EnqueueJobRequest{Payload: anyOf(&demov1.Echo{Message: "later"}), RunAfter: timestamppb.New(time.Now().Add(time.Hour))})
			if err != nil {
				t.Fatal(err)
			}
			if q, err := jc.CancelJob(context.Background(), &courierv1.CancelJobRequest{Id: qresp.JobId}); err != nil || q.State != courierv1.State_CANCELLED || q.StartTime != nil {
				t.Fatalf("cancel queued: %v %v", q, err)
			}
			// (That Cancel drops the job's outbox entry is checked by the store
			// conformance suite, jobs/jobstest: Cancel.)

			// Cancel a running job.
			id = enqueue(t, jc, anyOf(&demov1.Sleep{Duration: durationpb.New(time.Hour)}), "").JobId
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			stream, err := jc.WatchJob(ctx, &courierv1.WatchJobRequest{Id: id})
			if err != nil {
				t.Fatal(err)
			}
			for {
				j, err := stream.Recv()
				if err != nil {
					t.Fatalf("watching the long Sleep: %v", err)
				}
				if j.State == courierv1.State_RUNNING {
					break
				}
			}
			if _, err := jc.CancelJob(ctx, &courierv1.CancelJobRequest{Id: id}); err != nil {
				t.Fatal(err)
			}
			j, _ = watchUntilDone(t, jc, id)
			if j.State != courierv1.State_CANCELLED {
				t.Fatalf("cancelled running Sleep: %v", j)
			}
			_, err = jc.CancelJob(ctx, &courierv1.CancelJobRequest{Id: id})
			if status.Code(err) != codes.FailedPrecondition {
				t.Fatalf("cancel of a cancelled job: %v", err)
			}
		})
	}
}

// jobServiceMethods lists JobService's method names, sorted, as a policy
// error lists them.
func jobServiceMethods() []string {
	var names []string
	for _, m := range courierv1.JobService_ServiceDesc.Methods {
		names = append(names, m.MethodName)
	}
	for _, st := range courierv1.JobService_ServiceDesc.Streams {
		names = append(names, st.StreamName)
	}
	slices.Sort(names)
	return names
}
