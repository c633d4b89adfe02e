package courier_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/courierq/courier"
	"github.com/courierq/courier/client"
	"github.com/courierq/courier/config"
	"github.com/courierq/courier/couriertest"
	"github.com/courierq/courier/emulator"
	"github.com/courierq/courier/handlers"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
)

// countingRegistry registers an Echo handler that counts its runs per job.
func countingRegistry(t *testing.T) (*handlers.Registry, func(id string) int) {
	reg, runs, _ := watchedRegistry(t)
	return reg, runs
}

// watchedRegistry is countingRegistry that also sends the ID of each job
// whose handler ran (dropped when nobody listens).
func watchedRegistry(t *testing.T) (*handlers.Registry, func(id string) int, <-chan string) {
	var mu sync.Mutex
	runs := map[string]int{}
	ran := make(chan string, 100)
	reg := handlers.NewRegistry()
	if err := handlers.Register(reg, func(ctx context.Context, job *handlers.Job[*demov1.Echo]) (*demov1.EchoResult, error) {
		mu.Lock()
		runs[job.ID]++
		mu.Unlock()
		select {
		case ran <- job.ID:
		default:
		}
		return &demov1.EchoResult{Message: job.Payload.GetMessage()}, nil
	}, handlers.Config{}); err != nil {
		t.Fatal(err)
	}
	return reg, func(id string) int { mu.Lock(); defer mu.Unlock(); return runs[id] }, ran
}

// inMemoryEmulator starts courier's emulator in the test process with no
// port and no data dir, and a client of it; both close with the test or
// when close is called.
func inMemoryEmulator(t *testing.T) (*pubsub.Client, func()) {
	t.Helper()
	emu, err := emulator.Start(context.Background(), emulator.Config{InProcess: true})
	if err != nil {
		t.Fatal(err)
	}
	c, err := pubsub.NewClient(context.Background(), "rescue", emu.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	closeAll := func() { once.Do(func() { c.Close(); emu.Close() }) }
	t.Cleanup(closeAll)
	return c, closeAll
}

// TestRescuerRepublishesLostMessages: jobs are recorded and their messages
// published into an in-memory emulator while no worker runs; the emulator
// restarts (the messages are gone, the outbox is empty); the rescuer of the
// next Node republishes each job after jobs.rescueAfter, and each runs once
// and succeeds.
func TestRescuerRepublishesLostMessages(t *testing.T) {
	dir := t.TempDir()
	cfg := couriertest.Config(dir)
	cfg.Jobs.RescueAfter = config.Duration(10 * time.Second)
	reg, runs := countingRegistry(t)

	// A worker creates the topic and subscription on the first emulator,
	// then stops; an API-only Node records jobs and publishes them there.
	c1, close1 := inMemoryEmulator(t)
	couriertest.StartConfig(t, cfg, courier.WithRegistry(reg), courier.WithPubSubClient(c1)).Node.Close()
	api := *cfg
	api.Role = "api"
	n := couriertest.StartConfig(t, &api, courier.WithRegistry(reg), courier.WithPubSubClient(c1))
	var ids []string
	for i := range 20 {
		ids = append(ids, n.Enqueue(t, &demov1.Echo{Message: fmt.Sprint(i)}, client.EnqueueOptions{}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), couriertest.Timeout)
	defer cancel()
	for { // the relay has published them all: the outbox is empty
		count, _, err := n.Store().OutboxStats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if count == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d outbox entries never published", count)
		case <-time.After(20 * time.Millisecond):
		}
	}
	n.Close()
	close1() // the in-memory emulator goes, and the messages with it

	c2, _ := inMemoryEmulator(t)
	n2 := couriertest.StartConfig(t, cfg, courier.WithRegistry(reg), courier.WithPubSubClient(c2))
	for _, id := range ids {
		n2.RequireSucceeded(t, id, nil)
		if got := runs(id); got != 1 {
			t.Errorf("job %s ran %d times, want once", id, got)
		}
	}
}

// TestEmbeddedEmulatorListensOnNoPort: outside dev mode as in it, the
// embedded emulator (no emulatorAddr) opens no port: the process listens on
// the gRPC and HTTP addresses only.
func TestEmbeddedEmulatorListensOnNoPort(t *testing.T) {
	before := listening(t)
	n := couriertest.Start(t, nil)
	var added []string
	for p := range listening(t) {
		if !before[p] {
			added = append(added, p)
		}
	}
	sort.Strings(added)
	want := []string{portOf(n.GRPCAddr()), portOf(n.HTTPAddr())}
	sort.Strings(want)
	if strings.Join(added, ",") != strings.Join(want, ",") {
		t.Fatalf("the node opened listening ports %v, want only gRPC and HTTP %v", added, want)
	}
}

func portOf(addr string) string { return addr[strings.LastIndex(addr, ":")+1:] }

// listening returns the ports (decimal) this process listens on, from the
// sockets among its file descriptors and /proc/net/tcp{,6}.
func listening(t *testing.T) map[string]bool {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, fd := range fds {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	out := map[string]bool{}
	for _, f := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" || !inodes[fields[9]] { // 0A: LISTEN
				continue
			}
			var port int
			fmt.Sscanf(fields[1][strings.LastIndex(fields[1], ":")+1:], "%X", &port)
			out[fmt.Sprint(port)] = true
		}
		fh.Close()
	}
	return out
}
