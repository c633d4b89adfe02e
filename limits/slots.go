package limits

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/jobs"
)

// SlotsConfig configures Slots. Store, Name and Max are required.
type SlotsConfig struct {
	Store jobs.Limits
	// Name prefixes the limits' names in the store (e.g. "concurrency:"
	// and the type): one limit per Name and key.
	Name string
	// Max slots may be held at once across the fleet, per key.
	Max int
	// Lease is how long a slot outlives its holder's last renewal: a
	// worker that dies frees its slots after it. Slots renews the ones it
	// holds every third of it. 0 means 30s.
	Lease time.Duration
	// RetryAfter is what a refused caller is told: come back in about this
	// long (jittered, so that refused callers spread). 0 means 1s.
	RetryAfter time.Duration
	// Batch caps the slots one round trip takes. 0 means Max/8, at least 1
	// and at most 64. Idle means how long a released slot stays with this
	// process for its next caller before it goes back to the store; 0
	// means 20ms.
	Batch int
	Idle  time.Duration
	// StoreTimeout bounds each round trip. 0 means 5s.
	StoreTimeout time.Duration
	// Hold marks refusals (handlers.BusyError.Hold) as ones the caller
	// should wait out, holding its message, rather than put the message
	// off: for a limit without keys, where held messages starve no other
	// key (and putting every waiting message off would cost a store write
	// and a publish each, again and again).
	Hold bool
	// Logger receives renewal failures. nil means slog.Default().
	Logger *slog.Logger
}

// Slots is a handlers.SlotLimiter whose slots live in a jobs.Limits store,
// shared by every replica; each slot is leased, and renewed while held, so
// that the slots of a worker that died free themselves. Round trips are
// amortised: a round trip takes up to Batch slots, and a released slot
// stays with this process for Idle, for its next caller, before it goes
// back to the store (so a busy replica keeps its slots without a round
// trip per job, and an idle one gives them back within Idle). Close stops
// the renewals and releases what is still held. It is safe for concurrent
// use.
type Slots struct {
	cfg SlotsConfig

	mu   sync.Mutex
	keys map[string]*keySlots
	held map[string]bool // holders: every slot this process has in the store

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

type keySlots struct {
	name  string
	fetch sync.Mutex // one round trip per key at a time
	free  []freeSlot // held in the store, unused, oldest first (guarded by Slots.mu)
}

type freeSlot struct {
	holder string
	since  time.Time
}

// NewSlots checks cfg and starts the loop that renews held slots and
// gives idle ones back.
func NewSlots(cfg SlotsConfig) (*Slots, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("limits: SlotsConfig.Store is nil; pass a store that implements jobs.Limits (jobs/postgres)")
	case cfg.Name == "":
		return nil, errors.New("limits: SlotsConfig.Name is empty; name the limit (e.g. \"concurrency:\" and the job type)")
	case cfg.Max < 1:
		return nil, fmt.Errorf("limits: SlotsConfig.Max is %d; use 1 or more", cfg.Max)
	case cfg.Lease < 0 || cfg.Lease > 0 && cfg.Lease < 300*time.Millisecond || cfg.RetryAfter < 0 || cfg.StoreTimeout < 0 || cfg.Batch < 0 || cfg.Idle < 0:
		return nil, fmt.Errorf("limits: SlotsConfig.Lease (%v) must be 0 or at least 300ms; RetryAfter (%v), StoreTimeout (%v), Batch (%d) and Idle (%v) not negative",
			cfg.Lease, cfg.RetryAfter, cfg.StoreTimeout, cfg.Batch, cfg.Idle)
	}
	if cfg.Lease == 0 {
		cfg.Lease = 30 * time.Second
	}
	if cfg.RetryAfter == 0 {
		cfg.RetryAfter = time.Second
	}
	if cfg.Batch == 0 {
		cfg.Batch = min(max(cfg.Max/8, 1), 64)
	}
	if cfg.Idle == 0 {
		cfg.Idle = 20 * time.Millisecond
	}
	if cfg.StoreTimeout == 0 {
		cfg.StoreTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Slots{cfg: cfg, keys: map[string]*keySlots{}, held: map[string]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	go s.loop()
	return s, nil
}

func (s *Slots) key(key string) *keySlots {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[key]
	if !ok {
		k = &keySlots{name: bucketName(s.cfg.Name, key)}
		s.keys[key] = k
	}
	return k
}

// pop takes a free slot of k, if there is one.
func (s *Slots) pop(k *keySlots) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(k.free); n > 0 {
		h := k.free[n-1].holder // the most recently freed: the oldest go back first
		k.free = k.free[:n-1]
		return h, true
	}
	return "", false
}

// Acquire implements handlers.SlotLimiter: a slot this process holds and
// no one uses, else one round trip that takes up to Batch. When all are
// taken it returns a *handlers.BusyError at once (it never waits).
func (s *Slots) Acquire(ctx context.Context, key string) (func(), error) {
	k := s.key(key)
	if h, ok := s.pop(k); ok {
		return s.releaser(k, h), nil
	}
	k.fetch.Lock()
	defer k.fetch.Unlock()
	if h, ok := s.pop(k); ok { // freed while this caller waited for the round trip
		return s.releaser(k, h), nil
	}
	holders := make([]string, s.cfg.Batch)
	for i := range holders {
		holders[i] = uuid.NewString()
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.StoreTimeout)
	n, err := s.cfg.Store.TakeSlots(sctx, jobs.TakeSlotsParams{Name: k.name, Max: s.cfg.Max, Holders: holders, LeaseFor: s.cfg.Lease})
	cancel()
	if err != nil {
		return func() {}, fmt.Errorf("limits: taking a concurrency slot of %s from the store: %w", s.cfg.Name, err)
	}
	if n == 0 {
		jitter := time.Duration(rand.Int64N(int64(s.cfg.RetryAfter)))
		return func() {}, &handlers.BusyError{Limit: fmt.Sprintf("concurrency limit (%d across the fleet)", s.cfg.Max), RetryAfter: s.cfg.RetryAfter/2 + jitter, Hold: s.cfg.Hold}
	}
	now := time.Now()
	s.mu.Lock()
	for _, h := range holders[:n] {
		s.held[h] = true
	}
	for _, h := range holders[1:n] {
		k.free = append(k.free, freeSlot{holder: h, since: now})
	}
	s.mu.Unlock()
	return s.releaser(k, holders[0]), nil
}

// releaser returns the func that puts holder's slot back among k's free
// ones (once).
func (s *Slots) releaser(k *keySlots, holder string) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.held[holder] {
				k.free = append(k.free, freeSlot{holder: holder, since: time.Now()})
			}
		})
	}
}

// loop gives back slots idle for Idle, every Idle, and renews the held
// ones every third of the lease.
func (s *Slots) loop() {
	defer close(s.done)
	idle := time.NewTicker(s.cfg.Idle)
	defer idle.Stop()
	renew := time.NewTicker(s.cfg.Lease / 3)
	defer renew.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-idle.C:
			s.giveBack(time.Now().Add(-s.cfg.Idle))
		case <-renew.C:
			s.renew()
		}
	}
}

// giveBack releases in the store the free slots freed before cutoff.
func (s *Slots) giveBack(cutoff time.Time) {
	var out []string
	s.mu.Lock()
	for _, k := range s.keys {
		i := 0
		for i < len(k.free) && k.free[i].since.Before(cutoff) {
			out = append(out, k.free[i].holder)
			delete(s.held, k.free[i].holder)
			i++
		}
		k.free = k.free[i:]
	}
	s.mu.Unlock()
	s.release(out)
}

func (s *Slots) release(holders []string) {
	for chunk := range slices.Chunk(holders, jobs.MaxBatchIDs) {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StoreTimeout)
		err := s.cfg.Store.ReleaseSlots(ctx, chunk)
		cancel()
		if err != nil && !errors.Is(err, jobs.ErrClosed) {
			s.cfg.Logger.Warn("limits: releasing concurrency slots failed; they free themselves when their lease lapses", "limit", s.cfg.Name, "slots", len(chunk), "lease", s.cfg.Lease, "err", err)
		}
	}
}

func (s *Slots) renew() {
	s.mu.Lock()
	holders := make([]string, 0, len(s.held))
	for h := range s.held {
		holders = append(holders, h)
	}
	s.mu.Unlock()
	for chunk := range slices.Chunk(holders, jobs.MaxBatchIDs) {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StoreTimeout)
		err := s.cfg.Store.RenewSlots(ctx, chunk, s.cfg.Lease)
		cancel()
		if err != nil && !errors.Is(err, jobs.ErrClosed) {
			s.cfg.Logger.Warn("limits: renewing concurrency slots failed; will try again", "limit", s.cfg.Name, "slots", len(chunk), "err", err)
		}
	}
}

// Close stops the loop and releases every slot still held. Safe to call
// more than once.
func (s *Slots) Close() error {
	s.once.Do(func() {
		close(s.stop)
		<-s.done
		s.mu.Lock()
		holders := make([]string, 0, len(s.held))
		for h := range s.held {
			holders = append(holders, h)
		}
		s.held = map[string]bool{}
		for _, k := range s.keys {
			k.free = nil
		}
		s.mu.Unlock()
		s.release(holders)
	})
	return nil
}

var _ handlers.SlotLimiter = (*Slots)(nil)
