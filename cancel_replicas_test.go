package courier_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/courierq/courier"
	"github.com/courierq/courier/client"
	"github.com/courierq/courier/config"
	"github.com/courierq/courier/couriertest"
	"github.com/courierq/courier/emulator"
	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/internal/testenv"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

// TestCancelAcrossReplicas: two replicas share a PostgreSQL schema and a
// Pub/Sub emulator; a CancelJob answered by the replica that does not run
// the job stops the handler on the one that does (the store's change
// notification reaches that replica's cancel watcher), and the job ends
// CANCELLED.
func TestCancelAcrossReplicas(t *testing.T) {
	emu, err := emulator.Start(context.Background(), emulator.Config{InProcess: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	url, schema := testenv.PostgresSchema(t)
	cfg := couriertest.Config(t.TempDir())
	cfg.PubSub = config.PubSub{Project: "cancel"}
	cfg.Store = config.Store{Driver: "postgres", URL: url, Schema: schema}

	type run struct {
		replica int
		id      string
	}
	started := make(chan run, 2)
	stopped := make(chan error, 2)
	var nodes []*couriertest.Node
	for i := range 2 {
		// Each replica its own registry, so the test knows which one runs
		// the job.
		reg := handlers.NewRegistry()
		err := handlers.Register(reg, func(ctx context.Context, job *handlers.Job[*demov1.Sleep]) (*demov1.SleepResult, error) {
			started <- run{i, job.ID}
			<-ctx.Done()
			stopped <- context.Cause(ctx)
			return nil, ctx.Err()
		}, handlers.Config{MaxAttempts: 3})
		if err != nil {
			t.Fatal(err)
		}
		c, err := pubsub.NewClient(context.Background(), "cancel", emu.ClientOptions()...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		nodes = append(nodes, couriertest.StartConfig(t, cfg, courier.WithRegistry(reg), courier.WithPubSubClient(c)))
	}

	ctx, cancel := context.WithTimeout(context.Background(), couriertest.Timeout)
	defer cancel()
	id, err := nodes[0].Jobs.Enqueue(ctx, &demov1.Sleep{Duration: durationpb.New(time.Hour)}, client.EnqueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var r run
	select {
	case r = <-started:
	case <-ctx.Done():
		t.Fatal("no replica started the job")
	}
	if r.id != id {
		t.Fatalf("replica %d started job %s, want %s", r.replica, r.id, id)
	}
	other := nodes[1-r.replica]
	j, err := other.Jobs.Cancel(ctx, id)
	if err != nil || j.State != courierv1.State_CANCELLED {
		t.Fatalf("CancelJob through replica %d: %v %v", 1-r.replica, j, err)
	}
	select {
	case cause := <-stopped:
		if cause == nil || errors.Is(cause, context.DeadlineExceeded) {
			t.Fatalf("the handler on replica %d stopped with %v, want the cancel", r.replica, cause)
		}
	case <-ctx.Done():
		t.Fatalf("the handler on replica %d still runs after replica %d cancelled its job", r.replica, 1-r.replica)
	}
	// Wait reports a cancelled job as an error; the job is what counts.
	final, err := nodes[r.replica].Jobs.Wait(ctx, id, nil)
	if final.GetState() != courierv1.State_CANCELLED {
		t.Fatalf("job after the cancel: %v %v; want CANCELLED", final, err)
	}
	select {
	case again := <-started:
		t.Fatalf("the cancelled job ran again on replica %d", again.replica)
	default:
	}
}
