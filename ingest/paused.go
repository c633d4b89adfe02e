package ingest

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/courierq/courier/jobs"
)

// PausedTypes follows which job types are paused, fleet-wide: it reads
// them from the store every poll (and at once after Refresh), and tells the
// workers that use it. A nil *PausedTypes pauses nothing.
type PausedTypes struct {
	store jobs.TypePauser
	poll  time.Duration
	log   *slog.Logger

	refresh chan struct{}
	loadMu  sync.Mutex // one read at a time, so that an older read never lands last
	mu      sync.Mutex
	set     map[string]bool
	changed chan struct{} // closed and replaced at each change
	loaded  chan struct{} // closed after the first read
	once    sync.Once
}

// NewPausedTypes returns a PausedTypes that reads store every poll (0
// means 5s).
func NewPausedTypes(store jobs.TypePauser, poll time.Duration, log *slog.Logger) (*PausedTypes, error) {
	if store == nil {
		return nil, errors.New("ingest: NewPausedTypes: store is nil; pass a store that implements jobs.TypePauser")
	}
	if poll < 0 {
		return nil, errors.New("ingest: NewPausedTypes: poll is negative; use 0 for 5s")
	}
	if poll == 0 {
		poll = 5 * time.Second
	}
	if log == nil {
		log = slog.Default()
	}
	return &PausedTypes{store: store, poll: poll, log: log, refresh: make(chan struct{}, 1), set: map[string]bool{},
		changed: make(chan struct{}), loaded: make(chan struct{})}, nil
}

// Run reads the paused types every poll until ctx ends.
func (p *PausedTypes) Run(ctx context.Context) {
	t := time.NewTicker(p.poll)
	defer t.Stop()
	for {
		p.load(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.refresh:
		}
	}
}

// Refresh makes Run read the paused types at once (after this replica
// paused or resumed one).
func (p *PausedTypes) Refresh() {
	if p == nil {
		return
	}
	select {
	case p.refresh <- struct{}{}:
	default:
	}
}

// Reload reads the paused types now (after this replica paused or resumed
// one), so that this replica's workers take the change in before the call
// returns.
func (p *PausedTypes) Reload(ctx context.Context) {
	if p != nil {
		p.load(ctx)
	}
}

func (p *PausedTypes) load(ctx context.Context) {
	p.loadMu.Lock()
	defer p.loadMu.Unlock()
	list, err := p.store.PausedTypes(ctx)
	if err != nil {
		p.once.Do(func() { close(p.loaded) }) // workers start unpaused rather than not at all
		if ctx.Err() == nil {
			p.log.Warn("ingest: reading paused job types failed; keeping the last known ones", "err", err)
		}
		return
	}
	set := make(map[string]bool, len(list))
	for _, t := range list {
		set[t.Type] = true
	}
	p.mu.Lock()
	if !maps.Equal(set, p.set) {
		for t := range set {
			if !p.set[t] {
				p.log.Info("ingest: job type paused: its workers stop pulling", "type", t)
			}
		}
		for t := range p.set {
			if !set[t] {
				p.log.Info("ingest: job type resumed", "type", t)
			}
		}
		p.set = set
		close(p.changed)
		p.changed = make(chan struct{})
	}
	p.mu.Unlock()
	p.once.Do(func() { close(p.loaded) })
}

// wait waits for the first read of the paused types (or ctx's end).
func (p *PausedTypes) wait(ctx context.Context) {
	if p == nil {
		return
	}
	select {
	case <-p.loaded:
	case <-ctx.Done():
	}
}

// state reports whether typ is paused, and a channel closed at the next
// change.
func (p *PausedTypes) state(typ string) (bool, <-chan struct{}) {
	if p == nil {
		return false, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.set[typ], p.changed
}

func (p *PausedTypes) paused(typ string) bool {
	paused, _ := p.state(typ)
	return paused
}

// Types returns the paused types known now.
func (p *PausedTypes) Types() []string {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.set))
	for t := range p.set {
		out = append(out, t)
	}
	return out
}
