package spanner

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"time"

	gs "cloud.google.com/go/spanner"
	"google.golang.org/grpc/codes"

	"github.com/courierq/courier/jobs"
	"github.com/courierq/courier/jobs/internal/storekit"
)

// rec is a job row: the job and the columns only the store sees.
type rec struct {
	jobs.Job
	seen   time.Time // last sign of life while QUEUED (seen_time)
	events int64     // how many events the job has (the next event's seq)
}

var jobCols = []string{"id", "type", "state", "attempt", "max_attempts", "payload", "result_type", "result",
	"error_code", "error_message", "progress_fraction", "progress_message", "labels", "idempotency_key",
	"run_after", "create_time", "start_time", "end_time", "update_time", "trace_parent", "trace_state",
	"ordering_key", "timeout_us", "lease", "lease_expiry", "seen_time", "events"}

// decode reads a row of jobCols.
func decode(row *gs.Row) (*rec, error) {
	var (
		r                                       rec
		state, labels                           string
		attempt, maxAttempts, code, timeout     int64
		key                                     gs.NullString
		runAfter, start, end, leaseExpiry, seen gs.NullTime
		create, update                          time.Time
		payload, result                         []byte
	)
	if err := row.Columns(&r.ID, &r.Type, &state, &attempt, &maxAttempts, &payload, &r.ResultType, &result,
		&code, &r.ErrorMessage, &r.ProgressFraction, &r.ProgressMessage, &labels, &key,
		&runAfter, &create, &start, &end, &update, &r.TraceParent, &r.TraceState,
		&r.OrderingKey, &timeout, &r.Lease, &leaseExpiry, &seen, &r.events); err != nil {
		return nil, fmt.Errorf("%s: decode job row: %w", pkg, err)
	}
	r.State = jobs.State(state)
	r.Attempt, r.MaxAttempts, r.ErrorCode = int(attempt), int(maxAttempts), int32(code)
	r.Payload, r.Result = storekit.Bytes(payload), storekit.Bytes(result)
	var err error
	if r.Labels, err = storekit.DecodeLabels(pkg, labels); err != nil {
		return nil, err
	}
	r.IdempotencyKey = key.StringVal
	r.RunAfter, r.StartTime, r.EndTime = tm(runAfter), tm(start), tm(end)
	r.CreateTime, r.UpdateTime = storekit.Round(create), storekit.Round(update)
	r.Timeout = time.Duration(timeout) * time.Microsecond
	r.LeaseExpiry, r.seen = tm(leaseExpiry), tm(seen)
	return &r, nil
}

func tm(t gs.NullTime) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return storekit.Round(t.Time)
}

// nt is t as a nullable column value: NULL for the zero time.
func nt(t time.Time) gs.NullTime { return gs.NullTime{Time: t, Valid: !t.IsZero()} }

// ns is s as a nullable column value: NULL for "".
func ns(s string) gs.NullString { return gs.NullString{StringVal: s, Valid: s != ""} }

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// job returns a copy of the job.
func (r *rec) job() *jobs.Job {
	j := r.Job
	return &j
}

// queued returns the columns that are set only while the job is QUEUED:
// queued_type and queued_activity (its last sign of life: seen_time, or
// run_after when later).
func (r *rec) queued() (gs.NullString, gs.NullTime) {
	if r.State != jobs.Queued {
		return gs.NullString{}, gs.NullTime{}
	}
	return ns(r.Type), nt(later(r.seen, r.RunAfter))
}

// labelPairs encodes each label as the JSON array [key, value], the form
// List's label filters match.
func labelPairs(m map[string]string) []string {
	if len(m) == 0 {
		return nil
	}
	out := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		b, _ := json.Marshal([2]string{k, m[k]}) // strings always encode
		out = append(out, string(b))
	}
	return out
}

// insert is the mutation that writes a new job row.
func (r *rec) insert() *gs.Mutation {
	qt, qa := r.queued()
	return gs.Insert("jobs", []string{"shard", "id", "type", "state", "attempt", "max_attempts", "payload",
		"result_type", "result", "error_code", "error_message", "progress_fraction", "progress_message",
		"labels", "label_pairs", "idempotency_key", "run_after", "create_time", "start_time", "end_time",
		"update_time", "trace_parent", "trace_state", "ordering_key", "timeout_us", "lease", "lease_expiry",
		"seen_time", "queued_type", "queued_activity", "events", "changed"},
		[]any{shardOf(r.ID), r.ID, r.Type, string(r.State), int64(r.Attempt), int64(r.MaxAttempts), r.Payload,
			r.ResultType, r.Result, int64(r.ErrorCode), r.ErrorMessage, r.ProgressFraction, r.ProgressMessage,
			storekit.EncodeLabels(r.Labels), labelPairs(r.Labels), ns(r.IdempotencyKey), nt(r.RunAfter),
			r.CreateTime, nt(r.StartTime), nt(r.EndTime), r.UpdateTime, r.TraceParent, r.TraceState,
			r.OrderingKey, r.Timeout.Microseconds(), r.Lease, nt(r.LeaseExpiry), nt(r.seen), qt, qa, r.events,
			gs.CommitTimestamp})
}

// update is the mutation that writes the columns a change may move; with
// changed, it also stamps the row's changed column (what the Subscribe
// poller reads) with the commit timestamp.
func (r *rec) update(changed bool) *gs.Mutation {
	qt, qa := r.queued()
	cols := []string{"shard", "id", "state", "attempt", "result_type", "result", "error_code", "error_message",
		"progress_fraction", "progress_message", "start_time", "end_time", "update_time", "lease", "lease_expiry",
		"seen_time", "queued_type", "queued_activity", "events"}
	vals := []any{shardOf(r.ID), r.ID, string(r.State), int64(r.Attempt), r.ResultType, r.Result, int64(r.ErrorCode),
		r.ErrorMessage, r.ProgressFraction, r.ProgressMessage, nt(r.StartTime), nt(r.EndTime), r.UpdateTime,
		r.Lease, nt(r.LeaseExpiry), nt(r.seen), qt, qa, r.events}
	if changed {
		cols, vals = append(cols, "changed"), append(vals, gs.CommitTimestamp)
	}
	return gs.Update("jobs", cols, vals)
}

// event is the mutation that records the job's current state and attempt
// as its next event; message is the error of a retry or a final failure.
func (r *rec) event() *gs.Mutation {
	msg := ""
	if r.State == jobs.Queued || r.State == jobs.Failed {
		msg = r.ErrorMessage
	}
	m := gs.Insert("job_events", []string{"shard", "id", "seq", "time", "state", "attempt", "message"},
		[]any{shardOf(r.ID), r.ID, r.events, r.UpdateTime, string(r.State), int64(r.Attempt), msg})
	r.events++
	return m
}

// readJob reads job id in tx (or any read-only transaction); nil when there
// is none.
func readJob(ctx context.Context, tx interface {
	ReadRow(context.Context, string, gs.Key, []string) (*gs.Row, error)
}, id string) (*rec, error) {
	row, err := tx.ReadRow(ctx, "jobs", key(id), jobCols)
	if gs.ErrCode(err) == codes.NotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return decode(row)
}

// outboxCols are the columns of a new outbox entry.
var outboxCols = []string{"shard", "id", "due", "created", "seq", "sub", "ordering_key", "claim_owner", "claim_until", "attempts", "last_error"}

// newOutbox is the mutation that writes a fresh outbox entry of r, due at
// due; sub orders the entries one transaction writes.
func newOutbox(r *rec, due, now time.Time, sub int64) *gs.Mutation {
	return gs.InsertOrUpdate("outbox", outboxCols, []any{shardOf(r.ID), r.ID, due, now, gs.CommitTimestamp, sub,
		ns(r.OrderingKey), "", gs.NullTime{}, int64(0), ""})
}

// keyDue returns due, or for a job with an ordering key no earlier than the
// due time of the key's last entry (so that the entries of a key are due in
// enqueue order, and ClaimOutbox meets the earlier ones first). The read
// locks the key's entries: transactions that add entries to one key are
// serialized, so their commit timestamps (seq) follow their order.
func keyDue(ctx context.Context, tx *gs.ReadWriteTransaction, orderingKey string, due time.Time) (time.Time, error) {
	if orderingKey == "" {
		return due, nil
	}
	err := tx.Query(ctx, gs.Statement{
		SQL:    nullFilteredHint + `SELECT due FROM outbox@{FORCE_INDEX=outbox_key} WHERE ordering_key = @k ORDER BY seq DESC, sub DESC LIMIT 1`,
		Params: map[string]any{"k": orderingKey},
	}).Do(func(row *gs.Row) error {
		var last time.Time
		if err := row.Columns(&last); err != nil {
			return err
		}
		due = later(due, storekit.Round(last))
		return nil
	})
	return due, err
}

// applyTally moves the counters of job_counts and job_throughput by t, in
// tx, on one shard row of each counter picked at random.
func applyTally(ctx context.Context, tx *gs.ReadWriteTransaction, t *storekit.Tally) error {
	if t.Empty() {
		return nil
	}
	shard := rand.Int64N(counterShards)
	keys, deltas := t.Counts()
	if len(keys) > 0 {
		ks := make([]gs.KeySet, len(keys))
		for i, k := range keys {
			ks[i] = gs.Key{k.Type, string(k.State), shard}
		}
		cur := map[storekit.CountKey]int64{}
		err := tx.Read(ctx, "job_counts", gs.KeySets(ks...), []string{"type", "state", "n"}).Do(func(row *gs.Row) error {
			var (
				typ, state string
				n          int64
			)
			if err := row.Columns(&typ, &state, &n); err != nil {
				return err
			}
			cur[storekit.CountKey{Type: typ, State: jobs.State(state)}] = n
			return nil
		})
		if err != nil {
			return fmt.Errorf("read job_counts: %w", err)
		}
		muts := make([]*gs.Mutation, len(keys))
		for i, k := range keys {
			muts[i] = gs.InsertOrUpdate("job_counts", []string{"type", "state", "shard", "n"},
				[]any{k.Type, string(k.State), shard, cur[k] + int64(deltas[i])})
		}
		if err := tx.BufferWrite(muts); err != nil {
			return err
		}
	}
	ends, ns := t.Ends()
	if len(ends) > 0 {
		ks := make([]gs.KeySet, len(ends))
		for i, k := range ends {
			ks[i] = gs.Key{shard, k.Minute, k.Type}
		}
		cur := map[storekit.EndKey]storekit.Ends{}
		err := tx.Read(ctx, "job_throughput", gs.KeySets(ks...), []string{"minute", "type", "succeeded", "failed"}).Do(func(row *gs.Row) error {
			var (
				m       time.Time
				typ     string
				ok, bad int64
			)
			if err := row.Columns(&m, &typ, &ok, &bad); err != nil {
				return err
			}
			cur[storekit.EndKey{Minute: m.UTC(), Type: typ}] = storekit.Ends{Succeeded: int(ok), Failed: int(bad)}
			return nil
		})
		if err != nil {
			return fmt.Errorf("read job_throughput: %w", err)
		}
		muts := make([]*gs.Mutation, len(ends))
		for i, k := range ends {
			c := cur[k]
			muts[i] = gs.InsertOrUpdate("job_throughput", []string{"shard", "minute", "type", "succeeded", "failed"},
				[]any{shard, k.Minute, k.Type, int64(c.Succeeded + ns[i].Succeeded), int64(c.Failed + ns[i].Failed)})
		}
		if err := tx.BufferWrite(muts); err != nil {
			return err
		}
	}
	return nil
}

// nullFilteredHint lets the emulator use a NULL_FILTERED index for a query
// whose conditions exclude NULL (it cannot tell); Spanner ignores it.
const nullFilteredHint = `@{spanner_emulator.disable_query_null_filtered_index_check=true} `
