package handlers

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Defaults of Config fields left zero.
const (
	DefaultMaxAttempts = 5
	DefaultMinBackoff  = 10 * time.Second
	DefaultMaxBackoff  = 600 * time.Second
)

// Config configures one registered handler. The zero value is valid: no rate
// limit, no concurrency bound, no timeout, DefaultMaxAttempts attempts and
// Pub/Sub's default retry backoff. It is a struct, not options, because it
// mirrors courierd's --config file and can be logged and validated whole.
type Config struct {
	// RatePerSecond is how many attempts may start per second (tokens of a
	// golang.org/x/time/rate limiter). 0 means no limit; negative is invalid.
	RatePerSecond float64
	// Burst is how many attempts may start at once when tokens have built up.
	// 0 means 1 when RatePerSecond is set. Ignored without RatePerSecond.
	Burst int
	// Concurrency bounds attempts running at once in this process. 0 means no
	// bound (the subscription's flow control still bounds messages held).
	Concurrency int
	// Timeout bounds one attempt; an attempt that runs past it fails with a
	// retryable error wrapping ErrTimeout. 0 means no timeout.
	Timeout time.Duration
	// MaxAttempts is how many attempts a job gets when it does not say
	// (jobs.Job.MaxAttempts 0). 0 means DefaultMaxAttempts; 1 means no retry.
	MaxAttempts int
	// MinBackoff and MaxBackoff space redeliveries after a retryable failure;
	// they become the subscription's retry policy, so each must be within
	// 0..600s (Pub/Sub's range) and MinBackoff at most MaxBackoff. 0 means
	// DefaultMinBackoff (or MaxBackoff, when that is lower) and
	// DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.RatePerSecond > 0 && c.Burst == 0 {
		c.Burst = 1
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = DefaultMinBackoff
		if c.MaxBackoff > 0 && c.MaxBackoff < c.MinBackoff {
			c.MinBackoff = c.MaxBackoff
		}
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	return c
}

func (c Config) validate(typ string) error {
	bad := func(field string, v any, fix string) error {
		return fmt.Errorf("handlers: %s: Config.%s is %v; %s", typ, field, v, fix)
	}
	switch {
	case c.RatePerSecond < 0 || math.IsNaN(c.RatePerSecond) || math.IsInf(c.RatePerSecond, 0):
		return bad("RatePerSecond", c.RatePerSecond, "use a positive number, or 0 for no limit")
	case c.Burst < 0:
		return bad("Burst", c.Burst, "use a positive number, or 0 for 1")
	case c.Concurrency < 0:
		return bad("Concurrency", c.Concurrency, "use a positive number, or 0 for no bound")
	case c.Timeout < 0:
		return bad("Timeout", c.Timeout, "use a positive duration, or 0 for none")
	case c.MaxAttempts < 0:
		return bad("MaxAttempts", c.MaxAttempts, "use 1 or more, or 0 for the default")
	case c.MinBackoff < 0 || c.MinBackoff > 600*time.Second:
		return bad("MinBackoff", c.MinBackoff, "Pub/Sub allows 0..600s")
	case c.MaxBackoff < 0 || c.MaxBackoff > 600*time.Second:
		return bad("MaxBackoff", c.MaxBackoff, "Pub/Sub allows 0..600s")
	}
	if d := c.WithDefaults(); d.MaxBackoff < d.MinBackoff {
		return bad("MaxBackoff", d.MaxBackoff, fmt.Sprintf("it is below MinBackoff (%v); raise it or lower MinBackoff", d.MinBackoff))
	}
	return nil
}

// Registry maps protobuf message types to their handlers. Build one with
// NewRegistry and fill it with Register before handing it to a runner; it is
// safe for concurrent use. It holds each typed handler and its Config; the
// runner (package ingest) composes the middleware around it when it runs a
// job, so a Registry has no limiters or slots of its own and can be shared.
type Registry struct {
	mu      sync.RWMutex
	entries map[string]*Entry
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{entries: map[string]*Entry{}}
}

// Entry is one registered handler.
type Entry struct {
	// Type is the full protobuf name of the payload, e.g. "courier.demo.v1.Echo".
	Type string
	// Config is the handler's Config with defaults applied.
	Config Config
	// Handler is the typed function adapted to Handler, with no middleware:
	// the runner wraps it. It expects Request.Payload of Type.
	Handler Handler

	msgType protoreflect.MessageType
	given   Config // as registered (and configured), before defaults
}

// Decode decodes data as a message of e.Type. The error says what was wrong.
func (e *Entry) Decode(data []byte) (proto.Message, error) {
	m := e.msgType.New().Interface()
	if err := proto.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("handlers: decoding %d bytes as %s: %w", len(data), e.Type, err)
	}
	return m, nil
}

// Lookup returns the entry registered for the full protobuf name typ.
func (r *Registry) Lookup(typ string) (*Entry, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.entries[typ]
	return e, ok
}

// Entries returns every entry, sorted by Type.
func (r *Registry) Entries() []*Entry {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*Entry, 0, len(r.entries))
	for _, e := range r.entries {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b *Entry) int {
		if a.Type < b.Type {
			return -1
		}
		if a.Type > b.Type {
			return 1
		}
		return 0
	})
	return out
}

// Types returns the registered full protobuf names, sorted.
func (r *Registry) Types() []string {
	var out []string
	for _, e := range r.Entries() {
		out = append(out, e.Type)
	}
	return out
}

// Job is one attempt of a job whose payload is a T, as a typed handler sees it.
type Job[T proto.Message] struct {
	ID          string
	Type        string // full protobuf name of T
	Attempt     int    // from 1
	MaxAttempts int
	Labels      map[string]string // never nil
	Payload     T

	progress ProgressFunc
}

// Progress records how far the job is (fraction in 0..1, clamped) with a
// short message. It is cheap to call often; errors only say that the record
// failed, the job goes on.
func (j *Job[T]) Progress(ctx context.Context, fraction float64, message string) error {
	if j.progress == nil {
		return nil
	}
	fraction = min(max(fraction, 0), 1)
	return j.progress(ctx, fraction, message)
}

// Register adds fn as the handler of messages of type T, whose result is an R
// (a nil R is a success with no result). It returns an error wrapping
// ErrDuplicate if T already has a handler, or naming the Config field that is
// invalid.
func Register[T proto.Message, R proto.Message](reg *Registry, fn func(ctx context.Context, job *Job[T]) (R, error), cfg Config) error {
	var zero T
	mt := zero.ProtoReflect().Type()
	typ := string(mt.Descriptor().FullName())
	if fn == nil {
		return fmt.Errorf("handlers: Register %s: fn is nil", typ)
	}
	if err := cfg.validate(typ); err != nil {
		return err
	}
	typed := func(ctx context.Context, req *Request) (proto.Message, error) {
		payload, ok := req.Payload.(T)
		if !ok {
			return nil, Permanent(fmt.Errorf("handlers: %s handler got a %T payload", typ, req.Payload))
		}
		labels := req.Labels
		if labels == nil {
			labels = map[string]string{}
		}
		res, err := fn(ctx, &Job[T]{
			ID: req.ID, Type: typ, Attempt: req.Attempt, MaxAttempts: req.MaxAttempts,
			Labels: labels, Payload: payload, progress: req.Progress,
		})
		if err != nil {
			return nil, err
		}
		// A nil R inside a proto.Message interface is not == nil; normalise.
		if any(res) == nil || !res.ProtoReflect().IsValid() {
			return nil, nil
		}
		return res, nil
	}
	e := &Entry{Type: typ, Config: cfg.WithDefaults(), msgType: mt, Handler: typed, given: cfg}

	reg.mu.Lock()
	defer reg.mu.Unlock()
	if _, ok := reg.entries[typ]; ok {
		return fmt.Errorf("%w: %s; register each type once", ErrDuplicate, typ)
	}
	reg.entries[typ] = e
	return nil
}

// Configure overrides the Config of the handler registered for typ with the
// non-zero fields of o (courier applies a config file's handlers.types this
// way: what the file sets wins over what the code registered). It returns
// an error if typ has no handler or the result is invalid.
func (r *Registry) Configure(typ string, o Config) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.entries[typ]
	if !ok {
		return fmt.Errorf("handlers: Configure %s: no handler is registered for it (registered: %v)", typ, r.typesLocked())
	}
	c := e.given.Override(o)
	if err := c.validate(typ); err != nil {
		return err
	}
	ne := *e
	ne.Config, ne.given = c.WithDefaults(), c
	r.entries[typ] = &ne
	return nil
}

func (r *Registry) typesLocked() []string {
	out := make([]string, 0, len(r.entries))
	for t := range r.entries {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// Override returns c with each non-zero field of o in place of c's.
func (c Config) Override(o Config) Config {
	if o.RatePerSecond != 0 {
		c.RatePerSecond = o.RatePerSecond
	}
	if o.Burst != 0 {
		c.Burst = o.Burst
	}
	if o.Concurrency != 0 {
		c.Concurrency = o.Concurrency
	}
	if o.Timeout != 0 {
		c.Timeout = o.Timeout
	}
	if o.MaxAttempts != 0 {
		c.MaxAttempts = o.MaxAttempts
	}
	if o.MinBackoff != 0 {
		c.MinBackoff = o.MinBackoff
	}
	if o.MaxBackoff != 0 {
		c.MaxBackoff = o.MaxBackoff
	}
	return c
}
