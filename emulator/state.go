package emulator

import (
	"container/heap"
	"strconv"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// message is one published message, shared (read-only) by every
// subscription and snapshot that holds it.
type message struct {
	pb      *pubsubpb.PubsubMessage
	seq     uint64
	publish time.Time
	size    int64
}

func newMessage(seq uint64, publish time.Time, data []byte, attrs map[string]string, key string) *message {
	pb := &pubsubpb.PubsubMessage{Data: data, Attributes: attrs, OrderingKey: key}
	return stamp(pb, seq, publish, timestamppb.New(publish))
}

// stamp gives pb (which it takes over) its ID and publish time.
func stamp(pb *pubsubpb.PubsubMessage, seq uint64, publish time.Time, pt *timestamppb.Timestamp) *message {
	pb.MessageId = strconv.FormatUint(seq, 10)
	pb.PublishTime = pt
	size := int64(len(pb.Data) + len(pb.OrderingKey))
	for k, v := range pb.Attributes {
		size += int64(len(k) + len(v))
	}
	return &message{pb: pb, seq: seq, publish: publish, size: size}
}

type topic struct {
	pb    *pubsubpb.Topic
	subs  map[string]*subscription
	snaps map[string]*snapshot
	// log keeps published messages for the topic's
	// message_retention_duration, when it has one, for Seek to a time.
	log []*message
}

// retainLocked appends msgs to the topic's log and drops what is older
// than its retention.
func (t *topic) retainLocked(msgs []*message, now time.Time) {
	d := t.pb.GetMessageRetentionDuration()
	if d == nil {
		t.log = nil
		return
	}
	t.log = append(t.log, msgs...)
	keep := d.AsDuration()
	i := 0
	for i < len(t.log) && now.Sub(t.log[i].publish) > keep {
		t.log[i] = nil
		i++
	}
	t.log = t.log[i:]
}

type snapshot struct {
	pb    *pubsubpb.Snapshot
	topic string
	made  time.Time
	// msgs are the messages unacked in the subscription when the snapshot
	// was made, then every message published to the topic since, by seq.
	msgs []*message
}

type msgState uint8

const (
	stReady       msgState = iota // in the ready heap, waiting for a consumer
	stDelayed                     // in the timed heap, waiting for retry backoff
	stOutstanding                 // delivered; in the timed heap until its ack deadline
	stAcked                       // acked and retained (retain_acked_messages)
	stQueued                      // behind another message of its ordering key
	stGone                        // removed
)

// subMsg is a message's state in one subscription.
type subMsg struct {
	m        *message
	st       msgState
	attempts int32 // deliveries so far
	ackID    string
	due      time.Time // ack deadline (outstanding) or end of backoff (delayed)
	tidx     int       // index in the timed heap, -1 when not in it
	ridx     int       // index in the ready heap, -1 when not in it
	cons     *consumer // the stream holding it while outstanding
}

// readyHeap orders ready messages by publish sequence, so redelivered
// messages go out before newer ones.
type readyHeap []*subMsg

func (h readyHeap) Len() int           { return len(h) }
func (h readyHeap) Less(i, j int) bool { return h[i].m.seq < h[j].m.seq }
func (h readyHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].ridx = i
	h[j].ridx = j
}
func (h *readyHeap) Push(x any) { sm := x.(*subMsg); sm.ridx = len(*h); *h = append(*h, sm) }
func (h *readyHeap) Pop() any {
	old := *h
	n := len(old) - 1
	sm := old[n]
	old[n] = nil
	*h = old[:n]
	sm.ridx = -1
	return sm
}

// timedHeap orders outstanding and delayed messages by due time.
type timedHeap []*subMsg

func (h timedHeap) Len() int           { return len(h) }
func (h timedHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h timedHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].tidx = i
	h[j].tidx = j
}
func (h *timedHeap) Push(x any) { sm := x.(*subMsg); sm.tidx = len(*h); *h = append(*h, sm) }
func (h *timedHeap) Pop() any {
	old := *h
	n := len(old) - 1
	sm := old[n]
	old[n] = nil
	*h = old[:n]
	sm.tidx = -1
	return sm
}

// consumer is a StreamingPull stream, a waiting Pull, or a push worker.
type consumer struct {
	sub      *subscription
	maxMsgs  int64 // 0: no limit
	maxBytes int64 // 0: no limit
	outMsgs  int64
	outBytes int64
	deadline time.Duration
	oneShot  bool // a Pull: removed once it has messages

	pending   []*pubsubpb.ReceivedMessage
	pendingSM []*subMsg
	confirms  []*pubsubpb.StreamingPullResponse
	notify    chan struct{}
	removed   bool
	err       error // why the subscription ended this consumer
}

func (c *consumer) hasRoom() bool {
	return (c.maxMsgs <= 0 || c.outMsgs < c.maxMsgs) && (c.maxBytes <= 0 || c.outBytes < c.maxBytes)
}

func (c *consumer) wake() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

type orderKey struct {
	head *subMsg
	rest []*subMsg
}

type subscription struct {
	e       *engine
	pb      *pubsubpb.Subscription
	topic   *topic // nil once the topic is deleted
	filter  filter
	msgs    msgIndex
	ready   readyHeap
	timed   timedHeap
	byAck   map[string]*subMsg
	keys    map[string]*orderKey
	cons    []*consumer
	rr      int
	timer   *time.Timer
	timerAt time.Time
	stopped bool
	pusher  *pusher
	// active is the last activity (expiration_policy): a pull, an ack, a
	// stream, a successful push, a seek, a settings change.
	active time.Time
	// activeLogged is the activity the data log last heard of; it is told
	// again once an hour passes.
	activeLogged time.Time
}

func newSubscription(e *engine, pb *pubsubpb.Subscription, f filter) *subscription {
	return &subscription{
		e:      e,
		pb:     pb,
		filter: f,
		byAck:  make(map[string]*subMsg),
		keys:   make(map[string]*orderKey),
		active: e.now(),
	}
}

func (s *subscription) eod() bool { return s.pb.EnableExactlyOnceDelivery }

func (s *subscription) retention() time.Duration {
	if d := s.pb.GetMessageRetentionDuration(); d != nil {
		return d.AsDuration()
	}
	return 7 * 24 * time.Hour
}

// addLocked stores a newly published message (the filter already passed).
func (s *subscription) addLocked(m *message) {
	sm := &subMsg{m: m, tidx: -1, ridx: -1}
	s.msgs.add(sm)
	s.enqueueLocked(sm)
}

// enqueueLocked makes an unacked message deliverable, honouring ordering keys.
func (s *subscription) enqueueLocked(sm *subMsg) {
	if key := sm.m.pb.OrderingKey; key != "" && s.pb.EnableMessageOrdering {
		k := s.keys[key]
		if k == nil {
			k = &orderKey{}
			s.keys[key] = k
		}
		if k.head != nil {
			sm.st = stQueued
			k.rest = append(k.rest, sm)
			return
		}
		k.head = sm
	}
	s.makeReadyLocked(sm)
}

func (s *subscription) makeReadyLocked(sm *subMsg) {
	sm.st = stReady
	heap.Push(&s.ready, sm)
}

// advanceKeyLocked lets the next message of sm's ordering key go once sm is
// done (acked, dead-lettered or dropped).
func (s *subscription) advanceKeyLocked(sm *subMsg) {
	key := sm.m.pb.OrderingKey
	if key == "" || !s.pb.EnableMessageOrdering {
		return
	}
	k := s.keys[key]
	if k == nil || k.head != sm {
		return
	}
	if len(k.rest) == 0 {
		delete(s.keys, key)
		return
	}
	k.head = k.rest[0]
	k.rest[0] = nil
	k.rest = k.rest[1:]
	s.makeReadyLocked(k.head)
}

// releaseLocked takes sm out of the heaps, its ordering key's queue and
// its consumer's accounting.
func (s *subscription) releaseLocked(sm *subMsg) {
	if sm.st == stQueued {
		if k := s.keys[sm.m.pb.OrderingKey]; k != nil {
			for i, x := range k.rest {
				if x == sm {
					k.rest = append(k.rest[:i], k.rest[i+1:]...)
					break
				}
			}
		}
	}
	if sm.tidx >= 0 {
		heap.Remove(&s.timed, sm.tidx)
	}
	if sm.ridx >= 0 {
		heap.Remove(&s.ready, sm.ridx)
	}
	if c := sm.cons; c != nil {
		c.outMsgs--
		c.outBytes -= sm.m.size
		sm.cons = nil
	}
}

// ackLocked finishes a message: retained as acked or dropped.
func (s *subscription) ackLocked(sm *subMsg) {
	s.releaseLocked(sm)
	if sm.ackID != "" {
		delete(s.byAck, sm.ackID)
		sm.ackID = ""
	}
	if s.pb.RetainAckedMessages {
		sm.st = stAcked
	} else {
		s.msgs.remove(sm)
	}
	s.advanceKeyLocked(sm)
}

// dropLocked removes a message for good (retention ended, dead-lettered).
func (s *subscription) dropLocked(sm *subMsg) {
	s.releaseLocked(sm)
	if sm.ackID != "" {
		delete(s.byAck, sm.ackID)
		sm.ackID = ""
	}
	s.msgs.remove(sm)
	s.advanceKeyLocked(sm)
}

// nackLocked returns an outstanding message for redelivery: at once, after
// the retry policy's backoff, or to the dead-letter topic once it has been
// delivered max_delivery_attempts times. push tells a failed push, which
// backs off even without a retry policy, as the real service does.
func (s *subscription) nackLocked(sm *subMsg, now time.Time, push bool) {
	s.releaseLocked(sm)
	if s.eod() && sm.ackID != "" {
		delete(s.byAck, sm.ackID)
		sm.ackID = ""
	}
	if dlp := s.pb.GetDeadLetterPolicy(); dlp != nil && dlp.DeadLetterTopic != "" && sm.attempts >= maxAttempts(dlp) {
		if dlt := s.e.topics[dlp.DeadLetterTopic]; dlt != nil && s.e.deadLetterLocked(s, sm, dlt) {
			return
		}
	}
	if b := s.backoff(sm.attempts, push); b > 0 {
		sm.st = stDelayed
		sm.due = now.Add(b)
		heap.Push(&s.timed, sm)
		s.armLocked()
		return
	}
	s.makeReadyLocked(sm)
}

func maxAttempts(dlp *pubsubpb.DeadLetterPolicy) int32 {
	if dlp.MaxDeliveryAttempts == 0 {
		return 5
	}
	return dlp.MaxDeliveryAttempts
}

// backoff is the wait before redelivering a message delivered attempts
// times: the retry policy's minimum doubled per attempt, capped at its
// maximum.
func (s *subscription) backoff(attempts int32, push bool) time.Duration {
	rp := s.pb.GetRetryPolicy()
	var lo, hi time.Duration
	switch {
	case rp != nil:
		lo, hi = 10*time.Second, 600*time.Second
		if rp.MinimumBackoff != nil {
			lo = rp.MinimumBackoff.AsDuration()
		}
		if rp.MaximumBackoff != nil {
			hi = rp.MaximumBackoff.AsDuration()
		}
	case push:
		lo, hi = 100*time.Millisecond, 60*time.Second
	default:
		return 0
	}
	b := lo
	for i := int32(1); i < attempts && b < hi; i++ {
		b *= 2
	}
	return min(max(b, lo), hi)
}

// deliverLocked hands sm to c and returns what goes on the wire.
func (s *subscription) deliverLocked(sm *subMsg, c *consumer, now time.Time) *pubsubpb.ReceivedMessage {
	if sm.ackID != "" {
		delete(s.byAck, sm.ackID)
	}
	sm.attempts++
	sm.ackID = s.e.nextAckID()
	s.byAck[sm.ackID] = sm
	sm.st = stOutstanding
	sm.due = now.Add(c.deadline)
	if !c.oneShot {
		sm.cons = c
	}
	c.outMsgs++
	c.outBytes += sm.m.size
	heap.Push(&s.timed, sm)
	rm := &pubsubpb.ReceivedMessage{AckId: sm.ackID, Message: sm.m.pb}
	if dlp := s.pb.GetDeadLetterPolicy(); dlp != nil && dlp.DeadLetterTopic != "" {
		rm.DeliveryAttempt = sm.attempts
	}
	return rm
}

// undeliverLocked takes back a message that was dispatched to c but never
// sent (its stream or Pull ended first), as if it had not been delivered.
func (s *subscription) undeliverLocked(sm *subMsg, ackID string) {
	if sm.st != stOutstanding || sm.ackID != ackID {
		return
	}
	s.releaseLocked(sm)
	delete(s.byAck, sm.ackID)
	sm.ackID = ""
	sm.attempts--
	s.makeReadyLocked(sm)
}

// dispatchLocked hands ready messages to consumers with room, in chunks,
// round-robin, then wakes the consumers it gave messages to.
func (s *subscription) dispatchLocked() {
	if s.stopped || len(s.cons) == 0 || s.ready.Len() == 0 || s.pb.Detached {
		return
	}
	now := time.Now()
	wall := s.e.now()
	retention := s.retention()
	// In a subscription with a dead-letter policy delivery counts matter
	// (delivery_attempt, dead-lettering) and survive restarts: the
	// deliveries are recorded before any consumer sees them.
	logAttempts := s.e.log != nil && s.pb.GetDeadLetterPolicy() != nil
	var seqs []uint64
	var marks map[*consumer]int
	const chunk = 100
	progress := true
	for s.ready.Len() > 0 && progress {
		progress = false
		for i := 0; i < len(s.cons) && s.ready.Len() > 0; i++ {
			c := s.cons[(s.rr+i)%len(s.cons)]
			if c.removed {
				continue
			}
			if logAttempts {
				if marks == nil {
					marks = make(map[*consumer]int)
				}
				if _, ok := marks[c]; !ok {
					marks[c] = len(c.pending)
				}
			}
			n := 0
			for n < chunk && s.ready.Len() > 0 && c.hasRoom() {
				sm := heap.Pop(&s.ready).(*subMsg)
				if wall.Sub(sm.m.publish) > retention {
					s.dropLocked(sm)
					continue
				}
				rm := s.deliverLocked(sm, c, now)
				c.pending = append(c.pending, rm)
				c.pendingSM = append(c.pendingSM, sm)
				if logAttempts {
					seqs = append(seqs, sm.m.seq)
				}
				n++
			}
			if n > 0 {
				progress = true
				c.wake()
			}
		}
		s.rr++
	}
	if len(seqs) > 0 && s.e.record(&logRecord{Op: opDeliver, Name: s.pb.Name, Seqs: seqs}) != nil {
		// The log refused: take the deliveries back; the next event tries
		// again.
		for c, from := range marks {
			for i := from; i < len(c.pending); i++ {
				s.undeliverLocked(c.pendingSM[i], c.pending[i].AckId)
			}
			clear(c.pending[from:])
			clear(c.pendingSM[from:])
			c.pending, c.pendingSM = c.pending[:from], c.pendingSM[:from]
		}
	}
	s.armLocked()
	// Pulls that got messages are done.
	kept := s.cons[:0]
	for _, c := range s.cons {
		if c.oneShot && len(c.pending) > 0 {
			c.removed = true
			continue
		}
		kept = append(kept, c)
	}
	for i := len(kept); i < len(s.cons); i++ {
		s.cons[i] = nil
	}
	s.cons = kept
}

func (s *subscription) addConsumerLocked(c *consumer) {
	s.cons = append(s.cons, c)
	s.dispatchLocked()
}

// removeConsumerLocked detaches c and takes back what it was given but
// did not send.
func (s *subscription) removeConsumerLocked(c *consumer) {
	if !c.removed {
		c.removed = true
		for i, x := range s.cons {
			if x == c {
				s.cons = append(s.cons[:i], s.cons[i+1:]...)
				break
			}
		}
	}
	for i, sm := range c.pendingSM {
		s.undeliverLocked(sm, c.pending[i].AckId)
	}
	c.pending, c.pendingSM = nil, nil
	s.dispatchLocked()
}

// armLocked makes the subscription's single timer fire at the earliest due
// time. A timer that fires early finds nothing due and re-arms.
func (s *subscription) armLocked() {
	if s.stopped || s.timed.Len() == 0 {
		return
	}
	at := s.timed[0].due
	if !s.timerAt.IsZero() && !at.Before(s.timerAt) {
		return
	}
	s.timerAt = at
	d := time.Until(at)
	if s.timer == nil {
		s.timer = time.AfterFunc(d, s.onTimer)
	} else {
		s.timer.Reset(d)
	}
}

func (s *subscription) onTimer() {
	s.e.mu.Lock()
	defer s.e.mu.Unlock()
	if s.stopped {
		return
	}
	s.timerAt = time.Time{}
	now := time.Now()
	for s.timed.Len() > 0 && !s.timed[0].due.After(now) {
		sm := s.timed[0]
		switch sm.st {
		case stOutstanding:
			s.nackLocked(sm, now, false)
		case stDelayed:
			heap.Pop(&s.timed)
			s.makeReadyLocked(sm)
		default:
			heap.Pop(&s.timed)
		}
	}
	s.armLocked()
	s.dispatchLocked()
}

// resetLocked forgets every delivery: outstanding and delayed messages
// become ready again and all ack IDs become invalid (Seek).
func (s *subscription) resetLocked() {
	s.msgs.all(func(sm *subMsg) {
		s.releaseLocked(sm)
		if sm.ackID != "" {
			delete(s.byAck, sm.ackID)
			sm.ackID = ""
		}
	})
	s.ready = s.ready[:0]
	s.timed = s.timed[:0]
	clear(s.keys)
	clear(s.byAck)
}

// stopLocked ends the subscription's consumers and timer (delete, detach,
// shutdown).
func (s *subscription) stopLocked(err error) {
	s.stopped = true
	if s.timer != nil {
		s.timer.Stop()
	}
	for _, c := range s.cons {
		c.removed = true
		c.err = err
		c.wake()
	}
	s.cons = nil
	if s.pusher != nil {
		s.pusher.stop()
		s.pusher = nil
	}
}
