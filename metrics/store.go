package metrics

import (
	"context"

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
		s.m.started.WithLabelValues(j.Type).Inc()
		if j.Attempt == 1 && !j.StartTime.IsZero() {
			from := j.CreateTime
			if j.RunAfter.After(from) {
				from = j.RunAfter
			}
			s.m.startLatency.WithLabelValues(j.Type).Observe(max(j.StartTime.Sub(from).Seconds(), 0))
		}
	}
	return j, err
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
