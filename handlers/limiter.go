package handlers

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter hands out rate-limit tokens, one bucket per key. It is the seam
// between the RateLimit middleware and where the buckets live: this
// process (LocalLimiter, golang.org/x/time/rate) or a store shared by every
// replica, so that a limit holds fleet-wide.
type Limiter interface {
	// Reserve takes one token of key's bucket and returns how long the
	// caller must wait, from now, before it may use it (0: at once), and a
	// func that gives the token back if the caller will not use it (safe to
	// call more than once, and a no-op once the token's time has passed).
	// An error means no token was taken: the limiter cannot decide (a store
	// that is down) or can never admit (burst 0).
	Reserve(ctx context.Context, key string) (delay time.Duration, cancel func(), err error)
}

// LocalLimiter is a Limiter whose buckets live in this process: a
// golang.org/x/time/rate limiter per key, all with one rate and burst. Keys
// not used for an hour are forgotten (their bucket is full again by then).
// It is safe for concurrent use.
type LocalLimiter struct {
	limit rate.Limit
	burst int
	clock Clock

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	lim  *rate.Limiter
	used time.Time
}

// NewLocalLimiter returns a LocalLimiter allowing perSecond tokens a second
// with the given burst, per key. clock nil means the real clock.
func NewLocalLimiter(perSecond float64, burst int, clock Clock) *LocalLimiter {
	if clock == nil {
		clock = realClock{}
	}
	return &LocalLimiter{limit: rate.Limit(perSecond), burst: burst, clock: clock, buckets: map[string]*bucket{}}
}

// forgetAfter is how long an unused key's bucket is kept.
const forgetAfter = time.Hour

// Reserve implements Limiter.
func (l *LocalLimiter) Reserve(_ context.Context, key string) (time.Duration, func(), error) {
	now := l.clock.Now()
	l.mu.Lock()
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.buckets[key] = b
	}
	b.used = now
	if now.Sub(l.swept) > forgetAfter {
		for k, o := range l.buckets {
			if now.Sub(o.used) > forgetAfter {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	l.mu.Unlock()
	r := b.lim.ReserveN(now, 1)
	if !r.OK() {
		return 0, func() {}, fmt.Errorf("handlers: rate limit %v/s with burst %d can never admit a job; raise Burst to at least 1", float64(l.limit), l.burst)
	}
	return r.DelayFrom(now), func() { r.CancelAt(l.clock.Now()) }, nil
}
