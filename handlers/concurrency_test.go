package handlers

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/protobuf/proto"
)

func TestConcurrencyBounds(t *testing.T) {
	const n, total = 3, 10
	var running, peak atomic.Int32
	release := make(chan struct{})
	entered := make(chan struct{}, total)
	h := Concurrency(n)(func(ctx context.Context, _ *Request) (proto.Message, error) {
		cur := running.Add(1)
		for {
			p := peak.Load()
			if cur <= p || peak.CompareAndSwap(p, cur) {
				break
			}
		}
		entered <- struct{}{}
		<-release
		running.Add(-1)
		return nil, nil
	})
	var wg sync.WaitGroup
	for range total {
		wg.Go(func() {
			if _, err := h(context.Background(), &Request{}); err != nil {
				t.Error(err)
			}
		})
	}
	for range n {
		<-entered
	}
	if got := running.Load(); got != n {
		t.Fatalf("%d running, want %d", got, n)
	}
	close(release)
	wg.Wait()
	if got := peak.Load(); got != n {
		t.Fatalf("peak concurrency %d, want %d", got, n)
	}
}

func TestConcurrencyWaitHonoursContext(t *testing.T) {
	block := make(chan struct{})
	started := make(chan struct{})
	h := Concurrency(1)(func(ctx context.Context, _ *Request) (proto.Message, error) {
		close(started)
		<-block
		return nil, nil
	})
	done := make(chan struct{})
	go func() { h(context.Background(), &Request{}); close(done) }()
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h(ctx, &Request{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	close(block)
	<-done
}

func TestConcurrencyZeroIsUnbounded(t *testing.T) {
	calls := 0
	if _, err := Concurrency(0)(okHandler(&calls))(context.Background(), &Request{}); err != nil || calls != 1 {
		t.Fatalf("err = %v, calls = %d", err, calls)
	}
}
