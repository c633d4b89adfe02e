package emulator_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/courierq/courier/emulator"
	"github.com/courierq/courier/emulator/emulatortest"
)

var built struct {
	once sync.Once
	path string
	err  error
	dir  string
}

// binary builds cmd/pubsub-emulator once per test binary.
func binary(t testing.TB) string {
	t.Helper()
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "pubsub-emulator-bin-")
		if built.err != nil {
			return
		}
		built.path = filepath.Join(built.dir, "pubsub-emulator")
		out, err := exec.Command("go", "build", "-o", built.path, "github.com/courierq/courier/cmd/pubsub-emulator").CombinedOutput()
		if err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

type standalone struct {
	cmd  *exec.Cmd
	addr string
	done chan error
}

// runStandalone starts the binary with args (plus --port 0) and waits for
// its "listening on" line. It is killed at the end of the test.
func runStandalone(t testing.TB, args ...string) *standalone {
	t.Helper()
	cmd := exec.Command(binary(t), append([]string{"--host", "127.0.0.1", "--port", "0"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &standalone{cmd: cmd, done: make(chan error, 1)}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if addr, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
				lines <- addr
			}
		}
		s.done <- cmd.Wait()
	}()
	t.Cleanup(func() { s.kill() })
	select {
	case s.addr = <-lines:
	case err := <-s.done:
		t.Fatalf("pubsub-emulator exited before listening: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("pubsub-emulator did not print its address within 30s")
	}
	return s
}

func (s *standalone) kill() {
	if s.cmd.ProcessState == nil {
		_ = s.cmd.Process.Signal(syscall.SIGKILL)
		<-s.done
		s.done <- nil
	}
}

func (s *standalone) server() *emulator.Server {
	return &emulator.Server{Addr: s.addr, Kind: emulator.KindCourier}
}

// TestStandaloneRestart publishes, acks part of the backlog, kills the
// binary with SIGKILL while acks are in flight, restarts it on the same
// --data-dir and checks that nothing unacked was lost and nothing acked
// came back.
func TestStandaloneRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	first := runStandalone(t, "--data-dir", dir)
	raw := emulatortest.NewRaw(t, first.server())
	topic := emulatortest.Name("topics", "restart")
	sub := emulatortest.Name("subscriptions", "restart")
	snap := emulatortest.Name("snapshots", "restart")
	if _, err := raw.Pub.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Sub.CreateSubscription(ctx, &pubsubpb.Subscription{Name: sub, Topic: topic, AckDeadlineSeconds: 60}); err != nil {
		t.Fatal(err)
	}
	const n = 2000
	published := map[string]bool{}
	for i := 0; i < n; i += 100 {
		req := &pubsubpb.PublishRequest{Topic: topic}
		for j := i; j < i+100; j++ {
			req.Messages = append(req.Messages, &pubsubpb.PubsubMessage{Data: fmt.Appendf(nil, "m%d", j)})
		}
		res, err := raw.Pub.Publish(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range res.MessageIds {
			published[id] = true
		}
	}
	if _, err := raw.Sub.CreateSnapshot(ctx, &pubsubpb.CreateSnapshotRequest{Name: snap, Subscription: sub}); err != nil {
		t.Fatal(err)
	}

	// Pull and ack in batches; an ack whose RPC returned is "acked", one in
	// flight at the kill is "uncertain".
	var mu sync.Mutex
	acked, uncertain := map[string]bool{}, map[string]bool{}
	killAt := make(chan struct{})
	go func() {
		for {
			res, err := raw.Sub.Pull(ctx, &pubsubpb.PullRequest{Subscription: sub, MaxMessages: 50})
			if err != nil {
				return
			}
			var ids []string
			mu.Lock()
			for _, rm := range res.ReceivedMessages {
				ids = append(ids, rm.AckId)
				uncertain[rm.Message.MessageId] = true
			}
			mu.Unlock()
			_, err = raw.Sub.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{Subscription: sub, AckIds: ids})
			if err != nil {
				return
			}
			mu.Lock()
			for _, rm := range res.ReceivedMessages {
				delete(uncertain, rm.Message.MessageId)
				acked[rm.Message.MessageId] = true
			}
			if len(acked) >= n/3 {
				select {
				case <-killAt:
				default:
					close(killAt)
				}
			}
			mu.Unlock()
		}
	}()
	select {
	case <-killAt:
	case <-ctx.Done():
		t.Fatal("acks did not progress")
	}
	first.kill() // SIGKILL, with pulls and acks still running
	mu.Lock()
	ackedNow := len(acked)
	mu.Unlock()
	if ackedNow == 0 || ackedNow == n {
		t.Fatalf("%d of %d acked at the kill; want a part", ackedNow, n)
	}

	second := runStandalone(t, "--data-dir", dir)
	raw2 := emulatortest.NewRaw(t, second.server())
	if _, err := raw2.Sub.GetSnapshot(ctx, &pubsubpb.GetSnapshotRequest{Snapshot: snap}); err != nil {
		t.Fatalf("snapshot lost in the restart: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	got := map[string]bool{}
	for {
		res, err := emulatortest.PullNow(ctx, raw2.Sub, sub, 1000)
		if err != nil {
			t.Fatalf("Pull after restart: %v", err)
		}
		if len(res.ReceivedMessages) == 0 {
			break
		}
		var ids []string
		for _, rm := range res.ReceivedMessages {
			id := rm.Message.MessageId
			if acked[id] {
				t.Fatalf("message %s was acked before the kill and came back", id)
			}
			if !published[id] {
				t.Fatalf("message %s was never published", id)
			}
			got[id] = true
			ids = append(ids, rm.AckId)
		}
		if _, err := raw2.Sub.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{Subscription: sub, AckIds: ids}); err != nil {
			t.Fatal(err)
		}
	}
	for id := range published {
		if !acked[id] && !uncertain[id] && !got[id] {
			t.Fatalf("unacked message %s was lost in the restart (%d acked, %d redelivered of %d)", id, len(acked), len(got), n)
		}
	}
	t.Logf("%d acked before the kill, %d in flight, %d redelivered after the restart", len(acked), len(uncertain), len(got))

	// A clean stop and a third start: everything acked stays acked.
	if err := second.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-second.done; err != nil {
		t.Fatalf("pubsub-emulator after SIGTERM: %v", err)
	}
	second.done <- nil
	third := runStandalone(t, "--data-dir", dir)
	raw3 := emulatortest.NewRaw(t, third.server())
	res, err := emulatortest.PullNow(ctx, raw3.Sub, sub, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.ReceivedMessages) > 0 {
		t.Fatalf("after acking everything and restarting, %d messages came back", len(res.ReceivedMessages))
	}
	// The snapshot still holds its messages: seeking to it brings back the
	// whole backlog it was made from.
	if _, err := raw3.Sub.Seek(ctx, &pubsubpb.SeekRequest{Subscription: sub, Target: &pubsubpb.SeekRequest_Snapshot{Snapshot: snap}}); err != nil {
		t.Fatal(err)
	}
	res, err = emulatortest.PullNow(ctx, raw3.Sub, sub, 1000)
	if err != nil || len(res.ReceivedMessages) == 0 {
		t.Fatalf("Seek to the restored snapshot: %d messages, %v", len(res.ReceivedMessages), err)
	}
}

func TestStandaloneFlags(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(binary(t), "--port", "99999").CombinedOutput()
	if err == nil {
		t.Fatal("--port 99999 was accepted")
	}
	if !strings.Contains(string(out), "Port 99999") || !strings.Contains(string(out), "Try:") {
		t.Fatalf("unhelpful error for --port 99999: %s", out)
	}
}

// TestStandaloneConfig starts the binary with --config and finds what the
// file lists, with its settings; a second start on the same data dir keeps
// what exists. A config with an error stops the start, naming the entry.
func TestStandaloneConfig(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	config := filepath.Join("testdata", "provision", "pubsub.yaml")
	s := runStandalone(t, "--config", config, "--data-dir", dir)
	raw := emulatortest.NewRaw(t, s.server())
	sub, err := raw.Sub.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: "projects/courier-config/subscriptions/orders-worker"})
	if err != nil {
		t.Fatal(err)
	}
	if sub.Topic != "projects/courier-config/topics/orders" || sub.AckDeadlineSeconds != 30 || !sub.EnableMessageOrdering ||
		sub.GetDeadLetterPolicy().GetDeadLetterTopic() != "projects/courier-config/topics/orders-dead" || sub.GetRetryPolicy().GetMinimumBackoff().AsDuration() != time.Second {
		t.Fatalf("provisioned subscription %v: settings lost", sub)
	}
	topic, err := raw.Pub.GetTopic(ctx, &pubsubpb.GetTopicRequest{Topic: "projects/courier-config/topics/orders"})
	if err != nil || topic.Labels["team"] != "shop" || topic.GetSchemaSettings().GetSchema() != "projects/courier-config/schemas/order" {
		t.Fatalf("provisioned topic: %v, %v", topic, err)
	}
	for _, c := range []struct {
		topic     string
		good, bad []byte
	}{
		{"orders", []byte(`{"id":"o1","qty":3}`), []byte(`{"id":"o1"}`)},
		{"orders-proto", []byte{0x0a, 0x02, 'o', '1', 0x10, 0x03}, []byte{0x0a, 0x09}},
	} {
		name := "projects/courier-config/topics/" + c.topic
		if _, err := raw.Pub.Publish(ctx, &pubsubpb.PublishRequest{Topic: name, Messages: []*pubsubpb.PubsubMessage{{Data: c.good}}}); err != nil {
			t.Fatalf("publishing a conforming message to %s: %v", name, err)
		}
		_, err := raw.Pub.Publish(ctx, &pubsubpb.PublishRequest{Topic: name, Messages: []*pubsubpb.PubsubMessage{{Data: c.bad}}})
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("publishing a non-conforming message to %s: %v, want InvalidArgument", name, err)
		}
	}
	s.kill()
	// Again on the same data dir: everything exists and is kept.
	s = runStandalone(t, "--config", config, "--data-dir", dir)
	res, err := emulatortest.PullNow(ctx, emulatortest.NewRaw(t, s.server()).Sub, "projects/courier-config/subscriptions/orders-worker", 10)
	if err != nil || len(res.ReceivedMessages) != 1 {
		t.Fatalf("after a restart with the same --config: %v, %v; want the one message published before", res, err)
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("project: p\ntopics:\n  - name: t1\n    subscriptions:\n      - name: s1\n        ackDeadline: 30\n"), 0o644)
	out, err := exec.Command(binary(t), "--port", "0", "--config", bad).CombinedOutput()
	if err == nil {
		t.Fatal("a config with an unknown field was accepted")
	}
	for _, want := range []string{bad, "topics[0] (projects/p/topics/t1).subscriptions[0]", "ackDeadline", "Try:"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("error output %q does not mention %q", out, want)
		}
	}
}
