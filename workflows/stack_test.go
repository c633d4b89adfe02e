package workflows_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/courierq/courier"
	"github.com/courierq/courier/backend/jobservice"
	"github.com/courierq/courier/couriertest"
	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/internal/testenv"
	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/sqlite"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
	"github.com/courierq/courier/publisher"
	"github.com/courierq/courier/workflows"
	"github.com/courierq/courier/workflows/demo"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// quiet is a logger for the parts under test that log on their own.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// testCtx is a context that ends with the test (or after two minutes).
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

var queueSeq atomic.Int64

// stack is the whole path of a workflow job, on a courier Node
// (couriertest): JobService, the outbox relay, courier's emulator, a SQLite
// store, an ingest worker whose registry holds the Bisect workflow job type,
// and the Node's Temporal worker on a task queue of the test's own, on the
// shared Temporal dev server.
type stack struct {
	ctx      context.Context
	node     *couriertest.Node
	store    jobs.Store
	jobs     courierv1.JobServiceClient
	pub      *publisher.Publisher
	temporal client.Client // the test's own client, for checking
	starts   *startRecorder
	// deliveries counts the ingest worker's deliveries per job.
	deliveries *deliveryCounter
}

// countStarts is a job store decorator that counts the deliveries that
// asked to start each job, started or refused.
type countStarts struct {
	jobs.Store
	d *deliveryCounter
}

func (c *countStarts) Start(ctx context.Context, p jobs.StartParams) (*jobs.Job, error) {
	j, err := c.Store.Start(ctx, p)
	c.d.deliver(p.ID)
	return j, err
}

// heldDuplicates is a log handler that counts, as deliveries, the
// duplicates that ingest holds without asking to start the job because
// another run holds its lease: ingest logs each one, with the job's ID.
type heldDuplicates struct {
	slog.Handler
	d *deliveryCounter
}

func (h heldDuplicates) Enabled(context.Context, slog.Level) bool { return true }

func (h heldDuplicates) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "under another worker's lease") {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "job_id" {
				h.d.deliver(a.Value.String())
				return false
			}
			return true
		})
	}
	return nil
}

func (h heldDuplicates) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h heldDuplicates) WithGroup(string) slog.Handler      { return h }

// deliveryCounter counts deliveries per job ID (countStarts, heldDuplicates).
type deliveryCounter struct {
	mu      sync.Mutex
	n       map[string]int
	changed chan struct{} // closed and replaced on each delivery
}

func (d *deliveryCounter) deliver(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.n[id]++
	if d.changed != nil {
		close(d.changed)
		d.changed = nil
	}
}

// wait waits until job id was delivered n times.
func (d *deliveryCounter) wait(ctx context.Context, id string, n int) error {
	for {
		d.mu.Lock()
		got := d.n[id]
		if d.changed == nil {
			d.changed = make(chan struct{})
		}
		ch := d.changed
		d.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d deliveries of %s, waiting for %d: %w", got, id, n, ctx.Err())
		case <-ch:
		}
	}
}

// hook is demo.Config.OnTest: called before each commit is tested, with the
// workflow (= job) ID in the activity's info.
type hook func(ctx context.Context, jobID string, commit int64) error

func newStack(t *testing.T, onTest hook) *stack {
	t.Helper()
	ctx := testCtx(t)
	tmp := newTemporal(t, onTest, nil, false)
	reg := handlers.NewRegistry()
	if err := demo.Register(reg, tmp.handlerClient, tmp.cfg); err != nil {
		t.Fatal(err)
	}
	deliveries := &deliveryCounter{n: map[string]int{}}
	store, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "jobs.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	cfg := couriertest.Config(t.TempDir())
	cfg.Temporal = &workflows.WorkerConfig{TaskQueue: tmp.cfg.TaskQueue}
	n := couriertest.StartConfig(t, cfg, courier.WithRegistry(reg), courier.WithTemporalClient(tmp.handlerClient),
		courier.WithStore(&countStarts{Store: store, d: deliveries}), courier.WithLogger(slog.New(heldDuplicates{d: deliveries})),
		courier.WithWorkflows(func(r worker.Registry) { demo.RegisterWorker(r, tmp.cfg) }))
	return &stack{ctx: ctx, node: n, store: n.Store(), jobs: n.Jobs.Service(), pub: n.Publisher(), temporal: tmp.client, starts: tmp.starts, deliveries: deliveries}
}

// temporalEnv is a Temporal worker running the Bisect workflow on a task
// queue of the test's own, on the shared dev server.
type temporalEnv struct {
	cfg           demo.Config   // the Bisect job type's config
	client        client.Client // for checking
	handlerClient client.Client // for the job handler: records starts
	starts        *startRecorder
}

// newTemporal prepares the Bisect workflow job type's config and clients
// and, with worker, starts a Temporal worker for it; tweak, when set, changes
// the demo config first.
func newTemporal(t *testing.T, onTest hook, tweak func(*demo.Config), startWorker bool) *temporalEnv {
	t.Helper()
	srv := testenv.Temporal(t)
	// The handler side's Temporal client records every workflow start.
	starts := &startRecorder{runs: map[string][]string{}}
	opts := srv.ClientOptions()
	opts.Interceptors = []interceptor.ClientInterceptor{starts}
	hc, err := client.Dial(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.Close)

	cfg := demo.Config{
		TaskQueue:        fmt.Sprintf("courier-test-%d", queueSeq.Add(1)),
		TestDelay:        -1,
		ProgressInterval: 10 * time.Millisecond,
		Handler:          handlers.Config{MaxAttempts: 3},
	}
	if onTest != nil {
		cfg.OnTest = func(ctx context.Context, commit int64) error {
			return onTest(ctx, activity.GetInfo(ctx).WorkflowExecution.ID, commit)
		}
	}
	if tweak != nil {
		tweak(&cfg)
	}
	tc := testenv.TemporalClient(t, srv)
	env := &temporalEnv{cfg: cfg, client: tc, handlerClient: hc, starts: starts}
	if !startWorker {
		return env
	}
	tw, err := workflows.NewWorker(workflows.WorkerConfig{
		Client: tc, TaskQueue: cfg.TaskQueue, Logger: quiet,
		Register: func(r worker.Registry) { demo.RegisterWorker(r, cfg) },
	})
	if err != nil {
		t.Fatal(err)
	}
	twErr := make(chan error, 1)
	go func() { twErr <- tw.Run(context.Background()) }()
	t.Cleanup(func() {
		tw.Stop()
		if err := <-twErr; err != nil {
			t.Errorf("Temporal worker: %v", err)
		}
	})
	return env
}

// serveJobs serves a JobService over store on a loopback gRPC server and
// returns a client of it.
func serveJobs(t *testing.T, store jobs.Store, types jobservice.TypeMap) courierv1.JobServiceClient {
	t.Helper()
	_, c := testenv.JobService(t, store, types)
	return c
}

// enqueue records a job through JobService (the Node's outbox relay
// publishes its message once) and publishes copies-1 more copies of the
// message, as duplicate deliveries.
func (s *stack) enqueue(t *testing.T, m proto.Message, copies int) string {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := s.jobs.EnqueueJob(s.ctx, &courierv1.EnqueueJobRequest{Payload: a})
	if err != nil {
		t.Fatalf("EnqueueJob: %v", err)
	}
	for range copies - 1 {
		if _, err := s.pub.PublishSync(s.ctx, m, publisher.WithID(resp.JobId)); err != nil {
			t.Fatalf("publishing job %s: %v", resp.JobId, err)
		}
	}
	return resp.JobId
}

// watch streams the job through WatchJob until it ends, calling each (when
// set) with every state seen, and returns the last one.
func (s *stack) watch(t *testing.T, id string, each func(*courierv1.Job)) *courierv1.Job {
	t.Helper()
	stream, err := s.jobs.WatchJob(s.ctx, &courierv1.WatchJobRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	var last *courierv1.Job
	for {
		j, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("WatchJob %s after %v: %v", id, last, err)
		}
		if each != nil {
			each(j)
		}
		last = j
	}
	if last == nil {
		t.Fatalf("WatchJob %s sent nothing", id)
	}
	return last
}

// startRecorder is a Temporal client interceptor that records, per workflow
// ID, the run ID each ExecuteWorkflow call got.
type startRecorder struct {
	interceptor.ClientInterceptorBase
	mu      sync.Mutex
	runs    map[string][]string
	changed chan struct{} // closed and replaced on each start
}

func (r *startRecorder) InterceptClient(next interceptor.ClientOutboundInterceptor) interceptor.ClientOutboundInterceptor {
	return &startOut{ClientOutboundInterceptorBase: interceptor.ClientOutboundInterceptorBase{Next: next}, r: r}
}

// waitStarts waits until ExecuteWorkflow was called n times for id, and
// returns the run IDs.
func (r *startRecorder) waitStarts(ctx context.Context, id string, n int) ([]string, error) {
	for {
		r.mu.Lock()
		runs := append([]string(nil), r.runs[id]...)
		if r.changed == nil {
			r.changed = make(chan struct{})
		}
		ch := r.changed
		r.mu.Unlock()
		if len(runs) >= n {
			return runs, nil
		}
		select {
		case <-ctx.Done():
			return runs, fmt.Errorf("%d workflow starts of %s, waiting for %d: %w", len(runs), id, n, ctx.Err())
		case <-ch:
		}
	}
}

type startOut struct {
	interceptor.ClientOutboundInterceptorBase
	r *startRecorder
}

func (o *startOut) ExecuteWorkflow(ctx context.Context, in *interceptor.ClientExecuteWorkflowInput) (client.WorkflowRun, error) {
	run, err := o.Next.ExecuteWorkflow(ctx, in)
	if err == nil {
		o.r.mu.Lock()
		o.r.runs[in.Options.ID] = append(o.r.runs[in.Options.ID], run.GetRunID())
		if o.r.changed != nil {
			close(o.r.changed)
			o.r.changed = nil
		}
		o.r.mu.Unlock()
	}
	return run, err
}

func mustContain(t *testing.T, what, s, want string) {
	t.Helper()
	if !strings.Contains(s, want) {
		t.Errorf("%s %q does not contain %q", what, s, want)
	}
}

// activityRunID is the workflow run ID of the activity running in ctx.
func activityRunID(ctx context.Context) string { return activity.GetInfo(ctx).WorkflowExecution.RunID }
