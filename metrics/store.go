package metrics

import (
	"context"
	"time"

	"github.com/courierq/courier/jobs"
)

// WrapStore returns s with its job transitions counted: Enqueue (not
// duplicates), Start (and, on a job's first attempt, its enqueue-to-start
// latency), Succeed, Fail (final or retried) and Cancel, each counted only
// when the store accepted the change. Jobs created by Ensure (messages from
// non-courier publishers) are not counted as enqueued.
func (m *Metrics) WrapStore(s jobs.Store) jobs.Store { return &store{Store: s, m: m} }

type store struct {
	jobs.Store
	m *Metrics
}

var (
	_ jobs.BatchEnqueuer = (*store)(nil)
	_ jobs.UniqueScopes  = (*store)(nil)
)

// EnqueueBatch implements jobs.BatchEnqueuer when the wrapped store does.
func (s *store) EnqueueBatch(ctx context.Context, ps []jobs.EnqueueParams) ([]jobs.EnqueueResult, error) {
	res, err := jobs.EnqueueBatch(ctx, s.Store, ps)
	if err == nil {
		for _, r := range res {
			if !r.Duplicate {
				s.m.enqueued.WithLabelValues(r.Job.Type).Inc()
			}
		}
	}
	return res, err
}

// SupportsUniqueScopes implements jobs.UniqueScopes: as the wrapped store.
func (s *store) SupportsUniqueScopes() bool { return jobs.SupportsUniqueScopes(s.Store) }

func (s *store) Enqueue(ctx context.Context, p jobs.EnqueueParams) (*jobs.Job, bool, error) {
	j, dup, err := s.Store.Enqueue(ctx, p)
	if err == nil && !dup {
		s.m.enqueued.WithLabelValues(j.Type).Inc()
	}
	return j, dup, err
}

func (s *store) Start(ctx context.Context, p jobs.StartParams) (*jobs.Job, error) {
	j, err := s.Store.Start(ctx, p)
	if err == nil {
		s.m.countStart(j.Type, j.Attempt, j.CreateTime, j.RunAfter, j.StartTime)
	}
	return j, err
}

// countStart counts a job's start and, on its first attempt, observes its
// enqueue-to-start latency.
func (m *Metrics) countStart(typ string, attempt int, created, runAfter, started time.Time) {
	m.started.WithLabelValues(typ).Inc()
	if attempt == 1 && !started.IsZero() {
		from := created
		if runAfter.After(from) {
			from = runAfter
		}
		m.startLatency.WithLabelValues(typ).Observe(max(started.Sub(from).Seconds(), 0))
	}
}

// WrapStartSucceeder returns q with its quick runs counted as a Start and a
// Succeed are (see WrapStore).
func (m *Metrics) WrapStartSucceeder(q jobs.StartSucceeder) jobs.StartSucceeder {
	return startSucceeder{q, m}
}

type startSucceeder struct {
	jobs.StartSucceeder
	m *Metrics
}

func (s startSucceeder) StartSucceed(ctx context.Context, p jobs.StartSucceedParams) (*jobs.QuickEnd, error) {
	e, err := s.StartSucceeder.StartSucceed(ctx, p)
	if err == nil {
		s.m.countStart(e.Type, e.Attempt, e.CreateTime, e.RunAfter, e.StartTime)
		s.m.succeeded.WithLabelValues(e.Type).Inc()
	}
	return e, err
}

func (s *store) Succeed(ctx context.Context, p jobs.SucceedParams) (*jobs.Job, error) {
	j, err := s.Store.Succeed(ctx, p)
	if err == nil {
		s.m.succeeded.WithLabelValues(j.Type).Inc()
	}
	return j, err
}

func (s *store) Fail(ctx context.Context, p jobs.FailParams) (*jobs.Job, error) {
	j, err := s.Store.Fail(ctx, p)
	if err == nil {
		if j.State == jobs.Failed {
			s.m.failed.WithLabelValues(j.Type).Inc()
		} else {
			s.m.retried.WithLabelValues(j.Type).Inc()
		}
	}
	return j, err
}

func (s *store) Cancel(ctx context.Context, id string) (*jobs.Job, error) {
	j, err := s.Store.Cancel(ctx, id)
	if err == nil {
		s.m.cancelled.WithLabelValues(j.Type).Inc()
	}
	return j, err
}
