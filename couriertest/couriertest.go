// Package couriertest runs courier inside a Go test: Start gives a test a
// whole Node (courier's own Pub/Sub emulator in the test process, a SQLite
// job store in t.TempDir(), gRPC and HTTP on free loopback ports) with the
// test's handler types, a typed client of it, and assertions on its jobs
// in the spirit of rivertest.RequireInserted. Everything stops when the
// test ends.
//
// It is for tests of programs that use courier (and for courier's own). It
// is not for production: the Node runs in dev mode (no authentication) on
// loopback.
package couriertest

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/courierq/courier"
	"github.com/courierq/courier/client"
	"github.com/courierq/courier/config"
	"github.com/courierq/courier/handlers"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

// Timeout bounds each wait of the helpers (a job to end, the Node to be
// ready), so a test that goes wrong fails instead of hanging.
var Timeout = time.Minute

// Node is a running courier.Node and a client of it.
type Node struct {
	*courier.Node
	// Conn is a gRPC connection to the Node's API.
	Conn *grpc.ClientConn
	// Jobs is the typed client on Conn.
	Jobs *client.Jobs
}

// Config returns the configuration Start uses: courier's emulator embedded
// in memory and a SQLite store in dir (StartConfig adds gRPC and HTTP on free
// loopback ports in dev mode). Change it and pass it to StartConfig to test
// other settings (handlers.types, say).
func Config(dir string) *config.Config {
	return &config.Config{
		PubSub: config.PubSub{Emulator: "embedded"},
		Store:  config.Store{Driver: "sqlite", Path: filepath.Join(dir, "jobs.db")},
	}
}

// Start runs a Node with the handler types of reg (nil: none) on the
// configuration of Config, and stops it when the test ends. opts go to
// courier.New.
func Start(t testing.TB, reg *handlers.Registry, opts ...courier.Option) *Node {
	t.Helper()
	if reg != nil {
		opts = append([]courier.Option{courier.WithRegistry(reg)}, opts...)
	}
	return StartConfig(t, Config(t.TempDir()), opts...)
}

// StartConfig runs a Node on cfg and stops it when the test ends. Empty
// gRPC and HTTP addresses become free loopback ports, dev mode is turned
// on for them, and logs below warnings are dropped unless opts bring a
// logger.
func StartConfig(t testing.TB, cfg *config.Config, opts ...courier.Option) *Node {
	t.Helper()
	c := *cfg
	if c.GRPC.Addr == "" {
		c.GRPC.Addr, c.GRPC.DevMode = "127.0.0.1:0", true
	}
	if c.HTTP.Addr == "" {
		c.HTTP.Addr = "127.0.0.1:0"
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	n, err := courier.New(&c, append([]courier.Option{courier.WithLogger(quiet)}, opts...)...)
	if err != nil {
		t.Fatalf("couriertest: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Run(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), Timeout)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Errorf("couriertest: shutting the node down: %v", err)
		}
		<-done
	})
	select {
	case <-n.Ready():
	case err := <-done:
		t.Fatalf("couriertest: the node did not start: %v", err)
	case <-time.After(Timeout):
		t.Fatalf("couriertest: the node was not ready after %v", Timeout)
	}
	tn := &Node{Node: n}
	if addr := n.GRPCAddr(); addr != "" {
		conn, err := client.Dial(addr, client.Config{})
		if err != nil {
			t.Fatalf("couriertest: dialling the node: %v", err)
		}
		t.Cleanup(func() { conn.Close() })
		tn.Conn, tn.Jobs = conn, client.NewJobs(conn)
	}
	return tn
}

// Enqueue enqueues msg through the API and returns the job's ID; it fails
// the test if the API refuses it.
func (n *Node) Enqueue(t testing.TB, msg proto.Message, opts client.EnqueueOptions) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	id, err := n.Jobs.Enqueue(ctx, msg, opts)
	if err != nil {
		t.Fatalf("couriertest: enqueueing %s: %v", msg.ProtoReflect().Descriptor().FullName(), err)
	}
	return id
}

// Wait waits for job id to end and returns it, whatever its end; result, if
// not nil, receives a SUCCEEDED job's result.
func (n *Node) Wait(t testing.TB, id string, result proto.Message) *courierv1.Job {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	job, err := n.Jobs.Wait(ctx, id, result)
	if job == nil {
		t.Fatalf("couriertest: waiting for job %s: %v", id, err)
	}
	return job
}

// RequireSucceeded waits for job id to end and fails the test unless it
// SUCCEEDED; result, if not nil, receives the decoded result.
func (n *Node) RequireSucceeded(t testing.TB, id string, result proto.Message) *courierv1.Job {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	job, err := n.Jobs.Wait(ctx, id, result)
	if err != nil {
		t.Fatalf("couriertest: job %s did not succeed: %v", id, err)
	}
	return job
}

// RequireEnqueued fails the test unless a job of type T is recorded (in any
// state) whose payload match accepts (nil accepts any), and returns the
// newest such job and its decoded payload. Like rivertest.RequireInserted,
// it checks what your code enqueued without running a worker's handler.
func RequireEnqueued[T proto.Message](t testing.TB, n *Node, match func(T) bool) (*courierv1.Job, T) {
	t.Helper()
	var zero T
	typ := string(zero.ProtoReflect().Descriptor().FullName())
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	var seen int
	req := &courierv1.ListJobsRequest{Type: typ, PageSize: 1000}
	for {
		resp, err := n.Jobs.Service().ListJobs(ctx, req)
		if err != nil {
			t.Fatalf("couriertest: listing jobs of %s: %v", typ, err)
		}
		for _, j := range resp.GetJobs() {
			seen++
			payload := zero.ProtoReflect().New().Interface().(T)
			if err := j.GetPayload().UnmarshalTo(payload); err != nil {
				t.Fatalf("couriertest: job %s has a payload that is not a %s: %v", j.GetId(), typ, err)
			}
			if match == nil || match(payload) {
				return j, payload
			}
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	if match != nil {
		t.Fatalf("couriertest: no job of %s matches (%d of that type recorded)", typ, seen)
	}
	t.Fatalf("couriertest: no job of %s is recorded", typ)
	return nil, zero
}
