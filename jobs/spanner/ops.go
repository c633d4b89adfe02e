package spanner

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	gs "cloud.google.com/go/spanner"
	"google.golang.org/grpc/codes"

	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/internal/storekit"
)

func (s *Store) now() time.Time { return storekit.Round(s.cfg.Now()) }

// insert records job j (with an outbox entry when outbox) in one read-write
// transaction. byKeyFirst says whether an idempotency match is looked for
// before an ID match (Enqueue) or after (Ensure). It returns the stored job
// and found: the job is one that was there already (ID or key match).
func (s *Store) insert(ctx context.Context, method string, j jobs.Job, outbox, byKeyFirst bool) (out *jobs.Job, found, byKey bool, err error) {
	if err := s.checkOpen(method); err != nil {
		return nil, false, false, err
	}
	for try := 0; ; try++ {
		var ts time.Time
		ts, err = rw(ctx, s.client, func(ctx context.Context, tx *gs.ReadWriteTransaction) error {
			out, found, byKey = nil, false, false
			lookupKey := func() error {
				if j.IdempotencyKey == "" {
					return nil
				}
				row, err := tx.ReadRowUsingIndex(ctx, "jobs", "jobs_idempotency", gs.Key{j.Type, j.IdempotencyKey}, []string{"id"})
				if gs.ErrCode(err) == codes.NotFound {
					return nil
				}
				if err != nil {
					return err
				}
				var id string
				if err := row.Columns(&id); err != nil {
					return err
				}
				r, err := readJob(ctx, tx, id)
				if r != nil {
					out, found, byKey = r.job(), true, true
				}
				return err
			}
			lookupID := func() error {
				r, err := readJob(ctx, tx, j.ID)
				if r != nil {
					out, found = r.job(), true
				}
				return err
			}
			steps := []func() error{lookupID, lookupKey}
			if byKeyFirst {
				steps = []func() error{lookupKey, lookupID}
			}
			for _, step := range steps {
				if err := step(); err != nil || found {
					return err
				}
			}
			now := s.now()
			r := &rec{Job: j, seen: now}
			r.State, r.CreateTime, r.UpdateTime = jobs.Queued, now, now
			ev := r.event()
			muts := []*gs.Mutation{r.insert(), ev}
			if outbox {
				due, err := keyDue(ctx, tx, j.OrderingKey, later(now, j.RunAfter))
				if err != nil {
					return err
				}
				muts = append(muts, newOutbox(r, due, now, 0))
			}
			var t storekit.Tally
			t.Move(j.Type, "", jobs.Queued, now)
			if err := applyTally(ctx, tx, &t); err != nil {
				return err
			}
			out = r.job()
			return tx.BufferWrite(muts)
		})
		// A unique index violation: another transaction recorded the ID or
		// the key meanwhile; the next try finds it.
		if gs.ErrCode(err) == codes.AlreadyExists && try < 3 {
			continue
		}
		if err != nil {
			return nil, false, false, fmt.Errorf("%s: %s job %s: %w", pkg, method, j.ID, err)
		}
		if !found {
			s.notify(ts, j.ID)
		}
		return out, found, byKey, nil
	}
}

// Enqueue implements jobs.Store: the job, its event and its outbox entry in
// one transaction.
func (s *Store) Enqueue(ctx context.Context, p jobs.EnqueueParams) (*jobs.Job, bool, error) {
	j, err := storekit.NewJob(pkg, "Enqueue", p.Job, false)
	if err != nil {
		return nil, false, err
	}
	out, found, byKey, err := s.insert(ctx, "Enqueue", j, true, true)
	if err != nil {
		return nil, false, err
	}
	if found && !byKey {
		return nil, false, fmt.Errorf("%s: Enqueue: job ID %s is taken by another job: %w", pkg, j.ID, jobs.ErrConflict)
	}
	return out, found, nil
}

// Ensure implements jobs.Store.
func (s *Store) Ensure(ctx context.Context, p jobs.EnsureParams) (*jobs.Job, error) {
	j, err := storekit.NewJob(pkg, "Ensure", p.Job, true)
	if err != nil {
		return nil, err
	}
	// Most calls find the job already recorded: a read, not a transaction.
	if got, err := s.Get(ctx, j.ID); err == nil {
		return got, nil
	} else if !errors.Is(err, jobs.ErrNotFound) {
		return nil, err
	}
	out, _, _, err := s.insert(ctx, "Ensure", j, false, false)
	return out, err
}

// Get implements jobs.Store: a strong read of one row.
func (s *Store) Get(ctx context.Context, id string) (*jobs.Job, error) {
	if err := s.checkOpen("Get"); err != nil {
		return nil, err
	}
	if err := storekit.CheckID(pkg, "Get", id); err != nil {
		return nil, err
	}
	r, err := readJob(ctx, s.client.Single(), id)
	if err != nil {
		return nil, fmt.Errorf("%s: get job %s: %w", pkg, id, err)
	}
	if r == nil {
		return nil, fmt.Errorf("%s: job %s: %w", pkg, id, jobs.ErrNotFound)
	}
	return r.job(), nil
}

// List implements jobs.Store.
func (s *Store) List(ctx context.Context, p jobs.ListParams) ([]*jobs.Job, string, error) {
	if err := s.checkOpen("List"); err != nil {
		return nil, "", err
	}
	size, cur, hasCur, err := storekit.CheckList(pkg, p)
	if err != nil {
		return nil, "", err
	}
	var where []string
	params := map[string]any{"n": int64(size + 1)}
	if p.Type != "" {
		where, params["type"] = append(where, "type = @type"), p.Type
	}
	if p.State != "" {
		where, params["state"] = append(where, "state = @state"), string(p.State)
	}
	for i, pair := range labelPairs(p.Labels) {
		name := "l" + strconv.Itoa(i)
		where, params[name] = append(where, "@"+name+" IN UNNEST(label_pairs)"), pair
	}
	if hasCur {
		where = append(where, "(create_time < @ct OR (create_time = @ct AND id < @cid))")
		params["ct"], params["cid"] = cur.CreateTime, cur.ID
	}
	out, err := s.list(ctx, where, params, size+1)
	if err != nil {
		return nil, "", fmt.Errorf("%s: list jobs: %w", pkg, err)
	}
	out, next := storekit.CutPage(out, size)
	return out, next, nil
}

// listWorkers bounds the shard reads of one List in flight at once.
const listWorkers = 8

// list returns the newest n jobs that match where. Jobs are keyed by shard,
// so no one index holds them in create-time order: it reads the newest n
// matching keys of each shard from the jobs_created index (one short seek
// each, all at the timestamp of the first), merges them, and reads the n
// newest rows.
func (s *Store) list(ctx context.Context, where []string, params map[string]any, n int) ([]*jobs.Job, error) {
	q := "SELECT id, create_time FROM jobs@{FORCE_INDEX=jobs_created} WHERE " +
		strings.Join(append([]string{"shard = @shard"}, where...), " AND ") +
		" ORDER BY create_time DESC, id DESC LIMIT @n"
	type ref struct {
		id string
		t  time.Time
	}
	readShard := func(ro *gs.ReadOnlyTransaction, shard int64) ([]ref, error) {
		ps := maps.Clone(params)
		ps["shard"] = shard
		var refs []ref
		err := ro.Query(ctx, gs.Statement{SQL: q, Params: ps}).Do(func(row *gs.Row) error {
			var r ref
			if err := row.Columns(&r.id, &r.t); err != nil {
				return err
			}
			refs = append(refs, r)
			return nil
		})
		return refs, err
	}
	// The first shard's strong read fixes the timestamp of the others.
	first := s.client.Single()
	all, err := readShard(first, 0)
	if err != nil {
		return nil, err
	}
	ts, err := first.Timestamp()
	if err != nil {
		return nil, err
	}
	at := gs.ReadTimestamp(ts)
	var (
		mu      sync.Mutex
		errs    []error
		next    = make(chan int64)
		workers sync.WaitGroup
	)
	for range listWorkers {
		workers.Go(func() {
			for shard := range next {
				refs, err := readShard(s.client.Single().WithTimestampBound(at), shard)
				mu.Lock()
				all = append(all, refs...)
				if err != nil {
					errs = append(errs, err)
				}
				mu.Unlock()
			}
		})
	}
	for shard := int64(1); shard < keyShards; shard++ {
		next <- shard
	}
	close(next)
	workers.Wait()
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.SortFunc(all, func(a, b ref) int { return cmp.Or(b.t.Compare(a.t), cmp.Compare(b.id, a.id)) })
	all = all[:min(len(all), n)]
	if len(all) == 0 {
		return nil, nil
	}
	ids := make([]string, len(all))
	for i, r := range all {
		ids[i] = r.id
	}
	byID := make(map[string]*jobs.Job, len(ids))
	err = s.client.Single().WithTimestampBound(at).Read(ctx, "jobs", keySet(ids), jobCols).Do(func(row *gs.Row) error {
		r, err := decode(row)
		if err == nil {
			byID[r.ID] = r.job()
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]*jobs.Job, 0, len(ids))
	for _, id := range ids {
		if j := byID[id]; j != nil {
			out = append(out, j)
		}
	}
	return out, nil
}

// change runs one conditional change of job id in a read-write transaction:
// apply gets the job as stored and now, and changes it (true) or refuses
// (false: nothing is written). An applied change writes the row, an event
// when the state or attempt moved, the counter moves, and what extra
// buffers. It returns the job after the change, or (applied false) the job
// as it is (nil: there is none).
func (s *Store) change(ctx context.Context, method, id string, apply func(r *rec, now time.Time) bool,
	extra func(tx *gs.ReadWriteTransaction, r *rec) error) (*jobs.Job, bool, error) {
	if err := s.checkOpen(method); err != nil {
		return nil, false, err
	}
	var (
		out     *jobs.Job
		applied bool
	)
	ts, err := rw(ctx, s.client, func(ctx context.Context, tx *gs.ReadWriteTransaction) error {
		out, applied = nil, false
		r, err := readJob(ctx, tx, id)
		if err != nil || r == nil {
			return err
		}
		now := s.now()
		prev, prevAttempt := r.State, r.Attempt
		if !apply(r, now) {
			out = r.job()
			return nil
		}
		var muts []*gs.Mutation
		if r.State != prev || r.Attempt != prevAttempt {
			muts = append(muts, r.event())
		}
		muts = append(muts, r.update(true))
		var t storekit.Tally
		t.Move(r.Type, prev, r.State, now)
		if err := applyTally(ctx, tx, &t); err != nil {
			return err
		}
		if extra != nil {
			if err := extra(tx, r); err != nil {
				return err
			}
		}
		out, applied = r.job(), true
		return tx.BufferWrite(muts)
	})
	if err != nil {
		return nil, false, fmt.Errorf("%s: %s job %s: %w", pkg, method, id, err)
	}
	if applied {
		s.notify(ts, id)
	}
	return out, applied, nil
}

// update is change for the methods that explain a refusal with
// storekit.Refused.
func (s *Store) update(ctx context.Context, method, id, lease string, apply func(r *rec, now time.Time) bool,
	extra func(tx *gs.ReadWriteTransaction, r *rec) error) (*jobs.Job, error) {
	j, applied, err := s.change(ctx, method, id, apply, extra)
	if err != nil || applied {
		return j, err
	}
	return storekit.Refused(pkg, method, id, lease, j)
}

// dropOutbox buffers the deletion of the job's outbox entry, if any.
func dropOutbox(tx *gs.ReadWriteTransaction, r *rec) error {
	return tx.BufferWrite([]*gs.Mutation{gs.Delete("outbox", key(r.ID))})
}

// underLease reports whether r runs, under lease when lease is set.
func underLease(r *rec, lease string) bool {
	return r.State == jobs.Running && (lease == "" || r.Lease == lease)
}

// endRun clears the run's lease.
func endRun(r *rec) { r.Lease, r.LeaseExpiry = "", time.Time{} }

// Start implements jobs.Store.
func (s *Store) Start(ctx context.Context, p jobs.StartParams) (*jobs.Job, error) {
	if err := storekit.CheckStart(pkg, p); err != nil {
		return nil, err
	}
	j, applied, err := s.change(ctx, "Start", p.ID, func(r *rec, now time.Time) bool {
		takeover := r.State == jobs.Running && r.Lease != p.Lease && (r.LeaseExpiry.IsZero() || !r.LeaseExpiry.After(now))
		if r.State != jobs.Queued && !takeover {
			return false
		}
		r.State, r.Attempt = jobs.Running, max(p.Attempt, r.Attempt+1)
		r.Lease, r.LeaseExpiry = p.Lease, now.Add(p.LeaseFor)
		if r.StartTime.IsZero() {
			r.StartTime = now
		}
		r.UpdateTime = now
		return true
	}, nil)
	if err != nil || applied {
		return j, err
	}
	return storekit.StartRefused(pkg, p, j)
}

// Heartbeat implements jobs.Store, in one transaction.
func (s *Store) Heartbeat(ctx context.Context, p jobs.HeartbeatParams) ([]string, error) {
	if err := s.checkOpen("Heartbeat"); err != nil {
		return nil, err
	}
	if err := storekit.CheckHeartbeat(pkg, p); err != nil {
		return nil, err
	}
	if len(p.Leases) == 0 {
		return nil, nil
	}
	leases := make(map[string]string, len(p.Leases))
	for _, l := range p.Leases {
		leases[l.ID] = l.Lease
	}
	ids := slices.Sorted(maps.Keys(leases))
	var held []string
	_, err := rw(ctx, s.client, func(ctx context.Context, tx *gs.ReadWriteTransaction) error {
		held = held[:0]
		expiry := s.now().Add(p.LeaseFor)
		var muts []*gs.Mutation
		err := tx.Read(ctx, "jobs", keySet(ids), []string{"id", "state", "lease"}).Do(func(row *gs.Row) error {
			var id, state, lease string
			if err := row.Columns(&id, &state, &lease); err != nil {
				return err
			}
			if jobs.State(state) == jobs.Running && lease == leases[id] {
				held = append(held, id)
				muts = append(muts, gs.Update("jobs", []string{"shard", "id", "lease_expiry"}, []any{shardOf(id), id, expiry}))
			}
			return nil
		})
		if err != nil {
			return err
		}
		return tx.BufferWrite(muts)
	})
	if err != nil {
		return nil, fmt.Errorf("%s: Heartbeat: %w", pkg, err)
	}
	return storekit.Lost(p.Leases, held), nil
}

// keySet is the primary keys of the jobs ids.
func keySet(ids []string) gs.KeySet {
	ks := make([]gs.KeySet, len(ids))
	for i, id := range ids {
		ks[i] = key(id)
	}
	return gs.KeySets(ks...)
}

// Progress implements jobs.Store.
func (s *Store) Progress(ctx context.Context, p jobs.ProgressParams) error {
	if err := storekit.CheckProgress(pkg, p); err != nil {
		return err
	}
	msg := storekit.Message(p.Message)
	_, err := s.update(ctx, "Progress", p.ID, p.Lease, func(r *rec, now time.Time) bool {
		if !underLease(r, p.Lease) {
			return false
		}
		r.ProgressFraction, r.ProgressMessage, r.UpdateTime = p.Fraction, msg, now
		return true
	}, nil)
	return err
}

// Succeed implements jobs.Store.
func (s *Store) Succeed(ctx context.Context, p jobs.SucceedParams) (*jobs.Job, error) {
	if err := storekit.CheckEnd(pkg, "Succeed", p.ID, p.Lease); err != nil {
		return nil, err
	}
	resultType, result := storekit.Message(p.ResultType), storekit.Bytes(p.Result)
	return s.update(ctx, "Succeed", p.ID, p.Lease, func(r *rec, now time.Time) bool {
		if !underLease(r, p.Lease) {
			return false
		}
		r.State, r.ResultType, r.Result = jobs.Succeeded, resultType, result
		r.EndTime, r.UpdateTime = now, now
		endRun(r)
		return true
	}, nil)
}

// Fail implements jobs.Store. A final failure drops the job's outbox entry
// in the same transaction.
func (s *Store) Fail(ctx context.Context, p jobs.FailParams) (*jobs.Job, error) {
	if err := storekit.CheckEnd(pkg, "Fail", p.ID, p.Lease); err != nil {
		return nil, err
	}
	msg := storekit.Message(p.Message)
	if p.Retry {
		return s.update(ctx, "Fail", p.ID, p.Lease, func(r *rec, now time.Time) bool {
			if !underLease(r, p.Lease) {
				return false
			}
			r.State, r.ErrorCode, r.ErrorMessage = jobs.Queued, p.Code, msg
			r.UpdateTime, r.seen = now, now
			endRun(r)
			return true
		}, nil)
	}
	return s.update(ctx, "Fail", p.ID, p.Lease, func(r *rec, now time.Time) bool {
		if !(p.Lease == "" && r.State == jobs.Queued) && !underLease(r, p.Lease) {
			return false
		}
		r.State, r.ErrorCode, r.ErrorMessage = jobs.Failed, p.Code, msg
		r.EndTime, r.UpdateTime = now, now
		endRun(r)
		return true
	}, dropOutbox)
}

// Cancel implements jobs.Store.
func (s *Store) Cancel(ctx context.Context, id string) (*jobs.Job, error) {
	if err := storekit.CheckID(pkg, "Cancel", id); err != nil {
		return nil, err
	}
	return s.update(ctx, "Cancel", id, "", func(r *rec, now time.Time) bool {
		if r.State != jobs.Queued && r.State != jobs.Running {
			return false
		}
		r.State, r.EndTime, r.UpdateTime = jobs.Cancelled, now, now
		endRun(r)
		return true
	}, dropOutbox)
}

// Cancelled implements jobs.Store: one read of the rows by key.
func (s *Store) Cancelled(ctx context.Context, ids []string) ([]string, error) {
	if err := s.checkOpen("Cancelled"); err != nil {
		return nil, err
	}
	if err := storekit.CheckIDs(pkg, "Cancelled", ids, jobs.MaxBatchIDs); err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, nil
	}
	var out []string
	err := s.client.Single().Read(ctx, "jobs", keySet(slices.Compact(slices.Sorted(slices.Values(ids)))), []string{"id", "state"}).Do(func(row *gs.Row) error {
		var id, state string
		if err := row.Columns(&id, &state); err != nil {
			return err
		}
		if jobs.State(state) == jobs.Cancelled {
			out = append(out, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: Cancelled: %w", pkg, err)
	}
	return out, nil
}

// Events implements jobs.Store: the job's interleaved event rows.
func (s *Store) Events(ctx context.Context, id string) ([]jobs.Event, error) {
	if err := s.checkOpen("Events"); err != nil {
		return nil, err
	}
	if err := storekit.CheckID(pkg, "Events", id); err != nil {
		return nil, err
	}
	var out []jobs.Event
	err := s.client.Single().Read(ctx, "job_events", key(id).AsPrefix(), []string{"time", "state", "attempt", "message"}).Do(func(row *gs.Row) error {
		var (
			e       jobs.Event
			t       time.Time
			state   string
			attempt int64
		)
		if err := row.Columns(&t, &state, &attempt, &e.Message); err != nil {
			return err
		}
		e.Time, e.State, e.Attempt = storekit.Round(t), jobs.State(state), int(attempt)
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: read events of job %s: %w", pkg, id, err)
	}
	return out, nil
}

// ClaimOutbox implements jobs.Store in one read-write transaction: the due,
// unheld entries (an entry with an ordering key only when no earlier entry
// of its key is held or not yet due), oldest due first, are claimed and
// returned with their jobs.
func (s *Store) ClaimOutbox(ctx context.Context, p jobs.ClaimOutboxParams) ([]jobs.OutboxEntry, error) {
	if err := s.checkOpen("ClaimOutbox"); err != nil {
		return nil, err
	}
	if err := storekit.CheckClaim(pkg, p); err != nil {
		return nil, err
	}
	var out []jobs.OutboxEntry
	_, err := rw(ctx, s.client, func(ctx context.Context, tx *gs.ReadWriteTransaction) error {
		out = out[:0]
		now := s.now()
		until := now.Add(p.LeaseFor)
		var (
			ids  []string
			byID = map[string]*jobs.OutboxEntry{}
		)
		err := tx.Query(ctx, gs.Statement{SQL: `SELECT o.id, o.due, o.created, o.ordering_key, o.attempts, o.last_error FROM outbox o
			WHERE o.due <= @now AND (o.claim_until IS NULL OR o.claim_until <= @now)
				AND (o.ordering_key IS NULL OR NOT EXISTS (SELECT 1 FROM outbox p
					WHERE p.ordering_key = o.ordering_key AND (p.seq < o.seq OR (p.seq = o.seq AND p.sub < o.sub))
						AND (p.due > @now OR p.claim_until > @now)))
			ORDER BY o.due, o.seq, o.sub LIMIT @n`,
			Params: map[string]any{"now": now, "n": int64(p.Limit)},
		}).Do(func(row *gs.Row) error {
			var (
				e            jobs.OutboxEntry
				due, created time.Time
				okey         gs.NullString
				attempts     int64
			)
			if err := row.Columns(&e.JobID, &due, &created, &okey, &attempts, &e.LastError); err != nil {
				return err
			}
			e.Due, e.Created, e.OrderingKey, e.Attempts = storekit.Round(due), storekit.Round(created), okey.StringVal, int(attempts)
			out = append(out, e)
			ids = append(ids, e.JobID)
			return nil
		})
		if err != nil || len(out) == 0 {
			return err
		}
		for i := range out {
			byID[out[i].JobID] = &out[i]
		}
		err = tx.Read(ctx, "jobs", keySet(ids), []string{"id", "type", "payload", "labels", "run_after", "trace_parent", "trace_state"}).Do(func(row *gs.Row) error {
			var (
				id, typ, labels, tp, tstate string
				payload                     []byte
				runAfter                    gs.NullTime
			)
			if err := row.Columns(&id, &typ, &payload, &labels, &runAfter, &tp, &tstate); err != nil {
				return err
			}
			e := byID[id]
			if e == nil {
				return nil
			}
			var err error
			if e.Labels, err = storekit.DecodeLabels(pkg, labels); err != nil {
				return err
			}
			e.Type, e.Payload, e.RunAfter, e.TraceParent, e.TraceState = typ, storekit.Bytes(payload), tm(runAfter), tp, tstate
			return nil
		})
		if err != nil {
			return err
		}
		muts := make([]*gs.Mutation, len(ids))
		for i, id := range ids {
			muts[i] = gs.Update("outbox", []string{"shard", "id", "claim_owner", "claim_until"}, []any{shardOf(id), id, p.Owner, until})
		}
		return tx.BufferWrite(muts)
	})
	if err != nil {
		return nil, fmt.Errorf("%s: ClaimOutbox: %w", pkg, err)
	}
	return out, nil
}

// MarkSent implements jobs.Store: blind deletes, in one commit.
func (s *Store) MarkSent(ctx context.Context, jobIDs []string) error {
	if err := s.checkOpen("MarkSent"); err != nil {
		return err
	}
	if err := storekit.CheckIDs(pkg, "MarkSent", jobIDs, jobs.MaxBatchIDs); err != nil {
		return err
	}
	if len(jobIDs) == 0 {
		return nil
	}
	ids := slices.Compact(slices.Sorted(slices.Values(jobIDs)))
	if _, err := apply(ctx, s.client, gs.Delete("outbox", keySet(ids))); err != nil {
		return fmt.Errorf("%s: MarkSent: %w", pkg, err)
	}
	return nil
}

// RetryOutbox implements jobs.Store.
func (s *Store) RetryOutbox(ctx context.Context, p jobs.RetryOutboxParams) error {
	if err := s.checkOpen("RetryOutbox"); err != nil {
		return err
	}
	if err := storekit.CheckRetryOutbox(pkg, p); err != nil {
		return err
	}
	due, msg := storekit.Round(p.Due), storekit.Message(p.Error)
	var found bool
	_, err := rw(ctx, s.client, func(ctx context.Context, tx *gs.ReadWriteTransaction) error {
		row, err := tx.ReadRow(ctx, "outbox", key(p.ID), []string{"seq", "sub", "ordering_key", "attempts"})
		if found = err == nil; !found {
			if gs.ErrCode(err) == codes.NotFound {
				return nil
			}
			return err
		}
		var (
			seq           time.Time
			sub, attempts int64
			okey          gs.NullString
		)
		if err := row.Columns(&seq, &sub, &okey, &attempts); err != nil {
			return err
		}
		muts := []*gs.Mutation{gs.Update("outbox", []string{"shard", "id", "claim_owner", "claim_until", "due", "attempts", "last_error"},
			[]any{shardOf(p.ID), p.ID, "", gs.NullTime{}, due, attempts + 1, msg})}
		if okey.Valid {
			// The later entries of the key become due no earlier.
			err := tx.Query(ctx, gs.Statement{
				SQL: nullFilteredHint + `SELECT id, due FROM outbox@{FORCE_INDEX=outbox_key}
					WHERE ordering_key = @k AND (seq > @seq OR (seq = @seq AND sub > @sub))`,
				Params: map[string]any{"k": okey.StringVal, "seq": seq, "sub": sub},
			}).Do(func(row *gs.Row) error {
				var (
					id string
					d  time.Time
				)
				if err := row.Columns(&id, &d); err != nil {
					return err
				}
				if d.Before(due) {
					muts = append(muts, gs.Update("outbox", []string{"shard", "id", "due"}, []any{shardOf(id), id, due}))
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return tx.BufferWrite(muts)
	})
	if err != nil {
		return fmt.Errorf("%s: RetryOutbox: job %s: %w", pkg, p.ID, err)
	}
	if !found {
		return fmt.Errorf("%s: RetryOutbox: job %s has no outbox entry: %w", pkg, p.ID, jobs.ErrNotFound)
	}
	return nil
}

// OutboxStats implements jobs.Store.
func (s *Store) OutboxStats(ctx context.Context) (int, time.Time, error) {
	if err := s.checkOpen("OutboxStats"); err != nil {
		return 0, time.Time{}, err
	}
	var (
		n      int64
		oldest gs.NullTime
	)
	err := s.client.Single().Query(ctx, gs.Statement{SQL: `SELECT COUNT(*), MIN(created) FROM outbox`}).Do(func(row *gs.Row) error {
		return row.Columns(&n, &oldest)
	})
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("%s: outbox stats: %w", pkg, err)
	}
	return int(n), tm(oldest), nil
}

// MarkSeen implements jobs.Store, in one transaction.
func (s *Store) MarkSeen(ctx context.Context, ids []string) error {
	if err := s.checkOpen("MarkSeen"); err != nil {
		return err
	}
	if err := storekit.CheckIDs(pkg, "MarkSeen", ids, jobs.MaxBatchIDs); err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	sorted := slices.Compact(slices.Sorted(slices.Values(ids)))
	_, err := rw(ctx, s.client, func(ctx context.Context, tx *gs.ReadWriteTransaction) error {
		now := s.now()
		var muts []*gs.Mutation
		err := tx.Read(ctx, "jobs", keySet(sorted), []string{"id", "state", "run_after"}).Do(func(row *gs.Row) error {
			var (
				id, state string
				runAfter  gs.NullTime
			)
			if err := row.Columns(&id, &state, &runAfter); err != nil {
				return err
			}
			if jobs.State(state) == jobs.Queued {
				muts = append(muts, gs.Update("jobs", []string{"shard", "id", "seen_time", "queued_activity"},
					[]any{shardOf(id), id, now, later(now, tm(runAfter))}))
			}
			return nil
		})
		if err != nil {
			return err
		}
		return tx.BufferWrite(muts)
	})
	if err != nil {
		return fmt.Errorf("%s: MarkSeen: %w", pkg, err)
	}
	return nil
}

// Rescue implements jobs.Store, in one read-write transaction.
func (s *Store) Rescue(ctx context.Context, p jobs.RescueParams) (jobs.RescueResult, error) {
	if err := s.checkOpen("Rescue"); err != nil {
		return jobs.RescueResult{}, err
	}
	if err := storekit.CheckRescue(pkg, p); err != nil {
		return jobs.RescueResult{}, err
	}
	var res jobs.RescueResult
	ts, err := rw(ctx, s.client, func(ctx context.Context, tx *gs.ReadWriteTransaction) error {
		res = jobs.RescueResult{}
		now := s.now()
		var (
			tally storekit.Tally
			muts  []*gs.Mutation
			sub   int64
			// The due time of the last entry this transaction gives each
			// ordering key (its reads do not see its own writes).
			keyLast = map[string]time.Time{}
		)
		due := func(r *rec) (time.Time, error) {
			d := now
			if r.OrderingKey != "" {
				if last, ok := keyLast[r.OrderingKey]; ok {
					d = later(d, last)
				} else {
					var err error
					if d, err = keyDue(ctx, tx, r.OrderingKey, d); err != nil {
						return d, err
					}
				}
				keyLast[r.OrderingKey] = d
			}
			return d, nil
		}

		// Running jobs whose lease lapsed: back to Queued, republished.
		var lapsed []string
		err := tx.Query(ctx, gs.Statement{
			SQL:    `SELECT id FROM jobs WHERE lease_expiry < @t AND state = 'RUNNING' ORDER BY lease_expiry, id LIMIT @n`,
			Params: map[string]any{"t": storekit.Round(p.LapsedBefore), "n": int64(p.Limit)},
		}).Do(func(row *gs.Row) error {
			var id string
			lapsed = append(lapsed, id)
			return row.Columns(&lapsed[len(lapsed)-1])
		})
		if err != nil {
			return fmt.Errorf("find lapsed leases: %w", err)
		}
		for _, id := range lapsed {
			r, err := readJob(ctx, tx, id)
			if err != nil {
				return err
			}
			if r == nil || r.State != jobs.Running {
				continue
			}
			r.State, r.ErrorCode, r.ErrorMessage = jobs.Queued, storekit.LapsedCode, storekit.LapsedMessage(r.Attempt, r.LeaseExpiry)
			r.UpdateTime, r.seen = now, now
			endRun(r)
			d, err := due(r)
			if err != nil {
				return err
			}
			// An entry already there keeps its place; it is due now and free.
			_, err = tx.ReadRow(ctx, "outbox", key(id), []string{"id"})
			switch {
			case err == nil:
				muts = append(muts, gs.Update("outbox", []string{"shard", "id", "due", "claim_owner", "claim_until"},
					[]any{shardOf(id), id, d, "", gs.NullTime{}}))
			case gs.ErrCode(err) == codes.NotFound:
				muts = append(muts, newOutbox(r, d, now, sub))
				sub++
			default:
				return err
			}
			muts = append(muts, r.event(), r.update(true))
			tally.Move(r.Type, jobs.Running, jobs.Queued, now)
			res.Released = append(res.Released, id)
		}

		// Queued jobs nothing is about to deliver: republished.
		err = tx.Query(ctx, gs.Statement{
			SQL: `SELECT j.id, j.ordering_key, j.run_after FROM jobs j
				WHERE j.queued_activity < @t AND j.queued_type IS NOT NULL
					AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.shard = j.shard AND o.id = j.id)
				ORDER BY j.queued_activity, j.id LIMIT @n`,
			Params: map[string]any{"t": storekit.Round(p.QueuedBefore), "n": int64(p.Limit)},
		}).Do(func(row *gs.Row) error {
			r := &rec{}
			var runAfter gs.NullTime
			if err := row.Columns(&r.ID, &r.OrderingKey, &runAfter); err != nil {
				return err
			}
			d, err := due(r)
			if err != nil {
				return err
			}
			muts = append(muts, newOutbox(r, d, now, sub),
				gs.Update("jobs", []string{"shard", "id", "seen_time", "queued_activity"},
					[]any{shardOf(r.ID), r.ID, now, later(now, tm(runAfter))}))
			sub++
			res.Requeued = append(res.Requeued, r.ID)
			return nil
		})
		if err != nil {
			return fmt.Errorf("find lost jobs: %w", err)
		}
		if err := applyTally(ctx, tx, &tally); err != nil {
			return err
		}
		return tx.BufferWrite(muts)
	})
	if err != nil {
		return jobs.RescueResult{}, fmt.Errorf("%s: Rescue: %w", pkg, err)
	}
	s.notify(ts, res.Released...)
	return res, nil
}

// Counts implements jobs.Store: the counter shards summed, and the oldest
// Queued job of each type from the jobs_queued index (two strong reads).
func (s *Store) Counts(ctx context.Context) ([]jobs.TypeCounts, error) {
	if err := s.checkOpen("Counts"); err != nil {
		return nil, err
	}
	oldest := map[string]time.Time{}
	err := s.client.Single().Query(ctx, gs.Statement{SQL: nullFilteredHint + `SELECT queued_type, MIN(create_time) FROM jobs@{FORCE_INDEX=jobs_queued}
		WHERE queued_type IS NOT NULL GROUP BY queued_type`}).Do(func(row *gs.Row) error {
		var (
			typ string
			t   time.Time
		)
		if err := row.Columns(&typ, &t); err != nil {
			return err
		}
		oldest[typ] = t
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: Counts: %w", pkg, err)
	}
	var out []jobs.TypeCounts
	err = s.client.Single().Query(ctx, gs.Statement{SQL: `SELECT type, state, SUM(n) FROM job_counts
		GROUP BY type, state HAVING SUM(n) <> 0 ORDER BY type, state`}).Do(func(row *gs.Row) error {
		var (
			typ, state string
			n          int64
		)
		if err := row.Columns(&typ, &state, &n); err != nil {
			return err
		}
		var old time.Time
		if jobs.State(state) == jobs.Queued {
			old = oldest[typ]
		}
		out = storekit.AddCount(out, typ, jobs.State(state), int(n), old)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: Counts: %w", pkg, err)
	}
	return out, nil
}

// Throughput implements jobs.Store: the minute rows since the first bucket,
// summed into buckets of p.Step.
func (s *Store) Throughput(ctx context.Context, p jobs.ThroughputParams) ([]jobs.ThroughputPoint, error) {
	if err := s.checkOpen("Throughput"); err != nil {
		return nil, err
	}
	if err := storekit.CheckThroughput(pkg, p); err != nil {
		return nil, err
	}
	type bk struct {
		t   time.Time
		typ string
	}
	sums := map[bk]*jobs.ThroughputPoint{}
	err := s.client.Single().Query(ctx, gs.Statement{
		SQL:    `SELECT minute, type, SUM(succeeded), SUM(failed) FROM job_throughput WHERE minute >= @since GROUP BY minute, type`,
		Params: map[string]any{"since": storekit.Bucket(p.Since, p.Step)},
	}).Do(func(row *gs.Row) error {
		var (
			m       time.Time
			typ     string
			ok, bad int64
		)
		if err := row.Columns(&m, &typ, &ok, &bad); err != nil {
			return err
		}
		k := bk{storekit.Bucket(m, p.Step), typ}
		pt := sums[k]
		if pt == nil {
			pt = &jobs.ThroughputPoint{Time: k.t, Type: typ}
			sums[k] = pt
		}
		pt.Succeeded += int(ok)
		pt.Failed += int(bad)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: Throughput: %w", pkg, err)
	}
	var out []jobs.ThroughputPoint
	for _, pt := range sums {
		if pt.Succeeded != 0 || pt.Failed != 0 {
			out = append(out, *pt)
		}
	}
	slices.SortFunc(out, func(a, b jobs.ThroughputPoint) int {
		return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Type, b.Type))
	})
	return out, nil
}

// deleteChunk is how many jobs one DeleteFinished transaction deletes
// (with their interleaved events and outbox entries), well below Spanner's
// mutation limit.
const deleteChunk = 500

// DeleteFinished implements jobs.Store, in chunks of deleteChunk jobs.
func (s *Store) DeleteFinished(ctx context.Context, cutoff time.Time) (int, error) {
	if err := s.checkOpen("DeleteFinished"); err != nil {
		return 0, err
	}
	cutoff = storekit.Round(cutoff)
	total := 0
	for {
		var n int
		_, err := rw(ctx, s.client, func(ctx context.Context, tx *gs.ReadWriteTransaction) error {
			n = 0
			var (
				tally storekit.Tally
				ids   []string
			)
			now := s.now()
			err := tx.Query(ctx, gs.Statement{
				SQL: `SELECT id, type, state FROM jobs WHERE end_time < @cutoff AND state IN ('SUCCEEDED', 'FAILED', 'CANCELLED')
					ORDER BY end_time LIMIT @n`,
				Params: map[string]any{"cutoff": cutoff, "n": int64(deleteChunk)},
			}).Do(func(row *gs.Row) error {
				var id, typ, state string
				if err := row.Columns(&id, &typ, &state); err != nil {
					return err
				}
				ids = append(ids, id)
				tally.Move(typ, jobs.State(state), "", now)
				return nil
			})
			if err != nil || len(ids) == 0 {
				return err
			}
			if err := applyTally(ctx, tx, &tally); err != nil {
				return err
			}
			n = len(ids)
			return tx.BufferWrite([]*gs.Mutation{gs.Delete("jobs", keySet(ids))})
		})
		if err != nil {
			return total, fmt.Errorf("%s: DeleteFinished: %w", pkg, err)
		}
		total += n
		if n < deleteChunk {
			break
		}
	}
	_, err := rw(ctx, s.client, func(ctx context.Context, tx *gs.ReadWriteTransaction) error {
		_, err := tx.Update(ctx, gs.Statement{SQL: `DELETE FROM job_throughput WHERE minute < @m`,
			Params: map[string]any{"m": storekit.Minute(cutoff)}})
		return err
	})
	if err != nil {
		return total, fmt.Errorf("%s: DeleteFinished: throughput: %w", pkg, err)
	}
	return total, nil
}
