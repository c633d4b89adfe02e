package emulator_test

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/courierq/courier/emulator"
)

// listeningSockets returns the inodes of the TCP sockets this process
// listens on (from /proc: the sockets among its file descriptors that
// /proc/net/tcp and tcp6 list in state LISTEN).
func listeningSockets(t *testing.T) map[string]bool {
	t.Helper()
	mine := map[string]bool{}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if inode, ok := strings.CutPrefix(link, "socket:["); err == nil && ok {
			mine[strings.TrimSuffix(inode, "]")] = true
		}
	}
	listening := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			// sl local_address rem_address st ... inode (field 9)
			if len(fields) > 9 && fields[3] == "0A" && mine[fields[9]] {
				listening[fields[9]] = true
			}
		}
		f.Close()
	}
	return listening
}

// TestInProcess starts an emulator with Config.InProcess: no new socket
// listens, yet a v2 client made with Server.ClientOptions creates a topic
// and a subscription, publishes and receives.
func TestInProcess(t *testing.T) {
	ctx := context.Background()
	before := listeningSockets(t)
	srv, err := emulator.Start(ctx, emulator.Config{InProcess: true})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for inode := range listeningSockets(t) {
		if !before[inode] {
			t.Fatalf("an in-process emulator listens on a socket (inode %s)", inode)
		}
	}
	if srv.Addr != "" || srv.JWKSURL != "" {
		t.Fatalf("in-process emulator has Addr %q and JWKSURL %q, want both empty", srv.Addr, srv.JWKSURL)
	}
	client, err := pubsub.NewClient(ctx, "in-process", srv.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	topic, err := client.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: "projects/in-process/topics/jobs"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: "projects/in-process/subscriptions/jobs", Topic: topic.Name}); err != nil {
		t.Fatal(err)
	}
	pub := client.Publisher(topic.Name)
	defer pub.Stop()
	id, err := pub.Publish(ctx, &pubsub.Message{Data: []byte("no port")}).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	var got *pubsub.Message
	err = client.Subscriber("projects/in-process/subscriptions/jobs").Receive(rctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		got = m
		cancel()
	})
	if err != nil {
		t.Fatal(err)
	}
	if got == nil || got.ID != id || string(got.Data) != "no port" {
		t.Fatalf("received %+v, want message %s \"no port\"", got, id)
	}
	if len(srv.JWKS()) == 0 {
		t.Fatal("an in-process emulator has no JWKS for push tokens")
	}
	// The package-level helper still points clients at a TCP emulator.
	tcp, err := emulator.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	newSockets := 0
	for inode := range listeningSockets(t) {
		if !before[inode] {
			newSockets++
		}
	}
	if newSockets != 1 {
		t.Fatalf("a TCP emulator shows %d new listening sockets, want 1 (else the check above proves nothing)", newSockets)
	}
	c2, err := pubsub.NewClient(ctx, "tcp", emulator.ClientOptions(tcp.Addr)...)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := c2.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: "projects/tcp/topics/jobs"}); err != nil {
		t.Fatalf("CreateTopic through emulator.ClientOptions(addr): %v", err)
	}
}
