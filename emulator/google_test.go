package emulator_test

import (
	"context"
	"errors"
	"os"
	"testing"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/courierq/courier/emulator"
)

func TestStartGoogle(t *testing.T) {
	ctx := context.Background()
	srv, err := emulator.StartGoogle(ctx, emulator.GoogleConfig{})
	if err != nil {
		if os.Getenv("CI") != "true" {
			t.Skipf("Google's emulator unavailable: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	conn, err := grpc.NewClient(srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pub := pubsubpb.NewPublisherClient(conn)
	topic, err := pub.CreateTopic(ctx, &pubsubpb.Topic{Name: "projects/test-project/topics/test-topic"})
	if err != nil {
		t.Fatal(err)
	}
	if topic.Name != "projects/test-project/topics/test-topic" {
		t.Fatalf("created topic %q", topic.Name)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestGoogleEmulatorPathNotInstalled(t *testing.T) {
	_, err := emulator.GoogleEmulatorPath(t.TempDir())
	if err == nil {
		t.Fatal("want an error for an SDK root without the emulator")
	}
	if !errors.Is(err, emulator.ErrNotInstalled) {
		t.Fatalf("error %v does not wrap ErrNotInstalled", err)
	}
}
