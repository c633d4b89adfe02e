package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/courierq/courier"
	"github.com/courierq/courier/client"
	"github.com/courierq/courier/config"
	"github.com/courierq/courier/emulator"
	"github.com/courierq/courier/internal/testenv"
	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/postgres"
	"github.com/courierq/courier/jobs/sqlite"
	demov1 "github.com/courierq/courier/proto/courier/demo/v1"
	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

// countingStore counts Succeed calls and closes done at target.
type countingStore struct {
	jobs.Store
	n      atomic.Int64
	target int64
	done   chan struct{}
}

func (c *countingStore) Succeed(ctx context.Context, p jobs.SucceedParams) (*jobs.Job, error) {
	j, err := c.Store.Succeed(ctx, p)
	c.count(err)
	return j, err
}

// quickCountingStore is a countingStore of a jobs.StartSucceeder, which it
// passes on, so that the worker takes its quick path (see
// ingest.Config.Quick).
type quickCountingStore struct{ *countingStore }

func (c quickCountingStore) StartSucceed(ctx context.Context, p jobs.StartSucceedParams) (*jobs.QuickEnd, error) {
	j, err := c.Store.(jobs.StartSucceeder).StartSucceed(ctx, p)
	c.count(err)
	return j, err
}

func (c *countingStore) count(err error) {
	if err == nil && c.n.Add(1) == c.target {
		close(c.done)
	}
}

// benchStore opens the job store a bench stack runs on; each call opens the
// same database (the burn-down run opens it three times).
type benchStore struct {
	open func() (jobs.Store, error)
}

// sqliteBench is the embedded stack's store: the SQLite file path.
func sqliteBench(path string) benchStore {
	return benchStore{func() (jobs.Store, error) {
		return sqlite.Open(context.Background(), sqlite.Config{Path: path})
	}}
}

// postgresBench is a PostgreSQL schema of the benchmark's own.
func postgresBench(b *testing.B) benchStore {
	url, schema := testenv.PostgresSchema(b)
	return benchStore{func() (jobs.Store, error) {
		return postgres.Open(context.Background(), postgres.Config{URL: url, Schema: schema})
	}}
}

// benchStack runs a stack on the shared emulator (PUBSUB_EMULATOR_HOST) and
// the store bs opens; stop shuts it down.
func benchStack(b *testing.B, bs benchStore, workers bool, target int64) (st *courier.Node, cs *countingStore, stop func()) {
	b.Helper()
	cs = &countingStore{target: target, done: make(chan struct{})}
	store, err := bs.open()
	if err != nil {
		b.Fatal(err)
	}
	cs.Store = store
	var wrapped jobs.Store = cs
	if _, ok := store.(jobs.StartSucceeder); ok {
		wrapped = quickCountingStore{cs}
	}
	st, stopNode := storeStack(b, wrapped, "bench", workers)
	return st, cs, func() {
		stopNode()
		store.Close()
	}
}

// enqueueAll enqueues n Echo jobs through gRPC from callers goroutines and
// returns their IDs.
func enqueueAll(b *testing.B, addr string, n, callers int) []string {
	b.Helper()
	payload, _ := anypb.New(&demov1.Echo{Message: "bench"})
	ids := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	// One connection shared by the callers, as a gRPC client should.
	conn, err := client.Dial(addr, client.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	jc := courierv1.NewJobServiceClient(conn)
	for range callers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				resp, err := jc.EnqueueJob(context.Background(), &courierv1.EnqueueJobRequest{Payload: payload})
				if err != nil {
					b.Error(err)
					return
				}
				ids[i] = resp.JobId
			}
		})
	}
	wg.Wait()
	return ids
}

func waitDone(b *testing.B, cs *countingStore, what string) {
	b.Helper()
	select {
	case <-cs.done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("%s: only %d of %d jobs succeeded in 5 minutes", what, cs.n.Load(), cs.target)
	}
}

// startLatencies returns p50 and p99 of StartTime-CreateTime over ids.
func startLatencies(b *testing.B, s jobs.Store, ids []string) (p50, p99 time.Duration) {
	b.Helper()
	lat := make([]time.Duration, 0, len(ids))
	for _, id := range ids {
		j, err := s.Get(context.Background(), id)
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, j.StartTime.Sub(j.CreateTime))
	}
	slices.Sort(lat)
	return lat[len(lat)/2], lat[len(lat)*99/100]
}

type benchRun struct {
	e2e, burn, lookups float64
	// grpcCeiling is the no-op RPC rate (grpc.health.v1 Check) of the same
	// callers on one connection to the same server: what gRPC alone allows.
	grpcCeiling float64
	p50, p99    time.Duration
}

// storeRun measures one store: end to end (16 callers enqueue through gRPC
// while the workers run), GetJob look-ups on the jobs it made, and the
// burn-down of n jobs published with no worker running. newStore gives a
// fresh, empty store of the kind for each phase.
func storeRun(b *testing.B, newStore func(phase string) benchStore, n, callers int) benchRun {
	var r benchRun
	st, cs, stop := benchStack(b, newStore("e2e"), true, int64(n))
	t0 := time.Now()
	ids := enqueueAll(b, st.GRPCAddr(), n, callers)
	waitDone(b, cs, "end to end")
	r.e2e = float64(n) / time.Since(t0).Seconds()
	r.p50, r.p99 = startLatencies(b, cs.Store, ids)
	r.lookups = lookups(b, st.GRPCAddr(), ids, callers, 3*time.Second)
	r.grpcCeiling = healthChecks(b, st.GRPCAddr(), callers, 3*time.Second)
	stop()

	// Burn-down: jobs published with no worker running, then drained.
	burn := newStore("burn")
	// A worker first creates the subscriptions, so the messages wait.
	_, _, stop = benchStack(b, burn, true, 1)
	stop()
	st, cs, stop = benchStack(b, burn, false, 0)
	enqueueAll(b, st.GRPCAddr(), n, callers)
	for {
		count, _, err := cs.Store.OutboxStats(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if count == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	t0 = time.Now()
	_, cs, stop = benchStack(b, burn, true, int64(n))
	waitDone(b, cs, "burn-down")
	r.burn = float64(n) / time.Since(t0).Seconds()
	stop()
	return r
}

// BenchmarkSystem measures whole stacks on courier's emulator with the demo
// Echo handler, 20,000 jobs ($COURIER_BENCH_JOBS), three rounds: the
// embedded stack (SQLite) and the PostgreSQL store stack, each beside the
// raw Pub/Sub v2 client on the same emulator in the same round, and prints
// the medians beside issue 11's bars and the peers it measured on this
// machine (asynq 0.26 on Redis, River 0.51 on PostgreSQL):
//
//	go test -run '^$' -bench System -benchtime 1x ./cmd/courierd
//
// COURIER_BENCH_SQLITE_ONLY=1 leaves the PostgreSQL stack out (to compare
// the embedded stack with an older build in less time).
//
// The metric names (e2e-jobs/s, burndown-jobs/s, getjob/s for the embedded
// stack; pg-e2e-jobs/s, pg-burndown-jobs/s for PostgreSQL) are read by
// outside checks: keep them.
func BenchmarkSystem(b *testing.B) {
	n := 20000
	if s := os.Getenv("COURIER_BENCH_JOBS"); s != "" {
		fmt.Sscan(s, &n)
	}
	const callers = 16
	emu, err := emulator.Start(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	defer emu.Close()
	b.Setenv("PUBSUB_EMULATOR_HOST", emu.Addr)

	var lite, pg []benchRun
	var raws []float64
	for run := range 3 {
		dir := b.TempDir()
		r := storeRun(b, func(phase string) benchStore { return sqliteBench(filepath.Join(dir, phase+".db")) }, n, callers)
		var p benchRun
		if os.Getenv("COURIER_BENCH_SQLITE_ONLY") == "" {
			p = storeRun(b, func(string) benchStore { return postgresBench(b) }, n, callers)
		}
		// Raw client: publish, receive and ack n messages, no store.
		raw := rawClient(b, emu.Addr, fmt.Sprintf("raw-%d", run), n)
		lite, pg, raws = append(lite, r), append(pg, p), append(raws, raw)
		fmt.Printf("round %d: SQLite end-to-end %.0f jobs/s (enqueue-to-start p50 %v, p99 %v), burn-down %.0f jobs/s, GetJob %.0f/s (no-op RPC %.0f/s); "+
			"PostgreSQL end-to-end %.0f jobs/s (p50 %v, p99 %v), burn-down %.0f jobs/s, GetJob %.0f/s; raw client %.0f msgs/s\n",
			run+1, r.e2e, r.p50.Round(time.Millisecond), r.p99.Round(time.Millisecond), r.burn, r.lookups, r.grpcCeiling,
			p.e2e, p.p50.Round(time.Millisecond), p.p99.Round(time.Millisecond), p.burn, p.lookups, raw)
	}
	med := func(runs []benchRun, f func(benchRun) float64) float64 {
		v := make([]float64, len(runs))
		for i, r := range runs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	e2e := func(r benchRun) float64 { return r.e2e }
	burn := func(r benchRun) float64 { return r.burn }
	look := func(r benchRun) float64 { return r.lookups }
	p50 := func(r benchRun) float64 { return float64(r.p50) }
	p99 := func(r benchRun) float64 { return float64(r.p99) }
	ms := func(f float64) time.Duration { return time.Duration(f).Round(time.Millisecond) }
	slices.Sort(raws)
	raw := raws[len(raws)/2]
	fmt.Printf("\n%d Echo jobs on courier's emulator, median of %d rounds (raw v2 client on the same emulator: %.0f msgs/s):\n", n, len(raws), raw)
	fmt.Printf("| scenario | courier, SQLite (embedded) | courier, PostgreSQL | bar (SQLite / PostgreSQL) | asynq 0.26 / River 0.51 (issue 11) | SQLite/raw |\n|---|---|---|---|---|---|\n")
	fmt.Printf("| end-to-end, jobs/s (16 gRPC callers) | %.0f (start p50 %v, p99 %v) | %.0f (p50 %v, p99 %v) | >= 15,500 p99 < 50ms / >= 6,000 | 12,843 / 4,035 | %.2f |\n",
		med(lite, e2e), ms(med(lite, p50)), ms(med(lite, p99)), med(pg, e2e), ms(med(pg, p50)), ms(med(pg, p99)), med(lite, e2e)/raw)
	fmt.Printf("| burn-down, jobs/s | %.0f | %.0f | >= 25,000 / >= 10,000 | 16,788 / 20,806 | %.2f |\n", med(lite, burn), med(pg, burn), med(lite, burn)/raw)
	fmt.Printf("| GetJob look-ups/s (16 callers, one connection) | %.0f | %.0f | >= 45,000 | 42,036 / 47,978 | |\n", med(lite, look), med(pg, look))
	ceiling := func(r benchRun) float64 { return r.grpcCeiling }
	fmt.Printf("| no-op RPCs/s on the same server (grpc.health.v1 Check, 16 callers, one connection): gRPC's own ceiling | %.0f | %.0f | | | |\n", med(lite, ceiling), med(pg, ceiling))
	b.ReportMetric(med(lite, e2e), "e2e-jobs/s")
	b.ReportMetric(med(lite, burn), "burndown-jobs/s")
	b.ReportMetric(med(lite, look), "getjob/s")
	b.ReportMetric(med(pg, e2e), "pg-e2e-jobs/s")
	b.ReportMetric(med(pg, burn), "pg-burndown-jobs/s")
	b.ReportMetric(raw, "raw-msgs/s")
}

func lookups(b *testing.B, addr string, ids []string, callers int, d time.Duration) float64 {
	return rpcRate(b, addr, callers, d, func(conn *grpc.ClientConn) func() error {
		jc := courierv1.NewJobServiceClient(conn)
		return func() error {
			_, err := jc.GetJob(context.Background(), &courierv1.GetJobRequest{Id: ids[rand.IntN(len(ids))]})
			return err
		}
	})
}

// healthChecks is lookups for the gRPC health check: the rate of an RPC
// that does nothing, through the same server, interceptors and connection.
func healthChecks(b *testing.B, addr string, callers int, d time.Duration) float64 {
	return rpcRate(b, addr, callers, d, func(conn *grpc.ClientConn) func() error {
		hc := healthpb.NewHealthClient(conn)
		return func() error {
			_, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{})
			return err
		}
	})
}

// rpcRate makes the calls of newCall(conn) from callers goroutines on one
// connection for d, and returns calls per second.
func rpcRate(b *testing.B, addr string, callers int, d time.Duration, newCall func(*grpc.ClientConn) func() error) float64 {
	b.Helper()
	var count atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	conn, err := client.Dial(addr, client.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	call := newCall(conn)
	for range callers {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				if err := call(); err != nil {
					b.Error(err)
					return
				}
				count.Add(1)
			}
		})
	}
	wg.Wait()
	return float64(count.Load()) / d.Seconds()
}

// rawClient publishes n 256-byte messages and receives and acks them with
// the v2 client, and returns messages per second over the whole.
func rawClient(b *testing.B, addr, id string, n int) float64 {
	b.Helper()
	ctx := context.Background()
	c, err := pubsub.NewClient(ctx, "raw-bench", emulator.ClientOptions(addr)...)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	topic := "projects/raw-bench/topics/" + id
	sub := "projects/raw-bench/subscriptions/" + id
	if _, err := c.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
		b.Fatal(err)
	}
	if _, err := c.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: sub, Topic: topic, AckDeadlineSeconds: 60}); err != nil {
		b.Fatal(err)
	}
	s := c.Subscriber(sub)
	s.ReceiveSettings.MaxOutstandingMessages = 4000
	var got atomic.Int64
	rctx, cancel := context.WithCancel(ctx)
	recvDone := make(chan error, 1)
	t0 := time.Now()
	go func() {
		recvDone <- s.Receive(rctx, func(_ context.Context, m *pubsub.Message) {
			m.Ack()
			if got.Add(1) == int64(n) {
				cancel()
			}
		})
	}()
	p := c.Publisher(topic)
	data := make([]byte, 256)
	results := make([]*pubsub.PublishResult, n)
	for i := range n {
		results[i] = p.Publish(ctx, &pubsub.Message{Data: data})
	}
	for _, r := range results {
		if _, err := r.Get(ctx); err != nil {
			b.Fatal(err)
		}
	}
	p.Stop()
	select {
	case err := <-recvDone:
		if err != nil {
			b.Fatal(err)
		}
	case <-time.After(5 * time.Minute):
		b.Fatalf("raw client received %d of %d in 5 minutes", got.Load(), n)
	}
	return float64(n) / time.Since(t0).Seconds()
}

// BenchmarkStoreEndToEnd measures end-to-end jobs/s (16 gRPC callers enqueue
// Echo jobs while the workers run them, on courier's emulator) on each job
// store: SQLite, PostgreSQL, and jobs/spanner on the Cloud Spanner emulator.
// The emulator is not Spanner (it runs one read-write transaction at a
// time): its figure says what the store costs on it, not what Spanner does.
//
//	go test -run '^$' -bench StoreEndToEnd -benchtime 1x ./cmd/courierd
func BenchmarkStoreEndToEnd(b *testing.B) {
	n := 2000
	if s := os.Getenv("COURIER_BENCH_STORE_JOBS"); s != "" {
		fmt.Sscan(s, &n)
	}
	const callers = 16
	emu, err := emulator.Start(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	defer emu.Close()
	b.Setenv("PUBSUB_EMULATOR_HOST", emu.Addr)
	labels := map[testenv.StoreKind]string{
		testenv.SQLite:   "SQLite",
		testenv.Postgres: "PostgreSQL",
		testenv.Spanner:  "Spanner emulator, not Spanner",
	}
	type result struct {
		label    string
		jobsPerS float64
		p50, p99 time.Duration
	}
	var results []result
	for _, kind := range testenv.StoreKinds() {
		store := testenv.Store(b, kind)
		cs := &countingStore{Store: store, target: int64(n), done: make(chan struct{})}
		st, stop := storeStack(b, cs, "bench-"+string(kind), true)
		t0 := time.Now()
		ids := enqueueAll(b, st.GRPCAddr(), n, callers)
		waitDone(b, cs, string(kind)+" end to end")
		r := result{label: labels[kind], jobsPerS: float64(n) / time.Since(t0).Seconds()}
		r.p50, r.p99 = startLatencies(b, store, ids)
		stop()
		results = append(results, r)
		b.ReportMetric(r.jobsPerS, string(kind)+"-jobs/s")
	}
	fmt.Printf("\n%d Echo jobs end to end (16 gRPC callers, courier's emulator), by job store:\n", n)
	fmt.Printf("| store | jobs/s | enqueue-to-start p50 | p99 |\n|---|---|---|---|\n")
	for _, r := range results {
		fmt.Printf("| %s | %.0f | %v | %v |\n", r.label, r.jobsPerS, r.p50.Round(time.Millisecond), r.p99.Round(time.Millisecond))
	}
}

// storeStack runs a Node (with its workers, or with the demo handlers
// disabled) on store and the emulator of PUBSUB_EMULATOR_HOST, in project;
// stop shuts it down (not the store).
func storeStack(b *testing.B, store jobs.Store, project string, workers bool) (*courier.Node, func()) {
	b.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`grpc: {addr: "127.0.0.1:0", devMode: true}
http: {addr: "-"}
pubsub: {project: %s}
handlers: {demo: true, disabled: %v}
`, project, !workers)))
	if err != nil {
		b.Fatal(err)
	}
	// Warn level: the per-RPC info lines are not what is being measured.
	log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := courier.New(cfg, courier.WithLogger(log), courier.WithStore(store))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- st.Run(ctx) }()
	select {
	case <-st.Ready():
	case err := <-done:
		b.Fatal(err)
	}
	return st, func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("node: %v", err)
		}
	}
}
