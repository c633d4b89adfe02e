package emulator_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/courierq/courier/emulator"
	"github.com/courierq/courier/emulator/emulatortest"
)

// benchMessages is the workload size; EMULATOR_BENCH_MESSAGES
// overrides it.
func benchMessages() int {
	if n, err := strconv.Atoi(os.Getenv("EMULATOR_BENCH_MESSAGES")); err == nil && n > 0 {
		return n
	}
	return 50000
}

// benchOutstanding is the Receive flow-control limit the workload uses on
// both emulators. The client's default (1,000) with its 100 ms ack flush
// interval would cap the receive rate of any server that honours
// max_outstanding_messages, as the real service does, near 10,000 msg/s.
const benchOutstanding = 10000

type benchResult struct{ publish, receive float64 }

// runWorkload publishes n messages of 256 bytes with the v2 client, then
// receives and acks them all with Receive, and returns both rates.
func runWorkload(b *testing.B, srv *emulator.Server, n, maxOutstanding int) benchResult {
	ctx := context.Background()
	client := emulatortest.NewClient(b, srv)
	topic := emulatortest.Name("topics", "bench")
	subName := emulatortest.Name("subscriptions", "bench")
	if _, err := client.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
		b.Fatal(err)
	}
	if _, err := client.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: subName, Topic: topic, AckDeadlineSeconds: 60}); err != nil {
		b.Fatal(err)
	}
	pub := client.Publisher(topic)
	defer pub.Stop()
	data := make([]byte, 256)
	start := time.Now()
	results := make([]*pubsub.PublishResult, n)
	for i := range results {
		results[i] = pub.Publish(ctx, &pubsub.Message{Data: data})
	}
	for _, r := range results {
		if _, err := r.Get(ctx); err != nil {
			b.Fatal(err)
		}
	}
	pubRate := float64(n) / time.Since(start).Seconds()

	sub := client.Subscriber(subName)
	sub.ReceiveSettings.MaxOutstandingMessages = maxOutstanding
	var got atomic.Int64
	rctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	start = time.Now()
	var elapsed time.Duration
	err := sub.Receive(rctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		if got.Add(1) == int64(n) {
			elapsed = time.Since(start)
			cancel()
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	if got.Load() < int64(n) {
		b.Fatalf("received %d of %d messages", got.Load(), n)
	}
	return benchResult{publish: pubRate, receive: float64(n) / elapsed.Seconds()}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkEmulators runs the workload (50,000 messages of 256
// bytes: publish all, then receive and ack all with the v2 client's
// Receive) three times on courier's emulator and on Google's, and prints
// the median rates, the ratios, courier's start time and its heap and
// resident memory while holding the 50,000 messages. Run it with
//
//	go test ./emulator -run '^$' -bench BenchmarkEmulators -benchtime 1x
func BenchmarkEmulators(b *testing.B) {
	n := benchMessages()
	const runs = 3
	var g *emulator.Server
	err := fmt.Errorf("EMULATOR_BENCH_SKIP_GOOGLE=1")
	if os.Getenv("EMULATOR_BENCH_SKIP_GOOGLE") != "1" {
		g, err = emulator.StartGoogle(context.Background(), emulator.GoogleConfig{})
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			b.Fatal(err)
		}
		b.Logf("Google's emulator unavailable, courier only: %v", err)
	} else {
		defer g.Close()
	}
	// Runs alternate between the emulators, so that load from elsewhere on
	// the machine hits both alike.
	var courierRes, googleRes []benchResult
	var starts []float64
	for range b.N {
		for range runs {
			t0 := time.Now()
			srv, err := emulator.Start(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			starts = append(starts, float64(time.Since(t0).Microseconds())/1000)
			courierRes = append(courierRes, runWorkload(b, srv, n, benchOutstanding))
			srv.Close()
			if g != nil {
				googleRes = append(googleRes, runWorkload(b, g, n, benchOutstanding))
			}
		}
	}
	heap, rss := courierMemory(b, n)
	standaloneRSS := standaloneMemory(b, n)
	// For reference: the client's default flow control (1,000 outstanding
	// messages, acks flushed every 100 ms) caps any faithful server near
	// 10,000 msg/s.
	var defaultRate float64
	if srv, err := emulator.Start(context.Background()); err == nil {
		defaultRate = runWorkload(b, srv, n, 0).receive
		srv.Close()
	}
	pick := func(rs []benchResult, f func(benchResult) float64) float64 {
		var xs []float64
		for _, r := range rs {
			xs = append(xs, f(r))
		}
		return median(xs)
	}
	pubOf := func(r benchResult) float64 { return r.publish }
	recvOf := func(r benchResult) float64 { return r.receive }
	cp, cr := pick(courierRes, pubOf), pick(courierRes, recvOf)
	b.ReportMetric(cp, "courier-publish-msg/s")
	b.ReportMetric(cr, "courier-receive-msg/s")
	fmt.Printf("workload: %d messages of 256 bytes, median of %d runs, GOMAXPROCS=%d, ReceiveSettings.MaxOutstandingMessages=%d on both\n", n, runs, runtime.GOMAXPROCS(0), benchOutstanding)
	fmt.Printf("courier: publish %8.0f msg/s  receive+ack %8.0f msg/s  start %.1f ms (median)  heap %.1f MB  RSS %.1f MB holding %d messages\n",
		cp, cr, median(starts), heap, rss, n)
	fmt.Printf("courier standalone binary: RSS %.1f MB holding %d messages\n", standaloneRSS, n)
	fmt.Printf("courier with the client's default MaxOutstandingMessages (1000): receive+ack %8.0f msg/s (one run)\n", defaultRate)
	if len(googleRes) > 0 {
		gp, gr := pick(googleRes, pubOf), pick(googleRes, recvOf)
		b.ReportMetric(gp, "google-publish-msg/s")
		b.ReportMetric(gr, "google-receive-msg/s")
		fmt.Printf("google:  publish %8.0f msg/s  receive+ack %8.0f msg/s\n", gp, gr)
		fmt.Printf("ratio courier/google: publish %.1fx (bar 2x)  receive+ack %.1fx (bar 20x)\n", cp/gp, cr/gr)
		for i := range courierRes {
			fmt.Printf("  run %d: courier publish %.0f receive %.0f | google publish %.0f receive %.0f\n", i+1,
				courierRes[i].publish, courierRes[i].receive, googleRes[i].publish, googleRes[i].receive)
		}
	}
}

// standaloneMemory publishes n messages to the pubsub-emulator binary and
// returns its resident set in MB.
func standaloneMemory(b *testing.B, n int) float64 {
	s := runStandalone(b)
	publishN(b, emulatortest.NewRaw(b, s.server()), n)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return float64(kb) / 1000
		}
	}
	return 0
}

// courierMemory publishes n messages to a fresh in-process emulator and
// returns the Go heap in use and the process's resident set, in MB. The
// RSS includes the test binary and the client, so it overstates the
// emulator's share.
func courierMemory(b *testing.B, n int) (heapMB, rssMB float64) {
	srv, err := emulator.Start(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	publishN(b, emulatortest.NewRaw(b, srv), n)
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapAlloc) / 1e6, rssNow() / 1e6
}

// publishN creates a topic with one subscription and publishes n
// messages of 256 bytes to it, 1,000 per request.
func publishN(b *testing.B, raw emulatortest.Raw, n int) {
	ctx := context.Background()
	topic := emulatortest.Name("topics", "mem")
	if _, err := raw.Pub.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
		b.Fatal(err)
	}
	if _, err := raw.Sub.CreateSubscription(ctx, &pubsubpb.Subscription{Name: emulatortest.Name("subscriptions", "mem"), Topic: topic}); err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 256)
	for i := 0; i < n; i += 1000 {
		req := &pubsubpb.PublishRequest{Topic: topic}
		for j := i; j < min(n, i+1000); j++ {
			req.Messages = append(req.Messages, &pubsubpb.PubsubMessage{Data: data})
		}
		if _, err := raw.Pub.Publish(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// rssNow reads this process's resident set size from /proc, in bytes.
func rssNow() float64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, res int64
	fmt.Sscan(string(b), &size, &res)
	return float64(res * int64(os.Getpagesize()))
}
