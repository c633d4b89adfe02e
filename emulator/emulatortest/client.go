package emulatortest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc"

	"github.com/courierq/courier/emulator"
)

// Project is the project ID the suite's resources live in.
const Project = "courier-test"

// NewClient returns a v2 Pub/Sub client for srv, closed at the end of the test.
func NewClient(tb testing.TB, srv *emulator.Server) *pubsub.Client {
	tb.Helper()
	c, err := pubsub.NewClient(context.Background(), Project, srv.ClientOptions()...)
	if err != nil {
		tb.Fatalf("pubsub.NewClient: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// Raw holds generated gRPC clients for srv, for what the v2 client hides.
type Raw struct {
	Pub pubsubpb.PublisherClient
	Sub pubsubpb.SubscriberClient
	Sch pubsubpb.SchemaServiceClient
}

// NewRaw dials srv and returns raw clients, closed at the end of the test.
func NewRaw(tb testing.TB, srv *emulator.Server) Raw {
	tb.Helper()
	conn, err := srv.Dial(grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20), grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		tb.Fatalf("dialing the emulator (%s): %v", srv.Addr, err)
	}
	tb.Cleanup(func() { conn.Close() })
	return Raw{Pub: pubsubpb.NewPublisherClient(conn), Sub: pubsubpb.NewSubscriberClient(conn), Sch: pubsubpb.NewSchemaServiceClient(conn)}
}

var unique atomic.Int64

// Name returns a resource name unique to this process and call:
// projects/courier-test/KIND/ID-N-TIME.
func Name(kind, id string) string {
	return fmt.Sprintf("projects/%s/%s/%s-%d-%d", Project, kind, id, unique.Add(1), time.Now().UnixNano()%1e9)
}
