// Package storekit holds the pieces the job stores share: argument checks,
// time rounding, label encoding, page tokens and the in-process hub behind
// Store.Subscribe. It is internal to the stores under jobs/ and not for any
// other code; it does no I/O.
package storekit

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/courierq/courier/jobs"
	"github.com/google/uuid"
)

// Round returns t in UTC truncated to the microsecond, the precision both
// stores keep; the zero time stays zero.
func Round(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

// Micros returns t as microseconds since the Unix epoch.
func Micros(t time.Time) int64 { return t.UnixMicro() }

// FromMicros is the inverse of Micros, in UTC.
func FromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// Invalid returns an error wrapping jobs.ErrInvalidArgument.
func Invalid(pkg, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %w", pkg, fmt.Sprintf(format, args...), jobs.ErrInvalidArgument)
}

// NewJob checks the job given to Enqueue (needID false: an empty ID gets a
// fresh UUIDv7) or Ensure (needID true) and returns the copy to store, with
// the fields the store owns reset.
func NewJob(pkg, method string, j jobs.Job, needID bool) (jobs.Job, error) {
	if j.ID == "" {
		if needID {
			return j, Invalid(pkg, "%s: Job.ID is empty: pass the ID of the message (or job) to record", method)
		}
		id, err := uuid.NewV7()
		if err != nil {
			return j, fmt.Errorf("%s: %s: generate job ID: %w", pkg, method, err)
		}
		j.ID = id.String()
	}
	if err := CheckID(pkg, method, j.ID); err != nil {
		return j, err
	}
	id := Clip(j.ID)
	if j.Type == "" {
		return j, Invalid(pkg, "%s: job %s: Job.Type is empty: set it to the full protobuf name of the payload, e.g. courier.demo.v1.Echo", method, id)
	}
	if j.MaxAttempts < 0 {
		return j, Invalid(pkg, "%s: job %s: Job.MaxAttempts is %d: use 0 for the handler's default or a positive count", method, id, j.MaxAttempts)
	}
	if j.Timeout < 0 {
		return j, Invalid(pkg, "%s: job %s: Job.Timeout is %v: use 0 for the handler's timeout or a positive duration", method, id, j.Timeout)
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{
		{"Type", j.Type, jobs.MaxTypeBytes},
		{"IdempotencyKey", j.IdempotencyKey, jobs.MaxIdempotencyKeyBytes},
		{"TraceParent", j.TraceParent, jobs.MaxTraceParentBytes},
		{"TraceState", j.TraceState, jobs.MaxTraceStateBytes},
		{"OrderingKey", j.OrderingKey, jobs.MaxOrderingKeyBytes},
	} {
		if err := CheckText(pkg, method, "Job."+f.name, f.v, f.max); err != nil {
			return j, err
		}
	}
	if err := CheckLabels(pkg, method, "Job.Labels", j.Labels); err != nil {
		return j, err
	}
	out := jobs.Job{
		ID:             j.ID,
		Type:           j.Type,
		State:          jobs.Queued,
		MaxAttempts:    j.MaxAttempts,
		Payload:        nilIfEmpty(j.Payload),
		Labels:         copyLabels(j.Labels),
		IdempotencyKey: j.IdempotencyKey,
		RunAfter:       Round(j.RunAfter),
		TraceParent:    j.TraceParent,
		TraceState:     j.TraceState,
		OrderingKey:    j.OrderingKey,
		Timeout:        j.Timeout.Truncate(time.Microsecond),
	}
	return out, nil
}

// CheckUnique checks the uniqueness scope of an Enqueue.
func CheckUnique(pkg, method string, p jobs.EnqueueParams) error {
	if p.UniqueFor < 0 {
		return Invalid(pkg, "%s: UniqueFor is %v: use 0 (the key is held while the job is kept) or a positive duration", method, p.UniqueFor)
	}
	if (p.UniqueFor > 0 || p.UniqueWhileActive) && p.Job.IdempotencyKey == "" {
		return Invalid(pkg, "%s: UniqueFor or UniqueWhileActive is set but Job.IdempotencyKey is empty: they scope a key, so set one", method)
	}
	return nil
}

// NewBatch checks the jobs of an EnqueueBatch and returns the copies to
// store; an error names the index of the first invalid job.
func NewBatch(pkg string, ps []jobs.EnqueueParams) ([]jobs.EnqueueParams, error) {
	if len(ps) > jobs.MaxEnqueueBatch {
		return nil, Invalid(pkg, "EnqueueBatch: %d jobs in one call: pass at most %d", len(ps), jobs.MaxEnqueueBatch)
	}
	out := make([]jobs.EnqueueParams, len(ps))
	ids := make(map[string]int, len(ps))
	for i, p := range ps {
		j, err := NewJob(pkg, fmt.Sprintf("EnqueueBatch: jobs[%d]", i), p.Job, false)
		if err != nil {
			return nil, err
		}
		if err := CheckUnique(pkg, fmt.Sprintf("EnqueueBatch: jobs[%d]", i), p); err != nil {
			return nil, err
		}
		if k, ok := ids[j.ID]; ok {
			return nil, Invalid(pkg, "EnqueueBatch: jobs[%d] has the ID %s of jobs[%d]: give each job its own ID, or leave IDs empty", i, Clip(j.ID), k)
		}
		ids[j.ID] = i
		p.Job = j
		out[i] = p
	}
	return out, nil
}

// KeyHeldUntil is when a job created at now stops holding its idempotency
// key by time (zero: never, by time).
func KeyHeldUntil(p jobs.EnqueueParams, now time.Time) time.Time {
	if p.UniqueFor <= 0 {
		return time.Time{}
	}
	return Round(now.Add(p.UniqueFor))
}

// clipBytes is how much of a too long or malformed value error messages
// quote.
const clipBytes = 64

// Clip returns s, or its first 64 bytes (cut at a rune boundary) followed by
// "…" and its length when it is longer: for error messages, which must not
// carry a megabyte the caller sent.
func Clip(s string) string {
	if len(s) <= clipBytes {
		return s
	}
	cut := clipBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s… (%d bytes)", s[:cut], len(s))
}

// CheckText rejects a value longer than max bytes, or not storable as text;
// what names it in the message (e.g. "Job.IdempotencyKey").
func CheckText(pkg, method, what, v string, max int) error {
	if len(v) > max {
		return Invalid(pkg, "%s: %s is %d bytes long (%q): use at most %d bytes", method, what, len(v), Clip(v), max)
	}
	if !Text(v) {
		return Invalid(pkg, "%s: %s %q is not valid UTF-8 without NUL bytes: pass text", method, what, Clip(v))
	}
	return nil
}

// CheckLabels checks labels (of a job, or the label filters of a List)
// against jobs.MaxLabels, MaxLabelKeyBytes and MaxLabelValueBytes.
func CheckLabels(pkg, method, what string, labels map[string]string) error {
	if len(labels) > jobs.MaxLabels {
		return Invalid(pkg, "%s: %s has %d labels: use at most %d", method, what, len(labels), jobs.MaxLabels)
	}
	for k, v := range labels {
		if k == "" {
			return Invalid(pkg, "%s: %s has a label with an empty key: give every label a key", method, what)
		}
		if err := CheckText(pkg, method, what+" key", k, jobs.MaxLabelKeyBytes); err != nil {
			return err
		}
		if err := CheckText(pkg, method, fmt.Sprintf("%s[%q]", what, Clip(k)), v, jobs.MaxLabelValueBytes); err != nil {
			return err
		}
	}
	return nil
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

// Bytes returns b, or nil when it is empty: stores keep empty payloads and
// results as NULL and give them back as nil.
func Bytes(b []byte) []byte { return nilIfEmpty(b) }

func copyLabels(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Text reports whether s can be stored as text by every store: valid UTF-8
// with no NUL byte (PostgreSQL refuses both).
func Text(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// Message returns s made storable as text: invalid UTF-8 and NUL bytes
// become U+FFFD. Stores apply it to error and progress messages and result
// types, which come from handlers and are informative only.
func Message(s string) string {
	if Text(s) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// CheckID rejects an empty, too long or non-text job ID.
func CheckID(pkg, method, id string) error {
	if id == "" {
		return Invalid(pkg, "%s: job ID is empty: pass the ID of an existing job", method)
	}
	if len(id) > jobs.MaxIDBytes {
		return Invalid(pkg, "%s: job ID is %d bytes long (%q): job IDs are at most %d bytes", method, len(id), Clip(id), jobs.MaxIDBytes)
	}
	if !Text(id) {
		return Invalid(pkg, "%s: job ID %q is not valid UTF-8 without NUL bytes: pass the ID of an existing job", method, Clip(id))
	}
	return nil
}

// CheckIDs checks a list of job IDs: at most max, each as CheckID wants.
func CheckIDs(pkg, method string, ids []string, max int) error {
	if len(ids) > max {
		return Invalid(pkg, "%s: %d job IDs in one call: pass at most %d", method, len(ids), max)
	}
	for _, id := range ids {
		if err := CheckID(pkg, method, id); err != nil {
			return err
		}
	}
	return nil
}

// checkLease checks a lease token; required says whether "" is refused.
func checkLease(pkg, method, id, lease string, required bool) error {
	if lease == "" {
		if required {
			return Invalid(pkg, "%s: job %s: Lease is empty: pass a token unique to this delivery (e.g. a UUID)", method, Clip(id))
		}
		return nil
	}
	return CheckText(pkg, method, "Lease", lease, jobs.MaxLeaseBytes)
}

// CheckStartSucceed checks the arguments of StartSucceeder.StartSucceed.
func CheckStartSucceed(pkg string, p jobs.StartSucceedParams) error {
	if err := CheckID(pkg, "StartSucceed", p.ID); err != nil {
		return err
	}
	if p.Attempt < 1 {
		return Invalid(pkg, "StartSucceed: job %s: Attempt is %d: pass the delivery attempt, counted from 1", p.ID, p.Attempt)
	}
	if p.Started.IsZero() {
		return Invalid(pkg, "StartSucceed: job %s: Started is zero: pass when the handler began", p.ID)
	}
	return nil
}

// CheckStart checks Start's arguments.
func CheckStart(pkg string, p jobs.StartParams) error {
	if err := CheckID(pkg, "Start", p.ID); err != nil {
		return err
	}
	if p.Attempt < 1 {
		return Invalid(pkg, "Start: job %s: Attempt is %d: pass the delivery attempt, counted from 1", p.ID, p.Attempt)
	}
	if err := checkLease(pkg, "Start", p.ID, p.Lease, true); err != nil {
		return err
	}
	if p.LeaseFor <= 0 {
		return Invalid(pkg, "Start: job %s: LeaseFor is %v: pass how long the lease lasts without a heartbeat (e.g. 30s)", p.ID, p.LeaseFor)
	}
	return nil
}

// CheckProgress checks Progress's arguments.
func CheckProgress(pkg string, p jobs.ProgressParams) error {
	if err := CheckID(pkg, "Progress", p.ID); err != nil {
		return err
	}
	if math.IsNaN(p.Fraction) || p.Fraction < 0 || p.Fraction > 1 {
		return Invalid(pkg, "Progress: job %s: Fraction is %v: pass a value from 0 to 1", p.ID, p.Fraction)
	}
	return checkLease(pkg, "Progress", p.ID, p.Lease, false)
}

// CheckEnd checks the ID and optional lease of Succeed or Fail.
func CheckEnd(pkg, method, id, lease string) error {
	if err := CheckID(pkg, method, id); err != nil {
		return err
	}
	return checkLease(pkg, method, id, lease, false)
}

// CheckHeartbeat checks Heartbeat's arguments.
func CheckHeartbeat(pkg string, p jobs.HeartbeatParams) error {
	if len(p.Leases) > jobs.MaxHeartbeatLeases {
		return Invalid(pkg, "Heartbeat: %d leases in one call: pass at most %d", len(p.Leases), jobs.MaxHeartbeatLeases)
	}
	if p.LeaseFor <= 0 {
		return Invalid(pkg, "Heartbeat: LeaseFor is %v: pass how long each lease lasts from now (e.g. 30s)", p.LeaseFor)
	}
	for _, l := range p.Leases {
		if err := CheckID(pkg, "Heartbeat", l.ID); err != nil {
			return err
		}
		if err := checkLease(pkg, "Heartbeat", l.ID, l.Lease, true); err != nil {
			return err
		}
	}
	return nil
}

// CheckClaim checks ClaimOutbox's arguments.
func CheckClaim(pkg string, p jobs.ClaimOutboxParams) error {
	if p.Limit <= 0 || p.Limit > jobs.MaxClaim {
		return Invalid(pkg, "ClaimOutbox: Limit is %d: pass a number of entries from 1 to %d", p.Limit, jobs.MaxClaim)
	}
	if p.Owner == "" {
		return Invalid(pkg, "ClaimOutbox: Owner is empty: pass the claiming relay's ID")
	}
	if err := CheckText(pkg, "ClaimOutbox", "Owner", p.Owner, jobs.MaxLeaseBytes); err != nil {
		return err
	}
	if p.LeaseFor <= 0 {
		return Invalid(pkg, "ClaimOutbox: LeaseFor is %v: pass how long the claim lasts (longer than a publish may take)", p.LeaseFor)
	}
	return nil
}

// CheckRetryOutbox checks RetryOutbox's arguments.
func CheckRetryOutbox(pkg string, p jobs.RetryOutboxParams) error {
	if err := CheckID(pkg, "RetryOutbox", p.ID); err != nil {
		return err
	}
	if p.Due.IsZero() {
		return Invalid(pkg, "RetryOutbox: job %s: Due is zero: pass when to try publishing again", p.ID)
	}
	return nil
}

// CheckRescue checks Rescue's arguments.
func CheckRescue(pkg string, p jobs.RescueParams) error {
	if p.Limit <= 0 || p.Limit > jobs.MaxClaim {
		return Invalid(pkg, "Rescue: Limit is %d: pass a number of jobs from 1 to %d", p.Limit, jobs.MaxClaim)
	}
	if p.QueuedBefore.IsZero() || p.LapsedBefore.IsZero() {
		return Invalid(pkg, "Rescue: QueuedBefore (%v) and LapsedBefore (%v) must both be set: pass now minus the ages after which a job counts as lost", p.QueuedBefore, p.LapsedBefore)
	}
	return nil
}

// CheckThroughput checks Throughput's arguments.
func CheckThroughput(pkg string, p jobs.ThroughputParams) error {
	if p.Step < time.Minute || p.Step%time.Minute != 0 {
		return Invalid(pkg, "Throughput: Step is %v: pass a whole number of minutes, at least 1m", p.Step)
	}
	if p.Since.IsZero() {
		return Invalid(pkg, "Throughput: Since is zero: pass the start of the period to report")
	}
	return nil
}

// LapsedMessage is the error message Rescue records on a job whose lease
// lapsed: every store writes the same text.
func LapsedMessage(attempt int, expiry time.Time) string {
	return fmt.Sprintf("jobs: lease of attempt %d lapsed at %s without a heartbeat: the worker stopped; republished",
		attempt, Round(expiry).Format(time.RFC3339Nano))
}

// LapsedCode is the error code Rescue records on a released job
// (google.rpc.Code UNAVAILABLE).
const LapsedCode = 14

// EncodeLabels returns the labels as a JSON object ("" when there are none).
func EncodeLabels(m map[string]string) string {
	if len(m) == 0 {
		return ""
	}
	b, _ := json.Marshal(m) // a map[string]string always encodes
	return string(b)
}

// DecodeLabels parses what EncodeLabels returned; "" and "{}" give nil.
func DecodeLabels(pkg, s string) (map[string]string, error) {
	if s == "" || s == "{}" || s == "null" {
		return nil, nil
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("%s: stored labels are not a JSON object of strings: %w", pkg, err)
	}
	if len(m) == 0 {
		return nil, nil
	}
	return m, nil
}

// PageSize applies List's default (50) and cap (1000).
func PageSize(pkg string, n int) (int, error) {
	switch {
	case n < 0:
		return 0, Invalid(pkg, "List: PageSize is %d: pass 0 for the default (50) or up to 1000", n)
	case n == 0:
		return 50, nil
	case n > 1000:
		return 1000, nil
	}
	return n, nil
}

// Cursor is the position a page token encodes: the last job of a page.
type Cursor struct {
	CreateTime time.Time
	ID         string
}

const tokenVersion = 1

// EncodeToken returns the opaque token of the page after c.
func EncodeToken(c Cursor) string {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(c.ID))
	b = append(b, tokenVersion)
	b = binary.AppendVarint(b, c.CreateTime.UnixMicro())
	b = append(b, c.ID...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeToken parses a token from EncodeToken; "" means the first page.
func DecodeToken(pkg, tok string) (c Cursor, ok bool, err error) {
	if tok == "" {
		return Cursor{}, false, nil
	}
	bad := Invalid(pkg, "List: PageToken %q is not a token this store returned: pass the next page token of a previous List with the same filters, or \"\" for the first page", Clip(tok))
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) < 2 || b[0] != tokenVersion {
		return Cursor{}, false, bad
	}
	us, n := binary.Varint(b[1:])
	if n <= 0 || len(b) == 1+n {
		return Cursor{}, false, bad
	}
	return Cursor{CreateTime: FromMicros(us), ID: string(b[1+n:])}, true, nil
}

// CheckList checks List's filters and returns the page size to use (PageSize
// with its default and cap applied) and the cursor of the page token.
func CheckList(pkg string, p jobs.ListParams) (size int, cur Cursor, hasCur bool, err error) {
	if size, err = PageSize(pkg, p.PageSize); err != nil {
		return 0, cur, false, err
	}
	if p.State != "" && !p.State.Valid() {
		return 0, cur, false, Invalid(pkg, "List: State %q is not a job state: pass one of %v or \"\"", p.State, jobs.States())
	}
	if err := CheckText(pkg, "List", "Type", p.Type, jobs.MaxTypeBytes); err != nil {
		return 0, cur, false, err
	}
	if err := CheckLabels(pkg, "List", "Labels", p.Labels); err != nil {
		return 0, cur, false, err
	}
	cur, hasCur, err = DecodeToken(pkg, p.PageToken)
	return size, cur, hasCur, err
}
