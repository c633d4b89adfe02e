package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

// TestDemoSurvivesRestart: the demo (courierd with no --config: the
// embedded emulator keeping its state in .courier/pubsub, SQLite in
// .courier/jobs.db) works through 2,000 Sleep jobs; it is stopped mid-run
// with SIGKILL, or with SIGTERM, and started again in the same folder:
// every job SUCCEEDS, none is left QUEUED.
func TestDemoSurvivesRestart(t *testing.T) {
	courierd, _ := binaries(t)
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
			env := []string{"COURIER_GRPC_ADDR=" + grpcAddr, "COURIER_HTTP_ADDR=" + httpAddr}
			start := func() *child { return startChildIn(t, dir, env, courierd) }
			first := start()
			jc := waitServing(t, grpcAddr)
			payload, _ := anypb.New(&demov1.Sleep{Duration: durationpb.New(200 * time.Millisecond)})
			ids := make([]string, 2000)
			for i := range ids {
				resp, err := jc.EnqueueJob(context.Background(), &courierv1.EnqueueJobRequest{Payload: payload})
				if err != nil {
					t.Fatalf("enqueue %d: %v", i, err)
				}
				ids[i] = resp.JobId
			}
			// Stop it while it works: once some jobs are done and most are not.
			waitSucceeded(t, jc, ids[:100])
			first.cmd.Process.Signal(sig)
			<-first.exited
			if sig == syscall.SIGTERM && first.cmd.ProcessState.ExitCode() != 0 {
				t.Errorf("courierd exited %d after SIGTERM, want 0", first.cmd.ProcessState.ExitCode())
			}
			start()
			allSucceed(t, waitServing(t, grpcAddr), ids)
		})
	}
}

// waitSucceeded waits until every job of ids has SUCCEEDED.
func waitSucceeded(t *testing.T, jc courierv1.JobServiceClient, ids []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, id := range ids {
		j, err := awaitEnd(ctx, jc, id)
		if err != nil || j.GetState() != courierv1.State_SUCCEEDED {
			t.Fatalf("job %s: %v %v", id, j, err)
		}
	}
}

// startChildIn starts a process the test owns, in the working directory
// dir ("" is the test's), logging to a file shown when the test fails; it
// is stopped (SIGTERM, then SIGKILL) at cleanup.
func startChildIn(t *testing.T, dir string, env []string, name string, args ...string) *child {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	logf, err := os.Create(filepath.Join(t.TempDir(), fmt.Sprintf("%s-%d.log", filepath.Base(name), time.Now().UnixNano())))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, exited: make(chan struct{})}
	go func() { cmd.Wait(); logf.Close(); close(c.exited) }()
	t.Cleanup(func() {
		c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(30 * time.Second):
			c.kill()
		}
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("%s output:\n%s", name, tail(string(b), 40))
		}
	})
	return c
}
