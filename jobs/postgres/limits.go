package postgres

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/internal/storekit"
)

var (
	_ jobs.Limits   = (*Store)(nil)
	_ jobs.Deferrer = (*Store)(nil)
)

// maxLimitName bounds a bucket's or a slot's name.
const maxLimitName = 2048

// TakeTokens implements jobs.Limits: one call of courier_limit_take
// (migration 0004), one round trip.
func (s *Store) TakeTokens(ctx context.Context, p jobs.TakeTokensParams) (jobs.TokenGrant, error) {
	if err := s.checkOpen("TakeTokens"); err != nil {
		return jobs.TokenGrant{}, err
	}
	switch {
	case p.Bucket == "" || len(p.Bucket) > maxLimitName:
		return jobs.TokenGrant{}, fmt.Errorf("%s: TakeTokens: Bucket is %d bytes; name the bucket in 1..%d bytes: %w", pkg, len(p.Bucket), maxLimitName, jobs.ErrInvalidArgument)
	case p.Interval < time.Microsecond:
		return jobs.TokenGrant{}, fmt.Errorf("%s: TakeTokens: Interval is %v; use at least 1µs (a rate of at most a million a second): %w", pkg, p.Interval, jobs.ErrInvalidArgument)
	case p.Burst < 1 || p.Want < 1 || p.MaxWait < 0:
		return jobs.TokenGrant{}, fmt.Errorf("%s: TakeTokens: Burst (%d) and Want (%d) must be at least 1 and MaxWait (%v) not negative: %w", pkg, p.Burst, p.Want, p.MaxWait, jobs.ErrInvalidArgument)
	}
	var g jobs.TokenGrant
	var first, retry int64
	err := s.pool.QueryRow(ctx, `SELECT granted, first_us, retry_us FROM courier_limit_take($1, $2, $3, $4, $5, $6)`,
		p.Bucket, p.Interval.Microseconds(), p.Burst, p.Want, p.MaxWait.Microseconds(), p.Queue).Scan(&g.Granted, &first, &retry)
	if err != nil {
		return jobs.TokenGrant{}, fmt.Errorf("%s: TakeTokens of %s: %w", pkg, p.Bucket, err)
	}
	g.First, g.RetryAfter = time.Duration(first)*time.Microsecond, time.Duration(retry)*time.Microsecond
	return g, nil
}

// TakeSlots implements jobs.Limits: one call of courier_slots_take.
func (s *Store) TakeSlots(ctx context.Context, p jobs.TakeSlotsParams) (int, error) {
	if err := s.checkOpen("TakeSlots"); err != nil {
		return 0, err
	}
	switch {
	case p.Name == "" || len(p.Name) > maxLimitName:
		return 0, fmt.Errorf("%s: TakeSlots: Name is %d bytes; use 1..%d: %w", pkg, len(p.Name), maxLimitName, jobs.ErrInvalidArgument)
	case len(p.Holders) == 0 || len(p.Holders) > 1000:
		return 0, fmt.Errorf("%s: TakeSlots: %d holders; pass 1..1000: %w", pkg, len(p.Holders), jobs.ErrInvalidArgument)
	case p.Max < 1 || p.LeaseFor < time.Millisecond:
		return 0, fmt.Errorf("%s: TakeSlots: Max (%d) must be at least 1 and LeaseFor (%v) at least 1ms: %w", pkg, p.Max, p.LeaseFor, jobs.ErrInvalidArgument)
	}
	for _, h := range p.Holders {
		if h == "" || len(h) > jobs.MaxLeaseBytes {
			return 0, fmt.Errorf("%s: TakeSlots: a holder is %d bytes; use 1..%d: %w", pkg, len(h), jobs.MaxLeaseBytes, jobs.ErrInvalidArgument)
		}
	}
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT courier_slots_take($1, $2, $3, $4)`, p.Name, p.Max, p.Holders, p.LeaseFor.Microseconds()).Scan(&n); err != nil {
		return 0, fmt.Errorf("%s: TakeSlots of %s: %w", pkg, p.Name, err)
	}
	return n, nil
}

// RenewSlots implements jobs.Limits, in one statement.
func (s *Store) RenewSlots(ctx context.Context, holders []string, leaseFor time.Duration) error {
	if err := s.checkOpen("RenewSlots"); err != nil {
		return err
	}
	if err := storekit.CheckIDs(pkg, "RenewSlots", holders, jobs.MaxBatchIDs); err != nil {
		return err
	}
	if leaseFor < time.Millisecond {
		return fmt.Errorf("%s: RenewSlots: leaseFor is %v; use at least 1ms: %w", pkg, leaseFor, jobs.ErrInvalidArgument)
	}
	if len(holders) == 0 {
		return nil
	}
	sorted := slices.Compact(slices.Sorted(slices.Values(holders)))
	if _, err := s.pool.Exec(ctx, `SELECT courier_slots_update($1, $2)`, sorted, leaseFor.Microseconds()); err != nil {
		return fmt.Errorf("%s: RenewSlots: %w", pkg, err)
	}
	return nil
}

// ReleaseSlots implements jobs.Limits, in one statement.
func (s *Store) ReleaseSlots(ctx context.Context, holders []string) error {
	if err := s.checkOpen("ReleaseSlots"); err != nil {
		return err
	}
	if err := storekit.CheckIDs(pkg, "ReleaseSlots", holders, jobs.MaxBatchIDs); err != nil {
		return err
	}
	if len(holders) == 0 {
		return nil
	}
	if _, err := s.pool.Exec(ctx, `SELECT courier_slots_update($1, -1)`, holders); err != nil {
		return fmt.Errorf("%s: ReleaseSlots: %w", pkg, err)
	}
	return nil
}

// Defer implements jobs.Deferrer, in one statement.
func (s *Store) Defer(ctx context.Context, id string, due time.Time) error {
	if err := s.checkOpen("Defer"); err != nil {
		return err
	}
	if id == "" || len(id) > jobs.MaxIDBytes {
		return fmt.Errorf("%s: Defer: the job ID is %d bytes; use 1..%d: %w", pkg, len(id), jobs.MaxIDBytes, jobs.ErrInvalidArgument)
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO outbox (job_id, due, created)
		SELECT id, $2, $3 FROM jobs WHERE id = $1 AND state = 'QUEUED' AND ordering_key = ''
		ON CONFLICT (job_id) DO NOTHING`, id, storekit.Round(due), s.now())
	if err != nil {
		return fmt.Errorf("%s: Defer %s: %w", pkg, id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%s: Defer %s: the job is not QUEUED, has an ordering key, or already has an outbox entry: %w", pkg, id, jobs.ErrConflict)
	}
	return nil
}
