// Package publisher publishes protobuf messages to Pub/Sub as courier jobs:
// Publish encodes a message, picks the topic of its type (Naming), sets the
// CloudEvents attributes of courier's wire format, assigns a job ID and hands
// the message to the Pub/Sub client's batching publisher without waiting for
// the network. Errors are never dropped: a full buffer fails (or blocks) the
// call, later failures go to Config.OnError, and PublishResult/PublishSync
// let a caller wait for Pub/Sub's answer.
//
// It is for services that fire jobs and forget them, and for courier's outbox
// relay. It is not a job store: a message Publish accepted is lost if the
// process dies before it is sent; callers that need the job recorded first use
// courier.v1.JobService/EnqueueJob. It creates no topics.
package publisher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/google/uuid"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/courierq/courier/wire"
)

// MaxMessageBytes is Pub/Sub's limit on one message (data and attributes).
const MaxMessageBytes = wire.MaxMessageBytes

var (
	// ErrClosed is returned by calls after Close.
	ErrClosed = errors.New("publisher: closed")
	// ErrBufferFull is returned by Publish when the topic's buffer holds
	// Config.MaxBufferedMessages or MaxBufferedBytes and BlockWhenFull is off.
	ErrBufferFull = errors.New("publisher: buffer full")
)

// TooLargeError is returned for a message over MaxMessageBytes.
type TooLargeError struct {
	Type  string // full protobuf name
	Size  int    // encoded size with attributes (see EncodedSize), bytes
	Limit int    // MaxMessageBytes
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("publisher: %s message is %d bytes encoded, over Pub/Sub's limit of %d bytes; send a reference to the data instead", e.Type, e.Size, e.Limit)
}

// PublishError is a publish that failed after Publish returned; OnError gets it.
type PublishError struct {
	ID    string // the job ID Publish returned
	Type  string // full protobuf name
	Topic string // topic ID
	Err   error
}

func (e *PublishError) Error() string {
	return fmt.Sprintf("publisher: publishing job %s (%s) to topic %s: %v", e.ID, e.Type, e.Topic, e.Err)
}
func (e *PublishError) Unwrap() error { return e.Err }

// Config configures a Publisher. The zero value is valid.
type Config struct {
	// Naming maps message types to topics. Zero: the default rule.
	Naming wire.Naming
	// Source is the ce-source attribute. "" means "courier".
	Source string

	// MaxBufferedMessages and MaxBufferedBytes bound, per topic, the messages
	// accepted by Publish and not yet answered by Pub/Sub (the client's
	// publish flow control). 0 means 1000 messages / 100 MB.
	MaxBufferedMessages, MaxBufferedBytes int
	// BlockWhenFull makes Publish wait (until ctx ends) for buffer room
	// instead of failing with ErrBufferFull.
	BlockWhenFull bool

	// OnError receives every *PublishError of a Publish call that had
	// returned (not of PublishResult/PublishSync, whose caller sees them).
	// It runs on its own goroutine and must be safe for concurrent use.
	// nil means the error is logged at error level on Logger.
	OnError func(*PublishError)
	// Logger logs failed publishes when OnError is nil. nil: slog.Default().
	Logger *slog.Logger

	// Batching, passed to the Pub/Sub client's PublishSettings: send a batch
	// after DelayThreshold, or at CountThreshold messages or ByteThreshold
	// bytes. 0 means the client's defaults (10ms, 100, 1 MB).
	DelayThreshold                time.Duration
	CountThreshold, ByteThreshold int
	// Timeout bounds the sending of one batch, retries included. 0 means 60s.
	Timeout time.Duration

	// Now is the clock for ce-time. nil means time.Now.
	Now func() time.Time
	// NewID makes job IDs. nil means UUIDv7 strings.
	NewID func() (string, error)
}

// Publisher publishes protobuf messages. It is safe for concurrent use.
type Publisher struct {
	client *pubsub.Client
	cfg    Config

	mu      sync.RWMutex // closed, topics; Publish holds R while submitting
	closed  bool
	topics  map[string]*pubsub.Publisher
	pending sync.WaitGroup // OnError watchers

	stopOnce sync.Once
	stopped  chan struct{}
}

// New returns a Publisher sending through client, which the caller keeps and
// closes after Close. It starts no goroutines.
func New(client *pubsub.Client, cfg Config) (*Publisher, error) {
	if client == nil {
		return nil, errors.New("publisher: New: client is nil; pass a *pubsub.Client from pubsub.NewClient")
	}
	switch {
	case cfg.MaxBufferedMessages < 0:
		return nil, fmt.Errorf("publisher: Config.MaxBufferedMessages is %d; use a positive number, or 0 for 1000", cfg.MaxBufferedMessages)
	case cfg.MaxBufferedBytes < 0:
		return nil, fmt.Errorf("publisher: Config.MaxBufferedBytes is %d; use a positive number, or 0 for 100 MB", cfg.MaxBufferedBytes)
	case cfg.CountThreshold < 0 || cfg.CountThreshold > pubsub.MaxPublishRequestCount:
		return nil, fmt.Errorf("publisher: Config.CountThreshold is %d; use 1..%d, or 0 for 100", cfg.CountThreshold, pubsub.MaxPublishRequestCount)
	case cfg.ByteThreshold < 0, cfg.DelayThreshold < 0, cfg.Timeout < 0:
		return nil, fmt.Errorf("publisher: Config.ByteThreshold (%d), DelayThreshold (%v) and Timeout (%v) must not be negative", cfg.ByteThreshold, cfg.DelayThreshold, cfg.Timeout)
	}
	for typ, id := range cfg.Naming.Topics {
		if err := wire.ValidateID(id); err != nil {
			return nil, fmt.Errorf("publisher: Config.Naming.Topics[%q]: %w", typ, err)
		}
	}
	if len(cfg.Source) > MaxSourceBytes {
		return nil, fmt.Errorf("publisher: Config.Source is %d bytes; the limit is %d", len(cfg.Source), MaxSourceBytes)
	}
	if cfg.Source == "" {
		cfg.Source = "courier"
	}
	if cfg.MaxBufferedMessages == 0 {
		cfg.MaxBufferedMessages = 1000
	}
	if cfg.MaxBufferedBytes == 0 {
		cfg.MaxBufferedBytes = 100 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.OnError == nil {
		logger := cfg.Logger
		cfg.OnError = func(e *PublishError) {
			logger.Error("publisher: publish failed", "job_id", e.ID, "type", e.Type, "topic", e.Topic, "err", e.Err)
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NewID == nil {
		cfg.NewID = func() (string, error) {
			id, err := uuid.NewV7()
			return id.String(), err
		}
	}
	return &Publisher{client: client, cfg: cfg, topics: map[string]*pubsub.Publisher{}, stopped: make(chan struct{})}, nil
}

// Option sets a per-call parameter of Publish, PublishResult and PublishSync.
type Option func(*callOptions)

type callOptions struct {
	id          string
	idSet       bool
	labels      map[string]string
	orderingKey string
}

// WithID publishes with this job ID (ce-id) instead of a new one; the outbox
// relay passes the ID of the job it recorded.
func WithID(id string) Option {
	return func(o *callOptions) { o.id, o.idSet = id, true }
}

// WithLabels attaches job labels (one courier-label-KEY attribute each).
func WithLabels(labels map[string]string) Option {
	return func(o *callOptions) { o.labels = labels }
}

// WithOrderingKey publishes with a Pub/Sub ordering key ("" means none):
// Pub/Sub delivers the messages of one key on a subscription with message
// ordering in the order they were published. After a failed publish of a
// key, the client refuses that key's later messages until it is resumed;
// the publisher resumes it when the failure is reported (Result.Get, or
// OnError), so the caller republishes the failed message, then the rest.
func WithOrderingKey(key string) Option {
	return func(o *callOptions) { o.orderingKey = key }
}

// Result is the outcome of one PublishResult call.
type Result struct {
	ID    string // job ID (ce-id)
	Topic string // topic ID
	r     *pubsub.PublishResult
	// resume re-enables the ordering key after a failure; nil without one.
	resume func()
}

// Ready is closed once Pub/Sub has answered (or the publish failed).
func (r *Result) Ready() <-chan struct{} { return r.r.Ready() }

// Get waits until Pub/Sub accepted the message and returns its Pub/Sub
// message ID, or the error that made it fail, or ctx's error.
func (r *Result) Get(ctx context.Context) (messageID string, err error) {
	messageID, err = r.r.Get(ctx)
	if err != nil && ctx.Err() == nil {
		if r.resume != nil {
			r.resume()
		}
		err = fmt.Errorf("publisher: publishing job %s to topic %s: %w", r.ID, r.Topic, err)
	}
	return messageID, err
}

// Publish sends msg to the topic of its type and returns the job ID it
// carries, without waiting for the network. An error means msg was not
// accepted: bad options, an invalid topic name, TooLargeError, ErrBufferFull,
// ErrClosed, or ctx ending while BlockWhenFull waits. A failure after it
// returns goes to Config.OnError.
func (p *Publisher) Publish(ctx context.Context, msg proto.Message, opts ...Option) (string, error) {
	res, err := p.submit(ctx, msg, opts, true)
	if err != nil {
		return "", err
	}
	return res.ID, nil
}

// PublishResult is Publish for callers that must know when Pub/Sub accepted
// the message: failures are reported by the Result, not to OnError.
func (p *Publisher) PublishResult(ctx context.Context, msg proto.Message, opts ...Option) (*Result, error) {
	return p.submit(ctx, msg, opts, false)
}

// PublishSync publishes msg and waits until Pub/Sub accepted it (or it
// failed, or ctx ended). It returns the job ID.
func (p *Publisher) PublishSync(ctx context.Context, msg proto.Message, opts ...Option) (string, error) {
	res, err := p.PublishResult(ctx, msg, opts...)
	if err != nil {
		return "", err
	}
	if _, err := res.Get(ctx); err != nil {
		return "", err
	}
	return res.ID, nil
}

// PublishMessage publishes a job message whose payload is already encoded
// (m.Data, a message of the full protobuf name m.Type) with the ID, labels,
// trace context and ordering key m carries: the outbox relay uses it to
// publish stored jobs without decoding them. m.ID is required; a zero m.Time
// is stamped now, an empty m.Source is Config.Source, an empty TraceParent is
// taken from ctx's span. Failures are reported by the Result.
func (p *Publisher) PublishMessage(ctx context.Context, m *wire.Message) (*Result, error) {
	switch {
	case m == nil:
		return nil, errors.New("publisher: PublishMessage: message is nil")
	case m.Type == "":
		return nil, errors.New("publisher: PublishMessage: Type is empty; pass the payload's full protobuf name")
	case m.ID == "":
		return nil, errors.New("publisher: PublishMessage: ID is empty; pass the job's ID")
	}
	mm := *m
	return p.send(ctx, &mm, false)
}

// PublishBatch publishes msgs as PublishMessage does and waits, until ctx
// ends, for Pub/Sub's answer to each: errs[i] is msgs[i]'s outcome (nil when
// Pub/Sub accepted it). The outbox relay publishes through it.
func (p *Publisher) PublishBatch(ctx context.Context, msgs []*wire.Message) []error {
	errs := make([]error, len(msgs))
	results := make([]*Result, len(msgs))
	for i, m := range msgs {
		results[i], errs[i] = p.PublishMessage(ctx, m)
	}
	for i, r := range results {
		if r != nil {
			_, errs[i] = r.Get(ctx)
		}
	}
	return errs
}

// submit encodes msg and sends it. With watch, a goroutine waits for the
// answer and passes a failure to OnError.
func (p *Publisher) submit(ctx context.Context, msg proto.Message, opts []Option, watch bool) (*Result, error) {
	if msg == nil || !msg.ProtoReflect().IsValid() {
		return nil, errors.New("publisher: message is nil; pass a non-nil protobuf message")
	}
	typ := string(msg.ProtoReflect().Descriptor().FullName())
	data, err := proto.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("publisher: encoding %s: %w", typ, err)
	}
	var o callOptions
	for _, opt := range opts {
		opt(&o)
	}
	m := &wire.Message{ID: o.id, Type: typ, Labels: o.labels, Data: data, OrderingKey: o.orderingKey}
	if !o.idSet {
		if m.ID, err = p.cfg.NewID(); err != nil {
			return nil, fmt.Errorf("publisher: making a job ID: %w", err)
		}
	} else if m.ID == "" {
		return nil, errors.New("publisher: WithID got an empty job ID; pass the job's ID or leave WithID out")
	}
	return p.send(ctx, m, watch)
}

// send hands m to the client publisher of its type's topic.
func (p *Publisher) send(ctx context.Context, m *wire.Message, watch bool) (*Result, error) {
	topic, err := p.cfg.Naming.Topic(m.Type)
	if err != nil {
		return nil, err
	}
	if m.Source == "" {
		m.Source = p.cfg.Source
	}
	if m.Time.IsZero() {
		m.Time = p.cfg.Now()
	}
	if m.TraceParent == "" {
		m.TraceParent, m.TraceState = traceContext(ctx)
	}
	if err := checkID(m.ID); err != nil {
		return nil, err
	}
	if err := CheckSize(m.Type, m.Data, m.Labels); err != nil {
		return nil, err
	}
	attrs := m.Attributes()
	// Only a trace context beyond MaxTraceBytes gets here over the limit.
	if size := proto.Size(&pubsubpb.PubsubMessage{Data: m.Data, Attributes: attrs, OrderingKey: m.OrderingKey}); size > MaxMessageBytes {
		return nil, &TooLargeError{Type: m.Type, Size: size, Limit: MaxMessageBytes}
	}

	pub := p.topic(topic, m.OrderingKey != "")
	var resume func()
	if key := m.OrderingKey; key != "" {
		resume = func() { pub.ResumePublish(key) }
	}
	p.mu.RLock()
	closed := p.closed
	if !closed && watch {
		p.pending.Add(1) // under p.mu, so Close's Wait comes after every Add
	}
	p.mu.RUnlock()
	if closed {
		return nil, ErrClosed
	}
	id, typ := m.ID, m.Type
	// Not under p.mu: with BlockWhenFull this may wait, and Close must not.
	r := pub.Publish(ctx, &pubsub.Message{Data: m.Data, Attributes: attrs, OrderingKey: m.OrderingKey})
	select {
	case <-r.Ready():
		if _, err := r.Get(ctx); err != nil {
			if watch {
				p.pending.Done()
			}
			if resume != nil {
				resume()
			}
			switch {
			case errors.Is(err, pubsub.ErrFlowControllerMaxOutstandingMessages) || errors.Is(err, pubsub.ErrFlowControllerMaxOutstandingBytes):
				return nil, fmt.Errorf("%w: topic %s holds %d messages or %d bytes not yet sent; retry later, raise Config.MaxBufferedMessages/MaxBufferedBytes, or set BlockWhenFull", ErrBufferFull, topic, p.cfg.MaxBufferedMessages, p.cfg.MaxBufferedBytes)
			case errors.Is(err, pubsub.ErrPublisherStopped):
				return nil, ErrClosed
			}
			return nil, fmt.Errorf("publisher: publishing %s to topic %s: %w", typ, topic, err)
		}
	default:
	}
	if watch {
		go func() {
			defer p.pending.Done()
			if _, err := r.Get(context.Background()); err != nil {
				if resume != nil {
					resume()
				}
				p.cfg.OnError(&PublishError{ID: id, Type: typ, Topic: topic, Err: err})
			}
		}()
	}
	return &Result{ID: id, Topic: topic, r: r, resume: resume}, nil
}

// traceContext returns the W3C traceparent and tracestate of ctx's span, or
// "" when it has none.
func traceContext(ctx context.Context) (parent, state string) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return "", ""
	}
	return fmt.Sprintf("00-%s-%s-%s", sc.TraceID(), sc.SpanID(), sc.TraceFlags()), sc.TraceState().String()
}

// topic returns the client publisher of topic id, making it on first use.
// Messages with an ordering key go through a second one with message
// ordering on, so that ordering never slows the others down.
func (p *Publisher) topic(id string, ordered bool) *pubsub.Publisher {
	key := id
	if ordered {
		key += "\x00ordered"
	}
	p.mu.RLock()
	pub, ok := p.topics[key]
	p.mu.RUnlock()
	if ok {
		return pub
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if pub, ok := p.topics[key]; ok {
		return pub
	}
	pub = p.client.Publisher(id)
	pub.EnableMessageOrdering = ordered
	s := &pub.PublishSettings
	if p.cfg.DelayThreshold > 0 {
		s.DelayThreshold = p.cfg.DelayThreshold
	}
	if p.cfg.CountThreshold > 0 {
		s.CountThreshold = p.cfg.CountThreshold
	}
	if p.cfg.ByteThreshold > 0 {
		s.ByteThreshold = p.cfg.ByteThreshold
	}
	if p.cfg.Timeout > 0 {
		s.Timeout = p.cfg.Timeout
	}
	s.FlowControlSettings = pubsub.FlowControlSettings{
		MaxOutstandingMessages: p.cfg.MaxBufferedMessages,
		MaxOutstandingBytes:    p.cfg.MaxBufferedBytes,
		LimitExceededBehavior:  pubsub.FlowControlSignalError,
	}
	if p.cfg.BlockWhenFull {
		s.FlowControlSettings.LimitExceededBehavior = pubsub.FlowControlBlock
	}
	p.topics[key] = pub
	return pub
}

// Flush waits until every message accepted so far has been answered by
// Pub/Sub and its OnError call (if any) has returned, or ctx ends.
func (p *Publisher) Flush(ctx context.Context) error {
	p.mu.RLock()
	pubs := make([]*pubsub.Publisher, 0, len(p.topics))
	for _, pub := range p.topics {
		pubs = append(pubs, pub)
	}
	p.mu.RUnlock()
	return p.wait(ctx, "Flush", func() {
		var wg sync.WaitGroup
		for _, pub := range pubs {
			wg.Go(pub.Flush)
		}
		wg.Wait()
		p.pending.Wait()
	})
}

// Close stops accepting messages (later calls get ErrClosed), sends what is
// buffered, and waits for it as Flush does, until ctx ends. It does not close
// the client. Calling it again waits again; the result is nil once all is sent.
func (p *Publisher) Close(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	pubs := make([]*pubsub.Publisher, 0, len(p.topics))
	for _, pub := range p.topics {
		pubs = append(pubs, pub)
	}
	p.mu.Unlock()
	p.stopOnce.Do(func() {
		go func() {
			var wg sync.WaitGroup
			for _, pub := range pubs {
				wg.Go(pub.Stop)
			}
			wg.Wait()
			p.pending.Wait()
			close(p.stopped)
		}()
	})
	select {
	case <-p.stopped:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("publisher: Close gave up before every buffered message was sent: %w", context.Cause(ctx))
	}
}

func (p *Publisher) wait(ctx context.Context, op string, fn func()) error {
	done := make(chan struct{})
	go func() { fn(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("publisher: %s gave up before every message was answered: %w", op, context.Cause(ctx))
	}
}
