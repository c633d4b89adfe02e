// Package limits is courier's fleet-wide rate and concurrency limits: the
// handlers.Limiter (Tokens) and handlers.SlotLimiter (Slots) that keep their
// buckets and slots in a store shared by every replica (a jobs.Limits, such
// as jobs/postgres), so that `ratePerSecond: 50` is 50 a second across the
// fleet, and `concurrency: 10` ten running at once, optionally per key (per
// customer, per tenant).
//
// Round trips are amortised: Tokens takes a batch of tokens per round trip
// when the rate allows (up to Batch, never more than the burst) and hands
// them out locally until they go stale; concurrent callers of one key share
// a round trip. A caller that would wait longer than MaxWait is not made to
// wait: it gets a *handlers.BusyError saying when to come back (a place in
// the line of refused callers, spaced at the rate), so the worker can put
// the message off through the store (jobs.Deferrer) instead of holding it.
//
// It is for courier's Node, which uses it when the store implements
// jobs.Limits and a type's rateScope is not "process". It is not a
// general-purpose distributed limiter, and a store that does not implement
// jobs.Limits (jobs/sqlite) keeps handlers.LocalLimiter and
// handlers.Concurrency: limits per process.
package limits

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/jobs"
)

// TokensConfig configures Tokens. Store, Name and PerSecond are required.
type TokensConfig struct {
	Store jobs.Limits
	// Name prefixes the buckets' names in the store (e.g. "rate:" and the
	// type): one bucket per Name and key.
	Name string
	// PerSecond tokens a second, at most Burst at once (0 means 1).
	PerSecond float64
	Burst     int
	// MaxWait is how long Reserve may make a caller wait for a token; a
	// caller that would wait longer gets a *handlers.BusyError instead.
	// 0 means no waiting at all (an enqueue limit: admit or refuse).
	MaxWait time.Duration
	// Queue gives each refused caller its own time to come back, spaced at
	// the rate (a worker that puts the message off until then); without it
	// RetryAfter is when the next token is free (an enqueue limit).
	Queue bool
	// Batch caps the tokens one round trip takes. 0 means what the rate
	// gives in 20ms (at least 1), capped at Burst and at 1000.
	Batch int
	// StoreTimeout bounds each round trip. 0 means 5s.
	StoreTimeout time.Duration
}

// Tokens is a handlers.Limiter whose buckets live in a jobs.Limits store,
// shared by every replica. It is safe for concurrent use.
type Tokens struct {
	cfg      TokensConfig
	interval time.Duration
	// stale is how long after its time a token taken in a batch may still
	// be used: later, it is dropped, so that a batch held back cannot add
	// a burst of its own to the bucket's.
	stale time.Duration

	mu   sync.Mutex
	keys map[string]*keyTokens
}

type keyTokens struct {
	fetch sync.Mutex  // one round trip per key at a time
	mu    sync.Mutex  // guards ready
	ready []time.Time // tokens taken and not handed out, in time order
	used  time.Time
	// refilling: a round trip started ahead of need is in flight.
	refilling atomic.Bool
}

// NewTokens checks cfg and returns a Tokens.
func NewTokens(cfg TokensConfig) (*Tokens, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("limits: TokensConfig.Store is nil; pass a store that implements jobs.Limits (jobs/postgres)")
	case cfg.Name == "":
		return nil, errors.New("limits: TokensConfig.Name is empty; name the limit (e.g. \"rate:\" and the job type)")
	case !(cfg.PerSecond > 0) || math.IsInf(cfg.PerSecond, 0) || cfg.PerSecond > 1e6:
		return nil, fmt.Errorf("limits: TokensConfig.PerSecond is %v; use a positive rate of at most a million a second", cfg.PerSecond)
	case cfg.Burst < 0 || cfg.Batch < 0 || cfg.MaxWait < 0 || cfg.StoreTimeout < 0:
		return nil, fmt.Errorf("limits: TokensConfig.Burst (%d), Batch (%d), MaxWait (%v) and StoreTimeout (%v) must not be negative", cfg.Burst, cfg.Batch, cfg.MaxWait, cfg.StoreTimeout)
	}
	if cfg.Burst == 0 {
		cfg.Burst = 1
	}
	interval := max(time.Duration(float64(time.Second)/cfg.PerSecond), time.Microsecond)
	if cfg.Batch == 0 {
		cfg.Batch = max(1, int(20*time.Millisecond/interval))
	}
	cfg.Batch = min(cfg.Batch, cfg.Burst, 1000)
	if cfg.StoreTimeout == 0 {
		cfg.StoreTimeout = 5 * time.Second
	}
	return &Tokens{cfg: cfg, interval: interval, stale: max(interval, 50*time.Millisecond), keys: map[string]*keyTokens{}}, nil
}

// Batch is how many tokens one round trip takes at most.
func (t *Tokens) Batch() int { return t.cfg.Batch }

func (t *Tokens) key(key string) *keyTokens {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	k, ok := t.keys[key]
	if !ok {
		if len(t.keys) > 10000 { // forget idle keys (their batches are stale)
			for name, o := range t.keys {
				if now.Sub(o.used) > time.Minute {
					delete(t.keys, name)
				}
			}
		}
		k = &keyTokens{}
		t.keys[key] = k
	}
	k.used = now
	return k
}

// take hands out a local token of k, if one is fresh: its delay from now.
func (t *Tokens) take(k *keyTokens, now time.Time) (time.Duration, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for len(k.ready) > 0 {
		r := k.ready[0]
		k.ready = k.ready[1:]
		if now.Sub(r) <= t.stale {
			return max(r.Sub(now), 0), true
		}
	}
	return 0, false
}

// giveBack returns a token handed out at r to k's batch, if still fresh.
func (t *Tokens) giveBack(k *keyTokens, r time.Time) {
	if time.Since(r) > t.stale {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	i := 0
	for i < len(k.ready) && k.ready[i].Before(r) {
		i++
	}
	k.ready = append(k.ready[:i], append([]time.Time{r}, k.ready[i:]...)...)
}

// Reserve implements handlers.Limiter: a token from this process's batch
// of key, else one round trip to the store (shared with concurrent callers
// of the key). Over MaxWait the error is a *handlers.BusyError.
func (t *Tokens) Reserve(ctx context.Context, key string) (time.Duration, func(), error) {
	k := t.key(key)
	for {
		now := time.Now()
		if d, ok := t.take(k, now); ok {
			t.refillEarly(k, key)
			return d, t.canceller(k, now.Add(d)), nil
		}
		k.fetch.Lock()
		// Another caller's round trip may have filled the batch meanwhile.
		if d, ok := t.take(k, time.Now()); ok {
			k.fetch.Unlock()
			now := time.Now()
			return d, t.canceller(k, now.Add(d)), nil
		}
		g, err := t.fetch(ctx, key)
		if err != nil {
			k.fetch.Unlock()
			return 0, func() {}, err
		}
		if g.Granted == 0 {
			k.fetch.Unlock()
			return 0, func() {}, &handlers.BusyError{Limit: "rate limit", RetryAfter: max(g.RetryAfter, time.Millisecond)}
		}
		t.add(k, g)
		k.fetch.Unlock()
	}
}

// refillEarly starts a round trip in the background when k's batch runs
// low (a quarter of Batch left), so that callers seldom find it empty and
// wait for one. Batches of fewer than 4 are not refilled early.
func (t *Tokens) refillEarly(k *keyTokens, key string) {
	if t.cfg.Batch < 4 {
		return
	}
	k.mu.Lock()
	low := len(k.ready) < t.cfg.Batch/4
	k.mu.Unlock()
	if !low || !k.refilling.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer k.refilling.Store(false)
		k.fetch.Lock()
		defer k.fetch.Unlock()
		g, err := t.fetch(context.Background(), key)
		if err != nil || g.Granted == 0 {
			return // a caller that finds the batch empty asks itself, and learns why
		}
		t.add(k, g)
	}()
}

// add puts the tokens of g into k's batch.
func (t *Tokens) add(k *keyTokens, g jobs.TokenGrant) {
	at := time.Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	for i := range g.Granted {
		k.ready = append(k.ready, at.Add(max(g.First+time.Duration(i)*t.interval, 0)))
	}
	slices.SortFunc(k.ready, func(a, b time.Time) int { return a.Compare(b) })
}

func (t *Tokens) fetch(ctx context.Context, key string) (jobs.TokenGrant, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.cfg.StoreTimeout)
	defer cancel()
	g, err := t.cfg.Store.TakeTokens(ctx, jobs.TakeTokensParams{
		Bucket: bucketName(t.cfg.Name, key), Interval: t.interval, Burst: t.cfg.Burst,
		Want: t.cfg.Batch, MaxWait: t.cfg.MaxWait, Queue: t.cfg.Queue,
	})
	if err != nil {
		return g, fmt.Errorf("limits: taking a token of %s from the store: %w", t.cfg.Name, err)
	}
	return g, nil
}

func (t *Tokens) canceller(k *keyTokens, at time.Time) func() {
	var once sync.Once
	return func() { once.Do(func() { t.giveBack(k, at) }) }
}

var _ handlers.Limiter = (*Tokens)(nil)

// bucketName is the store's name of name's bucket (or slots) of key: key
// quoted, since keys may hold bytes a database's text does not (a NUL).
func bucketName(name, key string) string { return name + " " + strconv.Quote(key) }
