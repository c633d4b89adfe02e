package ingest

import "cloud.google.com/go/pubsub/v2"

// message is the Pub/Sub message a delivery carries: pulled (a
// *pubsub.Message from Receive) or pushed (a push request, see push.go).
// The delivery reads its fields and calls exactly one of Ack and Nack, once.
type message struct {
	ID         string
	Data       []byte
	Attributes map[string]string
	// DeliveryAttempt is Pub/Sub's count of deliveries when the
	// subscription has a dead-letter policy; nil otherwise, and for pushes
	// (push.go says why).
	DeliveryAttempt *int
	acker

	// pushed marks a push request: the chain's waits for a rate-limit
	// token or a concurrency slot do not wait (it is answered 429 instead),
	// and gone is closed when the requester hangs up (nil when pulled:
	// never).
	pushed bool
	gone   <-chan struct{}
}

// acker settles a message with Pub/Sub: Ack (done) or Nack (redeliver).
type acker interface {
	Ack()
	Nack()
}

// pulled wraps a message received by Subscriber.Receive.
func pulled(m *pubsub.Message) *message {
	return &message{ID: m.ID, Data: m.Data, Attributes: m.Attributes, DeliveryAttempt: m.DeliveryAttempt, acker: m}
}
