package limits

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/courierq/courier/handlers"
)

// Line wraps a limiter of this process (handlers.LocalLimiter) so that no
// caller waits longer than maxWait: one that would gets its token back and
// a *handlers.BusyError with a place of its own in a line of refused
// callers per key, spaced 1/perSecond apart, as Tokens does with Queue.
// The worker then puts its message off (jobs.Deferrer) instead of holding
// it, on a store of one process too.
func Line(lim handlers.Limiter, perSecond float64, maxWait time.Duration) (handlers.Limiter, error) {
	switch {
	case lim == nil:
		return nil, errors.New("limits: Line of a nil limiter")
	case !(perSecond > 0) || maxWait < 0:
		return nil, fmt.Errorf("limits: Line: perSecond (%v) must be positive and maxWait (%v) not negative", perSecond, maxWait)
	}
	return &line{lim: lim, interval: time.Duration(float64(time.Second) / perSecond), maxWait: maxWait, next: map[string]time.Time{}}, nil
}

type line struct {
	lim      handlers.Limiter
	interval time.Duration
	maxWait  time.Duration

	mu    sync.Mutex
	next  map[string]time.Time // the next refused caller's place, by key
	swept time.Time
}

func (l *line) Reserve(ctx context.Context, key string) (time.Duration, func(), error) {
	d, cancel, err := l.lim.Reserve(ctx, key)
	if err != nil || d <= l.maxWait {
		return d, cancel, err
	}
	cancel()
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		for k, t := range l.next {
			if t.Before(now) {
				delete(l.next, k)
			}
		}
		l.swept = now
	}
	place := now.Add(d)
	if n := l.next[key]; n.After(place) {
		place = n
	}
	l.next[key] = place.Add(l.interval)
	return 0, func() {}, &handlers.BusyError{Limit: "rate limit", RetryAfter: place.Sub(now)}
}
