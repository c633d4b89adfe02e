package emulator

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
)

// pushConcurrency bounds the HTTP requests in flight per push subscription.
const pushConcurrency = 16

// pusher delivers a push subscription's messages by HTTP POST (with an OIDC
// token when the push config asks for one, see oidc.go): a 102 or 2xx
// answer acks, anything else (or no answer within the ack deadline)
// nacks, and the message comes back after a backoff: the retry policy's,
// or else 100ms doubling to 60s, as the real service does.
type pusher struct {
	s      *subscription
	c      *consumer
	ctx    context.Context
	cancel context.CancelFunc
	client *http.Client
	once   sync.Once
}

func (e *engine) startPusher(s *subscription) *pusher {
	ctx, cancel := context.WithCancel(context.Background())
	p := &pusher{
		s:      s,
		ctx:    ctx,
		cancel: cancel,
		client: &http.Client{},
		c: &consumer{
			sub:      s,
			maxMsgs:  pushConcurrency,
			deadline: time.Duration(s.pb.AckDeadlineSeconds) * time.Second,
			notify:   make(chan struct{}, 1),
		},
	}
	e.wg.Add(1)
	go p.run()
	s.cons = append(s.cons, p.c)
	return p
}

// configure picks up a changed ack deadline.
func (p *pusher) configure() {
	p.c.deadline = time.Duration(p.s.pb.AckDeadlineSeconds) * time.Second
}

// stop ends the pusher; call with the engine locked.
func (p *pusher) stop() {
	p.once.Do(func() {
		p.cancel()
		p.s.removeConsumerLocked(p.c)
	})
}

func (p *pusher) run() {
	defer p.s.e.wg.Done()
	var inflight sync.WaitGroup
	defer inflight.Wait()
	e := p.s.e
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-p.c.notify:
		}
		e.mu.Lock()
		msgs := p.c.pending
		p.c.pending, p.c.pendingSM = nil, nil
		cfg := clone(p.s.pb.GetPushConfig())
		name := p.s.pb.Name
		deadline := p.c.deadline
		e.mu.Unlock()
		for _, rm := range msgs {
			inflight.Add(1)
			go func() {
				defer inflight.Done()
				ok := p.post(cfg, name, rm, deadline)
				e.mu.Lock()
				defer e.mu.Unlock()
				sm := p.s.byAck[rm.AckId]
				if sm == nil || sm.st != stOutstanding || p.s.stopped {
					return
				}
				if ok {
					p.s.touchLocked()
					p.s.ackIDsLocked([]string{rm.AckId}, time.Now(), true)
				} else {
					p.s.nackLocked(sm, time.Now(), true)
					p.s.dispatchLocked()
				}
			}()
		}
	}
}

// post sends one message and reports whether the endpoint acked it.
func (p *pusher) post(cfg *pubsubpb.PushConfig, sub string, rm *pubsubpb.ReceivedMessage, deadline time.Duration) bool {
	ctx, cancel := context.WithTimeout(p.ctx, deadline)
	defer cancel()
	m := rm.Message
	var body []byte
	hdr := http.Header{}
	if nw := cfg.GetNoWrapper(); nw != nil {
		body = m.Data
		if nw.WriteMetadata {
			for k, v := range m.Attributes {
				hdr.Set(k, v)
			}
			hdr.Set("x-goog-pubsub-subscription-name", sub)
			hdr.Set("x-goog-pubsub-message-id", m.MessageId)
			hdr.Set("x-goog-pubsub-publish-time", m.PublishTime.AsTime().UTC().Format(time.RFC3339Nano))
			if m.OrderingKey != "" {
				hdr.Set("x-goog-pubsub-ordering-key", m.OrderingKey)
			}
			if rm.DeliveryAttempt > 0 {
				hdr.Set("x-goog-pubsub-delivery-attempt", strconv.Itoa(int(rm.DeliveryAttempt)))
			}
		}
	} else {
		body, _ = json.Marshal(pushBody(sub, rm))
		hdr.Set("Content-Type", "application/json")
	}
	if oidc := cfg.GetOidcToken(); oidc != nil {
		aud := oidc.Audience
		if aud == "" {
			aud = cfg.PushEndpoint
		}
		tok, err := p.s.e.keys.token(oidc.ServiceAccountEmail, aud, p.s.e.now())
		if err != nil {
			return false
		}
		hdr.Set("Authorization", "Bearer "+tok)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.PushEndpoint, bytes.NewReader(body))
	if err != nil {
		return false
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	res, err := p.client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<20))
	res.Body.Close()
	return res.StatusCode == 102 || res.StatusCode >= 200 && res.StatusCode < 300
}

// PushMessage is the "message" of the JSON body of a wrapped push request.
type PushMessage struct {
	Attributes  map[string]string `json:"attributes,omitempty"`
	Data        string            `json:"data,omitempty"` // base64
	MessageID   string            `json:"messageId"`
	MessageID2  string            `json:"message_id"`
	PublishTime string            `json:"publishTime"`
	PublishTim2 string            `json:"publish_time"`
	OrderingKey string            `json:"orderingKey,omitempty"`
}

// PushRequest is the JSON body the emulator POSTs to a push endpoint, the
// same as the real service's.
type PushRequest struct {
	Message         PushMessage `json:"message"`
	Subscription    string      `json:"subscription"`
	DeliveryAttempt int32       `json:"deliveryAttempt,omitempty"`
}

func pushBody(sub string, rm *pubsubpb.ReceivedMessage) PushRequest {
	m := rm.Message
	pt := m.PublishTime.AsTime().UTC().Format(time.RFC3339Nano)
	return PushRequest{
		Message: PushMessage{
			Attributes:  m.Attributes,
			Data:        base64.StdEncoding.EncodeToString(m.Data),
			MessageID:   m.MessageId,
			MessageID2:  m.MessageId,
			PublishTime: pt,
			PublishTim2: pt,
			OrderingKey: m.OrderingKey,
		},
		Subscription:    sub,
		DeliveryAttempt: rm.DeliveryAttempt,
	}
}
