// Package testenv gives courier's tests the real components they run on: a
// Pub/Sub emulator, the Cloud Spanner emulator and a Temporal dev server,
// each shared by one test binary, clients of them, and job stores. A missing
// component skips the test, except under CI=true, where it fails it.
//
// It is for tests only.
package testenv

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/courierq/courier/emulator"
)

var (
	googleOnce sync.Once
	googleSrv  *emulator.Server
	googleErr  error
	projectSeq atomic.Int64
)

// Main runs the tests of a package and then stops the emulators and the
// Temporal dev server they shared.
// Call it from TestMain: func TestMain(m *testing.M) { testenv.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	if googleSrv != nil {
		googleSrv.Close()
	}
	if temporalSrv != nil {
		temporalSrv.Close()
	}
	if spannerStop != nil {
		spannerStop()
	}
	os.Exit(code)
}

// Missing skips t because component is unavailable, or fails it under CI=true.
func Missing(t testing.TB, component string, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required under CI=true: %v", component, err)
	}
	t.Skipf("%s unavailable: %v", component, err)
}

// Google returns Google's Pub/Sub emulator, started on first use and shared
// by the test binary (Main stops it).
func Google(t testing.TB) *emulator.Server {
	t.Helper()
	googleOnce.Do(func() {
		googleSrv, googleErr = emulator.StartGoogle(context.Background(), emulator.GoogleConfig{})
	})
	if googleErr != nil {
		Missing(t, "Google's Pub/Sub emulator", googleErr)
	}
	return googleSrv
}

// Client returns a client of srv in a project of its own, so tests that run
// in parallel never see each other's topics. t.Cleanup closes it.
func Client(t testing.TB, srv *emulator.Server) *pubsub.Client {
	t.Helper()
	name := strings.NewReplacer("/", "-", "_", "-").Replace(strings.ToLower(t.Name()))
	if len(name) > 20 {
		name = name[:20]
	}
	project := fmt.Sprintf("p%d-%s", projectSeq.Add(1), strings.Trim(name, "-"))
	c, err := pubsub.NewClient(context.Background(), project, emulator.ClientOptions(srv.Addr)...)
	if err != nil {
		t.Fatalf("pubsub client of %s: %v", srv.Addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// CreateTopic creates topic id (and, when sub is not "", a subscription sub
// on it) in c's project.
func CreateTopic(t testing.TB, c *pubsub.Client, id, sub string) {
	t.Helper()
	ctx := context.Background()
	topic := "projects/" + c.Project() + "/topics/" + id
	if _, err := c.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
		t.Fatalf("CreateTopic %s: %v", topic, err)
	}
	if sub != "" {
		name := "projects/" + c.Project() + "/subscriptions/" + sub
		if _, err := c.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: name, Topic: topic, AckDeadlineSeconds: 10}); err != nil {
			t.Fatalf("CreateSubscription %s: %v", name, err)
		}
	}
}

// Pull pulls and acks until it has n messages from subscription sub (or ctx
// ends), and returns them.
func Pull(ctx context.Context, t testing.TB, c *pubsub.Client, sub string, n int) []*pubsubpb.PubsubMessage {
	t.Helper()
	name := "projects/" + c.Project() + "/subscriptions/" + sub
	var out []*pubsubpb.PubsubMessage
	for len(out) < n {
		resp, err := c.SubscriptionAdminClient.Pull(ctx, &pubsubpb.PullRequest{Subscription: name, MaxMessages: int32(n - len(out))})
		if err != nil {
			t.Fatalf("Pull %s after %d of %d messages: %v", name, len(out), n, err)
		}
		var ids []string
		for _, m := range resp.ReceivedMessages {
			out = append(out, m.Message)
			ids = append(ids, m.AckId)
		}
		if len(ids) > 0 {
			if err := c.SubscriptionAdminClient.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{Subscription: name, AckIds: ids}); err != nil {
				t.Fatalf("Acknowledge: %v", err)
			}
		}
	}
	return out
}
