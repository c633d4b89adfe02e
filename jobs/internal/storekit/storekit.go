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
	if len(j.ID) > 512 {
		return j, Invalid(pkg, "%s: Job.ID is %d bytes long: use at most 512", method, len(j.ID))
	}
	if j.Type == "" {
		return j, Invalid(pkg, "%s: job %s: Job.Type is empty: set it to the full protobuf name of the payload, e.g. courier.demo.v1.Echo", method, j.ID)
	}
	if j.MaxAttempts < 0 {
		return j, Invalid(pkg, "%s: job %s: Job.MaxAttempts is %d: use 0 for the handler's default or a positive count", method, j.ID, j.MaxAttempts)
	}
	for name, v := range map[string]string{"ID": j.ID, "Type": j.Type, "IdempotencyKey": j.IdempotencyKey} {
		if !Text(v) {
			return j, Invalid(pkg, "%s: Job.%s %q is not valid UTF-8 without NUL bytes: pass text", method, name, v)
		}
	}
	for k, v := range j.Labels {
		if k == "" {
			return j, Invalid(pkg, "%s: job %s: a label has an empty key: give every label a key", method, j.ID)
		}
		if !Text(k) || !Text(v) {
			return j, Invalid(pkg, "%s: job %s: label %q=%q is not valid UTF-8 without NUL bytes: pass text", method, j.ID, k, v)
		}
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
	}
	return out, nil
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

// CheckID rejects an empty job ID.
func CheckID(pkg, method, id string) error {
	if id == "" {
		return Invalid(pkg, "%s: job ID is empty: pass the ID of an existing job", method)
	}
	if !Text(id) {
		return Invalid(pkg, "%s: job ID %q is not valid UTF-8 without NUL bytes: pass the ID of an existing job", method, id)
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
	return nil
}

// CheckLimit checks DueOutbox's limit and caps it at 1000.
func CheckLimit(pkg string, limit int) (int, error) {
	if limit <= 0 {
		return 0, Invalid(pkg, "DueOutbox: limit is %d: pass a positive number of entries", limit)
	}
	return min(limit, 1000), nil
}

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
	bad := Invalid(pkg, "List: PageToken %q is not a token this store returned: pass the next page token of a previous List with the same filters, or \"\" for the first page", tok)
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
	if !Text(p.Type) {
		return 0, cur, false, Invalid(pkg, "List: Type %q is not valid UTF-8 without NUL bytes", p.Type)
	}
	for k, v := range p.Labels {
		if !Text(k) || !Text(v) {
			return 0, cur, false, Invalid(pkg, "List: label %q=%q is not valid UTF-8 without NUL bytes", k, v)
		}
	}
	cur, hasCur, err = DecodeToken(pkg, p.PageToken)
	return size, cur, hasCur, err
}
