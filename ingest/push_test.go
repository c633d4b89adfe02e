package ingest_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/courierq/courier/emulator"
	"github.com/courierq/courier/handlers/demo"
	"github.com/courierq/courier/ingest"
	"github.com/courierq/courier/internal/testenv"
)

func TestNewValidatesPush(t *testing.T) {
	reg := demoRegistry(t, demo.Config{})
	for _, tc := range []struct {
		name string
		push ingest.PushConfig
		want string
	}{
		{"no endpoint", ingest.PushConfig{Authenticator: ingest.InsecurePushAuth}, "PushConfig.Endpoint"},
		{"relative endpoint", ingest.PushConfig{Endpoint: "/push", Authenticator: ingest.InsecurePushAuth}, "PushConfig.Endpoint"},
		{"no authenticator", ingest.PushConfig{Endpoint: "https://w.example/push"}, "PushConfig.Authenticator"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ingest.New(ingest.Config{Client: &pubsub.Client{}, Store: nilStore{}, Registry: reg, Push: &tc.push})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "ingest: ") {
				t.Fatalf("New: %v, want an error about %s", err, tc.want)
			}
		})
	}
}

// A push worker makes its worker subscriptions push to its endpoint (with
// the token settings, and Pub/Sub's widest dead-letter net), answers 503
// before it is ready and after it stops; a pull worker on the same project
// then turns them back into pull subscriptions.
func TestPushSubscriptionsAlign(t *testing.T) {
	t.Parallel()
	emu, err := emulator.Start(context.Background(), emulator.Config{InProcess: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	ctx := testCtx(t)
	c, err := pubsub.NewClient(ctx, "push-align", emu.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	store := testenv.Store(t, testenv.SQLite)
	push := &ingest.PushConfig{Endpoint: "https://worker.example/pubsub/push", ServiceAccountEmail: "pusher@p.iam.gserviceaccount.com",
		Audience: "courier-workers", Unwrapped: true, Authenticator: ingest.InsecurePushAuth}
	w, err := ingest.New(ingest.Config{Client: c, Store: store, Registry: demoRegistry(t, demo.Config{}), Push: push})
	if err != nil {
		t.Fatal(err)
	}
	h := w.PushHandler()
	answer := func() int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, push.Endpoint, strings.NewReader("{}")))
		return rec.Code
	}
	if code := answer(); code != http.StatusServiceUnavailable {
		t.Fatalf("before Run: answered %d, want 503", code)
	}
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	select {
	case <-w.Ready():
	case err := <-errc:
		t.Fatal(err)
	}
	if code := answer(); code != http.StatusBadRequest { // ready: "{}" is no envelope
		t.Fatalf("once ready, to a body that is no push: answered %d, want 400", code)
	}
	name := "projects/push-align/subscriptions/courier-demo-v1-Sleep-worker"
	sub, err := c.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: name})
	if err != nil {
		t.Fatal(err)
	}
	pc := sub.GetPushConfig()
	if pc.GetPushEndpoint() != push.Endpoint || pc.GetOidcToken().GetServiceAccountEmail() != push.ServiceAccountEmail ||
		pc.GetOidcToken().GetAudience() != "courier-workers" || !pc.GetNoWrapper().GetWriteMetadata() || sub.GetDeadLetterPolicy().GetMaxDeliveryAttempts() != 100 {
		t.Fatalf("push subscription: %v", sub)
	}
	dl, err := c.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: "projects/push-align/subscriptions/courier-demo-v1-Sleep-dead-letter"})
	if err != nil || dl.GetPushConfig().GetPushEndpoint() != "" {
		t.Fatalf("the dead-letter subscription must stay pull: %v %v", dl, err)
	}
	if err := w.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if code := answer(); code != http.StatusServiceUnavailable {
		t.Fatalf("after Shutdown: answered %d, want 503", code)
	}

	pull, err := ingest.New(ingest.Config{Client: c, Store: store, Registry: demoRegistry(t, demo.Config{})})
	if err != nil {
		t.Fatal(err)
	}
	if pull.PushHandler() != nil {
		t.Fatal("a pull worker has a push handler")
	}
	go func() { errc <- pull.Run(ctx) }()
	select {
	case <-pull.Ready():
	case err := <-errc:
		t.Fatal(err)
	}
	if sub, err = c.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: name}); err != nil {
		t.Fatal(err)
	}
	if sub.GetPushConfig().GetPushEndpoint() != "" || sub.GetDeadLetterPolicy().GetMaxDeliveryAttempts() != 5 {
		t.Fatalf("after a pull worker started: %v, want a pull subscription dead-lettering after 5", sub)
	}
	if err := pull.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
