package metrics

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/protobuf/proto"

	"github.com/courierq/courier/handlers"
	"github.com/courierq/courier/ingest"
	"github.com/courierq/courier/wire"
)

// Middleware is the handler middleware that counts in-flight handlers and
// observes how long each ran (ingest.Config.Middleware: it runs once the job
// is RUNNING).
func (m *Metrics) Middleware() handlers.Middleware {
	return func(next handlers.Handler) handlers.Handler {
		return func(ctx context.Context, req *handlers.Request) (proto.Message, error) {
			g := m.inFlight.WithLabelValues(req.Type)
			g.Inc()
			start := m.cfg.Now()
			defer func() {
				g.Dec()
				m.handlerDuration.WithLabelValues(req.Type).Observe(m.cfg.Now().Sub(start).Seconds())
			}()
			return next(ctx, req)
		}
	}
}

// WrapLimiter returns lim with the waits it hands out observed for type
// typ: each reservation's wait (courier_rate_limit_wait_seconds), and how
// many wait now (courier_rate_limit_waiting, WaitingNow).
func (m *Metrics) WrapLimiter(typ string, lim handlers.Limiter) handlers.Limiter {
	v, _ := m.waitingNow.LoadOrStore(typ, new(atomic.Int64))
	return &limiter{Limiter: lim, m: m, typ: typ, now: v.(*atomic.Int64)}
}

type limiter struct {
	handlers.Limiter
	m   *Metrics
	typ string
	now *atomic.Int64
}

func (l *limiter) Reserve(ctx context.Context, key string) (time.Duration, func(), error) {
	d, cancel, err := l.Limiter.Reserve(ctx, key)
	if errors.Is(err, handlers.ErrBusy) {
		l.m.rateLimitRefused.WithLabelValues(l.typ).Inc()
	}
	if err != nil {
		return d, cancel, err
	}
	l.m.rateLimitWait.WithLabelValues(l.typ).Observe(max(d, 0).Seconds())
	if d <= 0 {
		return d, cancel, nil
	}
	// Waiting from now until the token's time, or until it is given back.
	var done atomic.Bool
	stop := func() {
		if done.CompareAndSwap(false, true) {
			l.now.Add(-1)
			l.m.rateLimitWaiting.WithLabelValues(l.typ).Dec()
		}
	}
	l.now.Add(1)
	l.m.rateLimitWaiting.WithLabelValues(l.typ).Inc()
	t := time.AfterFunc(d, stop)
	return d, func() { t.Stop(); stop(); cancel() }, nil
}

// WrapDeadLetters returns d with each dead letter it publishes counted
// (courier_jobs_dead_lettered_total, by the message's ce-type).
func (m *Metrics) WrapDeadLetters(d ingest.DeadLetterPublisher) ingest.DeadLetterPublisher {
	return &deadLetters{DeadLetterPublisher: d, m: m}
}

type deadLetters struct {
	ingest.DeadLetterPublisher
	m *Metrics
}

func (d *deadLetters) PublishDeadLetter(ctx context.Context, topic string, msg *pubsub.Message) error {
	err := d.DeadLetterPublisher.PublishDeadLetter(ctx, topic, msg)
	if err == nil {
		d.m.deadLettered.WithLabelValues(msg.Attributes[wire.AttrType]).Inc()
	}
	return err
}
