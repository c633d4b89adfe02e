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
// that the slots of a worker that died free themselves. Close stops the
// renewals (and releases what is still held). It is safe for concurrent
// use.
type Slots struct {
	cfg  SlotsConfig
	mu   sync.Mutex
	held map[string]bool // holders
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// NewSlots checks cfg and starts the renewal loop.
func NewSlots(cfg SlotsConfig) (*Slots, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("limits: SlotsConfig.Store is nil; pass a store that implements jobs.Limits (jobs/postgres)")
	case cfg.Name == "":
		return nil, errors.New("limits: SlotsConfig.Name is empty; name the limit (e.g. \"concurrency:\" and the job type)")
	case cfg.Max < 1:
		return nil, fmt.Errorf("limits: SlotsConfig.Max is %d; use 1 or more", cfg.Max)
	case cfg.Lease < 0 || cfg.Lease > 0 && cfg.Lease < 300*time.Millisecond || cfg.RetryAfter < 0 || cfg.StoreTimeout < 0:
		return nil, fmt.Errorf("limits: SlotsConfig.Lease (%v) must be 0 or at least 300ms; RetryAfter (%v) and StoreTimeout (%v) not negative", cfg.Lease, cfg.RetryAfter, cfg.StoreTimeout)
	}
	if cfg.Lease == 0 {
		cfg.Lease = 30 * time.Second
	}
	if cfg.RetryAfter == 0 {
		cfg.RetryAfter = time.Second
	}
	if cfg.StoreTimeout == 0 {
		cfg.StoreTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Slots{cfg: cfg, held: map[string]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	go s.renew()
	return s, nil
}

// Acquire implements handlers.SlotLimiter: one round trip to take a slot
// of key, and one (later) to release it. When all are taken it returns a
// *handlers.BusyError at once (it never waits: the caller puts its message
// off).
func (s *Slots) Acquire(ctx context.Context, key string) (func(), error) {
	holder := uuid.NewString()
	name := bucketName(s.cfg.Name, key)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.StoreTimeout)
	ok, err := s.cfg.Store.TakeSlot(sctx, jobs.TakeSlotParams{Name: name, Max: s.cfg.Max, Holder: holder, LeaseFor: s.cfg.Lease})
	cancel()
	if err != nil {
		return func() {}, fmt.Errorf("limits: taking a concurrency slot of %s from the store: %w", s.cfg.Name, err)
	}
	if !ok {
		jitter := time.Duration(rand.Int64N(int64(s.cfg.RetryAfter)))
		return func() {}, &handlers.BusyError{Limit: fmt.Sprintf("concurrency limit (%d across the fleet)", s.cfg.Max), RetryAfter: s.cfg.RetryAfter/2 + jitter, Hold: s.cfg.Hold}
	}
	s.mu.Lock()
	s.held[holder] = true
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.held, holder)
			s.mu.Unlock()
			rctx, cancel := context.WithTimeout(context.Background(), s.cfg.StoreTimeout)
			defer cancel()
			if err := s.cfg.Store.ReleaseSlots(rctx, []string{holder}); err != nil && !errors.Is(err, jobs.ErrClosed) {
				s.cfg.Logger.Warn("limits: releasing a concurrency slot failed; it frees itself when its lease lapses", "limit", s.cfg.Name, "lease", s.cfg.Lease, "err", err)
			}
		})
	}, nil
}

func (s *Slots) holders() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.held))
	for h := range s.held {
		out = append(out, h)
	}
	return out
}

// renew extends the held slots' leases every third of the lease.
func (s *Slots) renew() {
	defer close(s.done)
	t := time.NewTicker(s.cfg.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		for chunk := range slices.Chunk(s.holders(), jobs.MaxBatchIDs) {
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StoreTimeout)
			err := s.cfg.Store.RenewSlots(ctx, chunk, s.cfg.Lease)
			cancel()
			if err != nil && !errors.Is(err, jobs.ErrClosed) {
				s.cfg.Logger.Warn("limits: renewing concurrency slots failed; will try again", "limit", s.cfg.Name, "slots", len(chunk), "err", err)
			}
		}
	}
}

// Close stops renewing and releases the slots still held. Safe to call
// more than once.
func (s *Slots) Close() error {
	s.once.Do(func() {
		close(s.stop)
		<-s.done
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StoreTimeout)
		defer cancel()
		for chunk := range slices.Chunk(s.holders(), jobs.MaxBatchIDs) {
			_ = s.cfg.Store.ReleaseSlots(ctx, chunk)
		}
	})
	return nil
}

var _ handlers.SlotLimiter = (*Slots)(nil)
