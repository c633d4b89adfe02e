package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/courierq/courier"
	"github.com/courierq/courier/emulator"
	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/internal/testenv"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
	"github.com/courierq/courier/wire"
)

// fleetChildEnv, set to a file's path, makes this test binary run as a
// courierd replica (TestMain calls fleetChild) whose Echo handler appends
// "PID JOB_ID" to that file each time it runs a job to completion: the
// handler's own count, which survives the process.
const fleetChildEnv = "COURIER_FLEET_CHILD_LOG"

// fleetChild runs courierd (run, as main does) with a counting Echo
// handler, until SIGTERM or SIGINT. It returns the exit code.
func fleetChild() int {
	f, err := os.OpenFile(os.Getenv(fleetChildEnv), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	pid := os.Getpid()
	reg := handlers.NewRegistry()
	if err := handlers.Register(reg, func(ctx context.Context, job *handlers.Job[*demov1.Echo]) (*demov1.EchoResult, error) {
		select { // some work, so that some jobs run when a replica is killed
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		// One write(2) of a short line to an O_APPEND file: whole, and
		// never interleaved with another process's.
		if _, err := fmt.Fprintf(f, "%d %s\n", pid, job.ID); err != nil {
			return nil, err
		}
		return &demov1.EchoResult{}, nil
	}, handlers.Config{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr, nil, courier.WithRegistry(reg)); err != nil {
		fmt.Fprintln(os.Stderr, "courierd:", err)
		return 1
	}
	return 0
}

// TestFleet: the standalone emulator, three courierd replicas on one
// PostgreSQL schema of their own; 3,000 jobs (10% with run_after) are
// enqueued round-robin through all three; one replica is killed with
// SIGKILL mid-run and started again. Every job SUCCEEDS, every job ran to
// completion exactly once by the handler's own count, and the emulator got
// each outbox entry once: the only duplicates allowed are the documented
// ones after the kill (a job the killed replica ran to completion but had
// not recorded runs again; an entry its relay had claimed but not marked
// sent is published again once the claim lapses), and they must involve
// the killed replica.
func TestFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-process fleet; not in -short")
	}
	_, pubsubEmulator := binaries(t)
	url, schema := testenv.PostgresSchema(t)
	dir := t.TempDir()
	countLog := filepath.Join(dir, "completions.log")

	// The standalone emulator, and a subscription of the test's own on the
	// job type's topic that sees every message published to it.
	emuAddr := freeAddr(t)
	host, port, _ := net.SplitHostPort(emuAddr)
	startChild(t, nil, pubsubEmulator, "--host", host, "--port", port)
	const project, topic = "fleet", "courier-demo-v1-Echo"
	ps, err := pubsub.NewClient(context.Background(), project, emulator.ClientOptions(emuAddr)...)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for { // the emulator may not listen yet
		_, err := ps.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: "projects/" + project + "/topics/" + topic})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("creating the topic on the emulator at %s: %v", emuAddr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	audit := "projects/" + project + "/subscriptions/fleet-audit"
	if _, err := ps.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: audit, Topic: "projects/" + project + "/topics/" + topic, AckDeadlineSeconds: 60}); err != nil {
		t.Fatal(err)
	}

	// Three replicas.
	addrs := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	env := []string{"PUBSUB_EMULATOR_HOST=" + emuAddr, fleetChildEnv + "=" + countLog}
	replica := func(i int) *child {
		cfg := filepath.Join(dir, fmt.Sprintf("replica%d.yaml", i))
		os.WriteFile(cfg, []byte(fmt.Sprintf(`grpc: {addr: %q, devMode: true}
http: {addr: "-"}
pubsub: {project: %s}
store: {driver: postgres, url: %q, schema: %s}
jobs: {relayPollInterval: 100ms}
handlers:
  ackDeadline: 10s
  types:
    courier.demo.v1.Echo: {concurrency: 8, rateScope: process, maxAttempts: 20, minBackoff: 0s, maxBackoff: 1s}
`, addrs[i], project, url, schema)), 0o600)
		return startChild(t, env, os.Args[0], "--config", cfg)
	}
	var children []*child
	var jcs []courierv1.JobServiceClient
	for i := range 3 {
		children = append(children, replica(i))
		jcs = append(jcs, waitServing(t, addrs[i]))
	}

	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	count := func(q string) int {
		t.Helper()
		var c int
		if err := conn.QueryRow(context.Background(), strings.ReplaceAll(q, "S.", schema+".")).Scan(&c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	awaitCount := func(what, q string, want func(int) bool, timeout time.Duration) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for {
			c := count(q)
			if want(c) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: still %d after %v", what, c, timeout)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// 3,000 jobs round-robin, one in ten with run_after 1..4s ahead, while
	// the replicas run them (8 at a time each, 20ms each). An enqueue that
	// fails (its replica was just killed) goes to the next replica, with
	// the same idempotency key, so that no job is recorded twice.
	start := time.Now()
	const n = 3000
	payload, _ := anypb.New(&demov1.Echo{Message: "fleet"})
	ids := make([]string, n)
	var mu sync.Mutex // guards jcs
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			for i := w; i < n; i += 6 {
				req := &courierv1.EnqueueJobRequest{Payload: payload, IdempotencyKey: fmt.Sprint("fleet-", i)}
				if i%10 == 0 {
					req.RunAfter = timestamppb.New(time.Now().Add(time.Duration(1+i%4) * time.Second))
				}
				for try := 0; ; try++ {
					mu.Lock()
					jc := jcs[(i+try)%3]
					mu.Unlock()
					rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					resp, err := jc.EnqueueJob(rctx, req)
					cancel()
					if err == nil {
						ids[i] = resp.JobId
						break
					}
					if try == 20 {
						t.Errorf("enqueue %d: %v", i, err)
						return
					}
				}
			}
		})
	}

	// Kill replica 1 once a tenth of the jobs ran, and start it again.
	awaitCount("jobs succeeded before the kill", `SELECT count(*) FROM S.jobs WHERE state = 'SUCCEEDED'`, func(c int) bool { return c >= n/10 }, 2*time.Minute)
	killedPID := children[1].cmd.Process.Pid
	children[1].kill()
	killedAt := time.Now()
	done := count(`SELECT count(*) FROM S.jobs WHERE state = 'SUCCEEDED'`)
	t.Logf("killed replica 1 (pid %d) with %d of %d jobs succeeded", killedPID, done, n)
	children[1] = replica(1)
	jc1 := waitServing(t, addrs[1])
	mu.Lock()
	jcs[1] = jc1
	mu.Unlock()
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("enqueued %d jobs in %v", n, time.Since(start).Round(time.Millisecond))

	awaitCount("jobs not SUCCEEDED", `SELECT count(*) FROM S.jobs WHERE state <> 'SUCCEEDED'`, func(c int) bool { return c == 0 }, 3*time.Minute)
	if c := count(`SELECT count(*) FROM S.jobs`); c != n {
		t.Fatalf("%d jobs in the store, want %d", c, n)
	}
	t.Logf("all %d jobs SUCCEEDED %v after the first enqueue, %v after the kill", n, time.Since(start).Round(time.Millisecond), time.Since(killedAt).Round(time.Millisecond))
	awaitCount("outbox entries", `SELECT count(*) FROM S.outbox`, func(c int) bool { return c == 0 }, time.Minute)

	// The handler's own count: one completion per job, except a job the
	// killed replica completed without recording it.
	f, err := os.Open(countLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	completions := map[string][]int{} // job → pids, in order
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var pid int
		var id string
		if _, err := fmt.Sscan(sc.Text(), &pid, &id); err != nil {
			t.Fatalf("completion log line %q: %v", sc.Text(), err)
		}
		completions[id] = append(completions[id], pid)
	}
	again := 0
	for _, id := range ids {
		pids := completions[id]
		switch {
		case len(pids) == 0:
			t.Errorf("job %s SUCCEEDED but its handler never completed", id)
		case len(pids) == 2 && pids[0] == killedPID:
			again++ // completed by the killed replica, not recorded: ran again
		case len(pids) > 1:
			t.Errorf("job %s ran to completion %d times (pids %v); only a job the killed replica (%d) completed may run twice", id, len(pids), pids, killedPID)
		}
	}

	// What the emulator received: every job's message once, but for entries
	// the killed relay had claimed (published again after the kill).
	seen := map[string][]time.Time{}
	deadline := time.Now().Add(time.Minute)
	for {
		pctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		resp, err := ps.SubscriptionAdminClient.Pull(pctx, &pubsubpb.PullRequest{Subscription: audit, MaxMessages: 1000})
		cancel()
		if err != nil || len(resp.ReceivedMessages) == 0 {
			if len(seen) >= n || time.Now().After(deadline) {
				break
			}
			continue
		}
		var acks []string
		for _, m := range resp.ReceivedMessages {
			id := wire.Parse(m.Message.Attributes).ID
			seen[id] = append(seen[id], m.Message.PublishTime.AsTime())
			acks = append(acks, m.AckId)
		}
		if err := ps.SubscriptionAdminClient.Acknowledge(context.Background(), &pubsubpb.AcknowledgeRequest{Subscription: audit, AckIds: acks}); err != nil {
			t.Fatal(err)
		}
	}
	republished := 0
	for _, id := range ids {
		times := seen[id]
		switch {
		case len(times) == 0:
			t.Errorf("job %s: the emulator never received its message", id)
		case len(times) > 1:
			for _, at := range times[1:] {
				if at.Before(killedAt.Add(-time.Second)) {
					t.Errorf("job %s: its message was published %d times, a copy before the kill (at %v, kill at %v)", id, len(times), at, killedAt)
				}
			}
			republished++
		}
	}
	t.Logf("%d jobs on 3 replicas, one killed: all SUCCEEDED; %d ran to completion again after the kill (completed but not recorded by the killed replica); %d messages published again after the kill (claimed by the killed relay)",
		n, again, republished)
}
