package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/sqlite"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

// TestSIGTERMWithOpenWatch: courierd runs a long job that a client
// watches; on SIGTERM the watch ends at once with Unavailable (the client
// can resume it elsewhere), the running handler gets the shutdown budget
// and is then cancelled (its job goes back to QUEUED), and the process exits
// 0 within the shutdown timeout.
func TestSIGTERMWithOpenWatch(t *testing.T) {
	courierd, _ := binaries(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	const shutdownTimeout = 3 * time.Second
	cfg := filepath.Join(dir, "courierd.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`grpc: {addr: %q, devMode: true}
http: {addr: "-"}
pubsub: {emulator: embedded}
store: {path: %q}
shutdownTimeout: %s
handlers: {demo: true}
`, addr, filepath.Join(dir, "jobs.db"), shutdownTimeout)), 0o600)
	c := startChild(t, nil, courierd, "--config", cfg)
	jc := waitServing(t, addr)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	payload, _ := anypb.New(&demov1.Sleep{Duration: durationpb.New(time.Hour)})
	resp, err := jc.EnqueueJob(ctx, &courierv1.EnqueueJobRequest{Payload: payload})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := jc.WatchJob(ctx, &courierv1.WatchJobRequest{Id: resp.JobId})
	if err != nil {
		t.Fatal(err)
	}
	for {
		j, err := stream.Recv()
		if err != nil {
			t.Fatalf("watch before SIGTERM: %v", err)
		}
		if j.GetState() == courierv1.State_RUNNING {
			break
		}
	}

	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := stream.Recv()
		if err == nil {
			continue // a change sent before the shutdown
		}
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("the watch ended with %v, want Unavailable", err)
		}
		break
	}
	select {
	case <-c.exited:
	case <-time.After(shutdownTimeout + 20*time.Second):
		t.Fatalf("courierd still running %v after SIGTERM (shutdown timeout %v)", shutdownTimeout+20*time.Second, shutdownTimeout)
	}
	if code := c.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("courierd exited %d after SIGTERM, want 0", code)
	}
	store, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(dir, "jobs.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	j, err := store.Get(ctx, resp.JobId)
	if err != nil || j.State != jobs.Queued || !strings.Contains(j.ErrorMessage, "worker stopped") {
		t.Fatalf("job after the shutdown: %+v, %v; want QUEUED again, saying the worker stopped", j, err)
	}
}
