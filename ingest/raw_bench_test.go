package ingest_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/courierq/courier/internal/testenv"
)

// BenchmarkRawReceive is the baseline of BenchmarkBurnDownEcho: the same
// number of queued messages received and acked with the raw v2 client, no
// store and no handlers.
func BenchmarkRawReceive(b *testing.B) {
	c := testenv.Client(b, testenv.Google(b))
	testenv.CreateTopic(b, c, "raw", "raw-sub")
	ctx := context.Background()
	p := c.Publisher("raw")
	p.PublishSettings.FlowControlSettings.LimitExceededBehavior = pubsub.FlowControlBlock
	var last *pubsub.PublishResult
	for range b.N {
		last = p.Publish(ctx, &pubsub.Message{Data: []byte("bench"), Attributes: map[string]string{"ce-type": "x"}})
	}
	if _, err := last.Get(ctx); err != nil {
		b.Fatal(err)
	}
	p.Stop()
	b.ResetTimer()
	begin := time.Now()
	rctx, cancel := context.WithCancel(ctx)
	var n atomic.Int64
	sub := c.Subscriber("raw-sub")
	sub.Receive(rctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		if n.Add(1) == int64(b.N) {
			cancel()
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(begin).Seconds(), "msgs/s")
}
