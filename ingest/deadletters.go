package ingest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/wire"
)

// DeadLetter is a message kept on a dead-letter subscription: a copy that
// the worker published (with the AttrDeadLetter* attributes), or one that
// Pub/Sub forwarded under the worker subscription's dead-letter policy.
type DeadLetter struct {
	Subscription string // ID of the dead-letter subscription it is on
	MessageID    string // its Pub/Sub message ID there (not the original's)
	Type         string // ce-type; "" when it had none
	JobID        string // ce-id; "" when it had none
	Reason       string // AttrDeadLetterReason; "" when Pub/Sub forwarded it
	Attempt      int    // the attempt that failed; 0 when it never ran or is unknown
	Published    time.Time
	Data         []byte
	Attributes   map[string]string
}

// DeadLetterPublisher sends the copies of messages the worker gives up on
// to dead-letter topics. Metrics decorate it to count dead letters.
type DeadLetterPublisher interface {
	// PublishDeadLetter publishes m to topic (an ID in the worker's
	// project) and waits until Pub/Sub accepted it, or ctx ends.
	PublishDeadLetter(ctx context.Context, topic string, m *pubsub.Message) error
	// Stop sends what is buffered and releases the publishers; the worker
	// calls it when Run returns.
	Stop()
}

// NewDeadLetters returns the DeadLetterPublisher that Config.DeadLetters
// defaults to: publishers of c, one per dead-letter topic, sending at once.
func NewDeadLetters(c *pubsub.Client) DeadLetterPublisher { return newClientDeadLetters(c) }

// clientDeadLetters is the DeadLetterPublisher on a *pubsub.Client.
type clientDeadLetters struct {
	c    *pubsub.Client
	mu   sync.Mutex
	pubs map[string]*pubsub.Publisher
}

func newClientDeadLetters(c *pubsub.Client) *clientDeadLetters {
	return &clientDeadLetters{c: c, pubs: map[string]*pubsub.Publisher{}}
}

func (d *clientDeadLetters) PublishDeadLetter(ctx context.Context, topic string, m *pubsub.Message) error {
	d.mu.Lock()
	p, ok := d.pubs[topic]
	if !ok {
		p = d.c.Publisher(topic)
		p.PublishSettings.DelayThreshold = time.Millisecond
		d.pubs[topic] = p
	}
	d.mu.Unlock()
	if _, err := p.Publish(ctx, m).Get(ctx); err != nil {
		return fmt.Errorf("ingest: publishing to dead-letter topic %s: %w", topic, err)
	}
	return nil
}

func (d *clientDeadLetters) Stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range d.pubs {
		p.Stop()
	}
}

// maxPeek bounds how many messages one peek or ack leases per subscription.
const maxPeek = 1000

// DeadLetterReaderConfig configures a DeadLetterReader.
type DeadLetterReaderConfig struct {
	// Client reaches Pub/Sub. Required.
	Client *pubsub.Client
	// Registry lists the job types whose dead letters are read. Required.
	Registry *handlers.Registry
	// Naming maps types to topics; it must match the workers'.
	Naming wire.Naming
	// DeadLetterSuffix as in Config ("" means "-dead-letter").
	DeadLetterSuffix string
}

// DeadLetterReader reads and removes the dead letters of the registered job
// types. It needs no Worker, only a Pub/Sub client, so any process of a
// deployment (an API replica too) can show and replay dead letters; a
// Worker's PeekDeadLetters and AckDeadLetters use one.
type DeadLetterReader struct {
	cfg DeadLetterReaderConfig
}

// NewDeadLetterReader checks cfg and returns a reader.
func NewDeadLetterReader(cfg DeadLetterReaderConfig) (*DeadLetterReader, error) {
	switch {
	case cfg.Client == nil:
		return nil, errors.New("ingest: DeadLetterReaderConfig.Client is nil; pass a *pubsub.Client")
	case cfg.Registry == nil:
		return nil, errors.New("ingest: DeadLetterReaderConfig.Registry is nil; pass the handler registry")
	}
	if cfg.DeadLetterSuffix == "" {
		cfg.DeadLetterSuffix = "-dead-letter"
	}
	return &DeadLetterReader{cfg: cfg}, nil
}

// subscription returns the dead-letter subscription of type typ.
func (r *DeadLetterReader) subscription(typ string) (string, error) {
	topic, err := r.cfg.Naming.Topic(typ)
	if err != nil {
		return "", fmt.Errorf("ingest: topic of %s: %w", typ, err)
	}
	return topic + r.cfg.DeadLetterSuffix, nil
}

// Types returns the registered job types, sorted.
func (r *DeadLetterReader) Types() []string { return r.cfg.Registry.Types() }

// PeekDeadLetters returns up to limit (at most 1000; 0 means 1000) dead
// letters of each registered type (of typ only, when typ is not ""), oldest
// published first, and leaves them in place: see DeadLetterReader.Peek.
func (w *Worker) PeekDeadLetters(ctx context.Context, typ string, limit int) ([]DeadLetter, error) {
	return w.deadLetterReader().Peek(ctx, typ, limit)
}

// AckDeadLetters removes dead letters: see DeadLetterReader.Ack.
func (w *Worker) AckDeadLetters(ctx context.Context, sub string, messageIDs []string) ([]string, error) {
	return w.deadLetterReader().Ack(ctx, sub, messageIDs)
}

func (w *Worker) deadLetterReader() *DeadLetterReader {
	return &DeadLetterReader{cfg: DeadLetterReaderConfig{Client: w.cfg.Client, Registry: w.cfg.Registry, Naming: w.cfg.Naming, DeadLetterSuffix: w.cfg.DeadLetterSuffix}}
}

// Peek returns up to limit (at most 1000; 0 means 1000) dead letters of
// each registered type (of typ only, when typ is not ""), oldest published
// first, and leaves them in place: it pulls without acking and then sets
// their ack deadlines to 0, so they can be pulled again at once. While it
// runs they are leased, so a concurrent peek sees fewer; Pub/Sub may also
// return fewer than are kept (a pull that returns immediately is best
// effort). For the dashboard and ListDeadLetters; not for consuming dead
// letters.
func (r *DeadLetterReader) Peek(ctx context.Context, typ string, limit int) ([]DeadLetter, error) {
	if limit < 0 || limit > maxPeek {
		return nil, fmt.Errorf("ingest: PeekDeadLetters limit %d; pass 1..%d, or 0 for %d", limit, maxPeek, maxPeek)
	}
	if limit == 0 {
		limit = maxPeek
	}
	var out []DeadLetter
	for _, e := range r.cfg.Registry.Entries() {
		if typ != "" && e.Type != typ {
			continue
		}
		sub, err := r.subscription(e.Type)
		if err != nil {
			return nil, err
		}
		err = r.lease(ctx, sub, limit, func(rm *pubsubpb.ReceivedMessage) bool {
			out = append(out, deadLetter(sub, rm.Message))
			return false
		})
		if err != nil {
			return nil, err
		}
	}
	slices.SortStableFunc(out, func(a, b DeadLetter) int { return a.Published.Compare(b.Published) })
	return out, nil
}

// Ack removes the dead letters with these message IDs from the
// dead-letter subscription sub (a DeadLetter.Subscription) and returns the
// IDs it acked; IDs it did not find (already gone, or leased by someone
// else) are left out. Other messages it leases on the way are left in place.
func (r *DeadLetterReader) Ack(ctx context.Context, sub string, messageIDs []string) ([]string, error) {
	if !r.IsSubscription(sub) {
		return nil, fmt.Errorf("ingest: %q is not the dead-letter subscription of a registered type", sub)
	}
	want := map[string]bool{}
	for _, id := range messageIDs {
		want[id] = true
	}
	var acked []string
	err := r.lease(ctx, sub, maxPeek, func(rm *pubsubpb.ReceivedMessage) bool {
		id := rm.Message.GetMessageId()
		if !want[id] {
			return false
		}
		delete(want, id)
		acked = append(acked, id)
		return true
	})
	if err != nil {
		return nil, err
	}
	return acked, nil
}

// IsSubscription reports whether sub is the dead-letter subscription of a
// registered type.
func (r *DeadLetterReader) IsSubscription(sub string) bool {
	for _, e := range r.cfg.Registry.Entries() {
		if s, err := r.subscription(e.Type); err == nil && s == sub {
			return true
		}
	}
	return false
}

// lease pulls up to limit messages from sub, holding each until every one is
// pulled (so that none comes twice), then acks those keep returned true for
// and sets the others' ack deadlines to 0.
func (r *DeadLetterReader) lease(ctx context.Context, sub string, limit int, keep func(*pubsubpb.ReceivedMessage) bool) (err error) {
	c := r.cfg.Client.SubscriptionAdminClient
	name := "projects/" + r.cfg.Client.Project() + "/subscriptions/" + sub
	var ack, nack []string
	defer func() {
		// Release what was leased even when ctx ended mid-way.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if len(ack) > 0 {
			if aerr := c.Acknowledge(rctx, &pubsubpb.AcknowledgeRequest{Subscription: name, AckIds: ack}); aerr != nil {
				err = errors.Join(err, fmt.Errorf("ingest: acking dead letters on %s: %w", name, aerr))
			}
		}
		for chunk := range slices.Chunk(nack, 1000) {
			if nerr := c.ModifyAckDeadline(rctx, &pubsubpb.ModifyAckDeadlineRequest{Subscription: name, AckIds: chunk}); nerr != nil {
				err = errors.Join(err, fmt.Errorf("ingest: releasing dead letters on %s: %w", name, nerr))
			}
		}
	}()
	for seen := 0; seen < limit; {
		resp, err := c.Pull(ctx, &pubsubpb.PullRequest{
			Subscription: name, MaxMessages: int32(min(limit-seen, maxPeek)),
			//lint:ignore SA1019 deprecated for streaming clients; the right thing for a peek that must not wait
			ReturnImmediately: true,
		})
		if err != nil {
			if notFound(err) {
				return fmt.Errorf("ingest: dead-letter subscription %s does not exist; start the worker without DisableCreate, or create it on the dead-letter topic", name)
			}
			return fmt.Errorf("ingest: pulling dead letters from %s: %w", name, err)
		}
		if len(resp.ReceivedMessages) == 0 {
			return nil
		}
		for _, rm := range resp.ReceivedMessages {
			seen++
			if keep(rm) {
				ack = append(ack, rm.AckId)
			} else {
				nack = append(nack, rm.AckId)
			}
		}
	}
	return nil
}

func deadLetter(sub string, m *pubsubpb.PubsubMessage) DeadLetter {
	a := m.GetAttributes()
	d := DeadLetter{
		Subscription: sub, MessageID: m.GetMessageId(), Type: a[wire.AttrType], JobID: a[wire.AttrID],
		Reason: a[AttrDeadLetterReason], Published: m.GetPublishTime().AsTime(), Data: m.GetData(), Attributes: a,
	}
	if n, err := strconv.Atoi(a[AttrDeadLetterAttempt]); err == nil {
		d.Attempt = n
	} else if n, err := strconv.Atoi(a["CloudPubSubDeadLetterSourceDeliveryCount"]); err == nil {
		d.Attempt = n
	}
	if d.Reason == "" && a["CloudPubSubDeadLetterSourceSubscription"] != "" {
		d.Reason = "Pub/Sub dead-lettered it after " + a["CloudPubSubDeadLetterSourceDeliveryCount"] + " deliveries"
	}
	return d
}
