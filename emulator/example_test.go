package emulator_test

import (
	"context"
	"fmt"
	"log"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/courierq/courier/emulator"
)

// Start an in-process emulator and point the v2 client at it, as
// PUBSUB_EMULATOR_HOST would.
func ExampleStart() {
	ctx := context.Background()
	srv, err := emulator.Start(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	client, err := pubsub.NewClient(ctx, "my-project", emulator.ClientOptions(srv.Addr)...)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	topic, err := client.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: "projects/my-project/topics/jobs"})
	if err != nil {
		log.Fatal(err)
	}
	pub := client.Publisher(topic.Name)
	defer pub.Stop()
	id, err := pub.Publish(ctx, &pubsub.Message{Data: []byte("hello")}).Get(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("published message", id)
	// Output: published message 1
}
