// Package metrics exposes what courier does as Prometheus metrics: job
// outcomes by type, handler duration, enqueue-to-start latency, rate-limit
// waits, in-flight handlers, the outbox backlog and Pub/Sub publish errors.
// It observes the system through decorators and middleware only: of the job
// store (WrapStore), of the rate limiters (WrapLimiter), of the dead-letter
// publisher (WrapDeadLetters), of the outbox relay's publisher, and a
// handler middleware (Middleware); the fleet's jobs by type and state come
// from the store's counters at scrape time. It registers on the prometheus.Registry
// it is given (never the global one) and serves it with Handler.
//
// It is for courierd. It is not a metrics API for handlers (they can register
// their own collectors on the same registry), and it keeps no history: the
// dashboard reads the job store, Prometheus keeps the time series.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/outbox"
	"github.com/courierq/courier/publisher"
	"github.com/courierq/courier/wire"
)

// Config configures Metrics. Registry is required.
type Config struct {
	// Registry receives the collectors. Required: cmd builds one per process
	// (tests one per stack), so nothing is global.
	Registry *prometheus.Registry
	// Namespace prefixes every metric name. "" means "courier".
	Namespace string
	// Store, when set, is asked for OutboxStats and Counts at each scrape
	// (courier_outbox_backlog, courier_outbox_oldest_age_seconds; the
	// fleet-wide courier_jobs and courier_oldest_queued_age_seconds).
	Store jobs.Store
	// ScrapeTimeout bounds the store calls of one scrape. 0 means 5s.
	ScrapeTimeout time.Duration
	// ProcessCollectors adds the Go runtime and process collectors.
	ProcessCollectors bool
	// Now is the clock for ages. nil means time.Now.
	Now func() time.Time
}

// Metrics holds courier's collectors. Its methods are safe for concurrent
// use.
type Metrics struct {
	cfg Config

	enqueued, started, succeeded, failed, retried, cancelled, deadLettered *prometheus.CounterVec
	publishErrors, rateLimitRefused                                        *prometheus.CounterVec
	handlerDuration, startLatency, rateLimitWait                           *prometheus.HistogramVec
	inFlight, rateLimitWaiting                                             *prometheus.GaugeVec
	waitingNow                                                             sync.Map // type -> *atomic.Int64
}

// New validates cfg and registers the collectors on cfg.Registry.
func New(cfg Config) (*Metrics, error) {
	if cfg.Registry == nil {
		return nil, errors.New("metrics: Config.Registry is nil; pass prometheus.NewRegistry()")
	}
	if cfg.ScrapeTimeout < 0 {
		return nil, fmt.Errorf("metrics: Config.ScrapeTimeout is %v; use a positive duration or 0 for 5s", cfg.ScrapeTimeout)
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "courier"
	}
	if cfg.ScrapeTimeout == 0 {
		cfg.ScrapeTimeout = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ns := cfg.Namespace
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help}, labels)
	}
	// Buckets from 1ms to ~9 minutes: handlers range from echo to long sleeps.
	buckets := prometheus.ExponentialBuckets(0.001, 2.5, 15)
	hist := func(name, help string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: name, Help: help, Buckets: buckets}, []string{"type"})
	}
	m := &Metrics{
		cfg:              cfg,
		enqueued:         counter("jobs_enqueued_total", "Jobs recorded by EnqueueJob (duplicates not counted), by type.", "type"),
		started:          counter("jobs_started_total", "Attempts started (a job admitted past its rate limit and concurrency bound), by type.", "type"),
		succeeded:        counter("jobs_succeeded_total", "Jobs that succeeded, by type.", "type"),
		failed:           counter("jobs_failed_total", "Jobs that failed for good (last attempt or permanent error), by type.", "type"),
		retried:          counter("jobs_retried_total", "Failed attempts that will be retried, by type.", "type"),
		cancelled:        counter("jobs_cancelled_total", "Jobs cancelled, by type.", "type"),
		deadLettered:     counter("jobs_dead_lettered_total", "Messages published to a dead-letter topic, by type (\"\" when the message had no ce-type).", "type"),
		publishErrors:    counter("pubsub_publish_errors_total", "Pub/Sub publishes that failed (outbox relay and fire-and-forget publisher), by type.", "type"),
		rateLimitRefused: counter("rate_limit_refused_total", "Attempts a rate limiter refused outright (its next token too far off): pulled messages' jobs were put off, pushes answered 429, by type.", "type"),
		handlerDuration:  hist("handler_duration_seconds", "Time a handler ran, from admission to return, by type."),
		startLatency:     hist("enqueue_to_start_seconds", "Time from a job's creation (or run_after) to its first start, by type."),
		rateLimitWait:    hist("rate_limit_wait_seconds", "Time an admitted message waited for its rate-limit token, by type (rate-limited handlers only)."),
		inFlight:         prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "handlers_in_flight", Help: "Handlers running now, by type."}, []string{"type"}),
		rateLimitWaiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "rate_limit_waiting", Help: "Messages waiting for a rate-limit token now, by type."}, []string{"type"}),
	}
	cs := []prometheus.Collector{m.enqueued, m.started, m.succeeded, m.failed, m.retried, m.cancelled, m.deadLettered,
		m.publishErrors, m.rateLimitRefused, m.handlerDuration, m.startLatency, m.rateLimitWait, m.inFlight, m.rateLimitWaiting}
	if cfg.Store != nil {
		cs = append(cs, &outboxCollector{m: m,
			backlog: prometheus.NewDesc(ns+"_outbox_backlog", "Outbox entries not yet published (including run_after entries not yet due).", nil, nil),
			age:     prometheus.NewDesc(ns+"_outbox_oldest_age_seconds", "Age of the oldest outbox entry; 0 when the outbox is empty.", nil, nil),
			up:      prometheus.NewDesc(ns+"_outbox_stats_up", "1 when the store answered OutboxStats at this scrape, else 0.", nil, nil),
		}, &countsCollector{m: m,
			jobs:   prometheus.NewDesc(ns+"_jobs", "Jobs in the store by type and state, across every replica (Store.Counts).", []string{"type", "state"}, nil),
			oldest: prometheus.NewDesc(ns+"_oldest_queued_age_seconds", "Age of the oldest QUEUED job of each type with one.", []string{"type"}, nil),
			up:     prometheus.NewDesc(ns+"_job_counts_up", "1 when the store answered Counts at this scrape, else 0.", nil, nil),
		})
	}
	if cfg.ProcessCollectors {
		cs = append(cs, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	for _, c := range cs {
		if err := cfg.Registry.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: registering collectors: %w (is a Metrics with namespace %q already on this registry?)", err, ns)
		}
	}
	return m, nil
}

// Handler serves the registry in the Prometheus text format (/metrics).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.cfg.Registry, promhttp.HandlerOpts{Registry: m.cfg.Registry})
}

// WaitingNow is how many messages of typ wait for a rate-limit token now
// (the dashboard's overview).
func (m *Metrics) WaitingNow(typ string) int {
	if v, ok := m.waitingNow.Load(typ); ok {
		return int(v.(*atomic.Int64).Load())
	}
	return 0
}

// PublishError records a failed fire-and-forget publish
// (publisher.Config.OnError).
func (m *Metrics) PublishError(e *publisher.PublishError) {
	m.publishErrors.WithLabelValues(e.Type).Inc()
}

// WrapPublisher returns p with each failed publish of the outbox relay
// counted (courier_pubsub_publish_errors_total, by type).
func (m *Metrics) WrapPublisher(p outbox.Publisher) outbox.Publisher {
	return &countedPublisher{Publisher: p, m: m}
}

type countedPublisher struct {
	outbox.Publisher
	m *Metrics
}

func (p *countedPublisher) PublishBatch(ctx context.Context, msgs []*wire.Message) []error {
	errs := p.Publisher.PublishBatch(ctx, msgs)
	for i, err := range errs {
		if err != nil {
			p.m.publishErrors.WithLabelValues(msgs[i].Type).Inc()
		}
	}
	return errs
}

// outboxCollector reads OutboxStats at scrape time.
type outboxCollector struct {
	m                *Metrics
	backlog, age, up *prometheus.Desc
}

func (c *outboxCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.backlog
	ch <- c.age
	ch <- c.up
}

func (c *outboxCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.m.cfg.ScrapeTimeout)
	defer cancel()
	n, oldest, err := c.m.cfg.Store.OutboxStats(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	age := 0.0
	if n > 0 && !oldest.IsZero() {
		age = max(c.m.cfg.Now().Sub(oldest).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(c.backlog, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, age)
}

// countsCollector reads Store.Counts at scrape time.
type countsCollector struct {
	m                *Metrics
	jobs, oldest, up *prometheus.Desc
}

func (c *countsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.jobs
	ch <- c.oldest
	ch <- c.up
}

func (c *countsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.m.cfg.ScrapeTimeout)
	defer cancel()
	counts, err := c.m.cfg.Store.Counts(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	for _, tc := range counts {
		for _, st := range jobs.States() {
			ch <- prometheus.MustNewConstMetric(c.jobs, prometheus.GaugeValue, float64(tc.States[st]), tc.Type, string(st))
		}
		if !tc.OldestQueued.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, max(c.m.cfg.Now().Sub(tc.OldestQueued).Seconds(), 0), tc.Type)
		}
	}
}
