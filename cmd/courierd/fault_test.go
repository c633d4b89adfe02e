package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/courierq/courier/client"
	"github.com/courierq/courier/emulator"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// binaries builds courierd and pubsub-emulator once per test binary.
func binaries(t *testing.T) (courierd, pubsubEmulator string) {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "courier-fault-bin-")
		if buildErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", buildDir+"/", "github.com/courierq/courier/cmd/courierd", "github.com/courierq/courier/cmd/pubsub-emulator").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "courierd"), filepath.Join(buildDir, "pubsub-emulator")
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// child is a process the test started; it is killed at cleanup.
type child struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has exited
}

func startChild(t *testing.T, env []string, name string, args ...string) *child {
	t.Helper()
	return startChildIn(t, "", env, name, args...)
}

// kill sends SIGKILL and waits for the process to exit.
func (c *child) kill() {
	c.cmd.Process.Kill()
	<-c.exited
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitServing blocks until a gRPC server on addr answers health checks.
func waitServing(t *testing.T, addr string) courierv1.JobServiceClient {
	t.Helper()
	conn, err := client.Dial(addr, client.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "courier.v1.JobService"}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("courierd on %s: %v", addr, err)
	}
	return courierv1.NewJobServiceClient(conn)
}

// awaitState watches job id until it ends and returns its final state.
func awaitEnd(ctx context.Context, jc courierv1.JobServiceClient, id string) (*courierv1.Job, error) {
	stream, err := jc.WatchJob(ctx, &courierv1.WatchJobRequest{Id: id})
	if err != nil {
		return nil, err
	}
	var last *courierv1.Job
	for {
		j, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return last, nil
		}
		if err != nil {
			return last, err
		}
		last = j
	}
}

func enqueueSleeps(t *testing.T, jc courierv1.JobServiceClient, n int, d time.Duration) []string {
	t.Helper()
	payload, _ := anypb.New(&demov1.Sleep{Duration: durationpb.New(d)})
	ids := make([]string, n)
	for i := range ids {
		resp, err := jc.EnqueueJob(context.Background(), &courierv1.EnqueueJobRequest{Payload: payload})
		if err != nil {
			t.Fatalf("enqueue %d: %v", i, err)
		}
		ids[i] = resp.JobId
	}
	return ids
}

// allSucceed watches every job to its end and fails the test for any that
// did not succeed.
func allSucceed(t *testing.T, jc courierv1.JobServiceClient, ids []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	failed := 0
	for _, id := range ids {
		j, err := awaitEnd(ctx, jc, id)
		if err != nil || j.GetState() != courierv1.State_SUCCEEDED {
			failed++
			if failed <= 5 {
				t.Errorf("job %s: %v %v", id, j, err)
			}
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d jobs did not succeed", failed, len(ids))
	}
}

// TestKillWorkerMidRun: courierd is killed with SIGKILL while it works
// through 2,000 jobs; after a restart on the same store and emulator, all
// 2,000 reach SUCCEEDED.
func TestKillWorkerMidRun(t *testing.T) {
	courierd, _ := binaries(t)
	emu, err := emulator.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := filepath.Join(dir, "courierd.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`grpc: {addr: %q, devMode: true}
http: {addr: "-"}
pubsub: {project: fault-kill}
store: {path: %q}
handlers:
  demo: true
  ackDeadline: 10s
  types:
    courier.demo.v1.Sleep: {concurrency: 20, maxAttempts: 10, minBackoff: 0s, maxBackoff: 1s}
`, addr, filepath.Join(dir, "jobs.db"))), 0o600)
	env := []string{"PUBSUB_EMULATOR_HOST=" + emu.Addr}

	first := startChild(t, env, courierd, "--config", cfg)
	jc := waitServing(t, addr)
	const n = 2000
	ids := enqueueSleeps(t, jc, n, 20*time.Millisecond)
	// Kill it once a tenth of the jobs are done: the rest are queued,
	// running, or not yet published.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if j, err := awaitEnd(ctx, jc, ids[n/10]); err != nil || j.GetState() != courierv1.State_SUCCEEDED {
		t.Fatalf("job %d before the kill: %v %v", n/10, j, err)
	}
	first.kill()
	j, err := jc.GetJob(context.Background(), &courierv1.GetJobRequest{Id: ids[n-1]})
	if err == nil {
		t.Fatalf("the killed courierd still answers: %v", j)
	}

	startChild(t, env, courierd, "--config", cfg)
	jc = waitServing(t, addr)
	allSucceed(t, jc, ids)
}

// TestEmulatorRestartDuringEnqueues: courier's standalone emulator, with a
// data dir, is killed in the middle of 500 enqueues and restarted; every
// enqueue succeeds (the outbox holds the jobs) and all 500 jobs run.
func TestEmulatorRestartDuringEnqueues(t *testing.T) {
	_, pubsubEmulator := binaries(t)
	dataDir := t.TempDir()
	emuAddr := freeAddr(t)
	host, port, _ := net.SplitHostPort(emuAddr)
	startEmu := func() *child {
		c := startChild(t, nil, pubsubEmulator, "--host", host, "--port", port, "--data-dir", dataDir)
		conn, err := client.Dial(emuAddr, client.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// Wait until it accepts connections.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := pubsubpb.NewPublisherClient(conn).ListTopics(ctx, &pubsubpb.ListTopicsRequest{Project: "projects/fault-emu"}, grpc.WaitForReady(true)); err != nil {
			t.Fatalf("emulator on %s: %v", emuAddr, err)
		}
		return c
	}
	emu := startEmu()
	t.Setenv("PUBSUB_EMULATOR_HOST", emuAddr)
	st := startCourierd(t, fmt.Sprintf(`pubsub: {project: fault-emu}
store: {path: %q}
handlers:
  demo: true
  types:
    courier.demo.v1.Sleep: {maxAttempts: 10, minBackoff: 0s, maxBackoff: 1s}
`, filepath.Join(t.TempDir(), "jobs.db")))
	conn, err := client.Dial(st.GRPCAddr(), client.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	jc := courierv1.NewJobServiceClient(conn)

	ids := enqueueSleeps(t, jc, 250, 0)
	emu.kill()
	ids = append(ids, enqueueSleeps(t, jc, 250, 0)...)
	startEmu()
	allSucceed(t, jc, ids)
}
