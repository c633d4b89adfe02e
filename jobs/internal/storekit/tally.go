package storekit

import (
	"cmp"
	"slices"
	"time"

	"github.com/courierq/courier/jobs"
)

// CountKey is one counter of Store.Counts: jobs of Type in State.
type CountKey struct {
	Type  string
	State jobs.State
}

// EndKey is one bucket of Store.Throughput: jobs of Type that ended in the
// minute starting at Minute.
type EndKey struct {
	Minute time.Time
	Type   string
}

// Ends counts the jobs that ended in one EndKey.
type Ends struct{ Succeeded, Failed int }

// Tally gathers the counter changes of a write (or of a batch of writes), so
// that a store applies them with one upsert per counter instead of one per
// job. The zero Tally is empty and ready.
type Tally struct {
	counts map[CountKey]int
	ends   map[EndKey]Ends
}

// Move records that a job of typ went from state from ("" for a new job) to
// state to ("" for a deleted job) at now. A move to Succeeded or Failed
// counts in now's Throughput minute.
func (t *Tally) Move(typ string, from, to jobs.State, now time.Time) {
	if from == to {
		return
	}
	if t.counts == nil {
		t.counts = make(map[CountKey]int)
	}
	if from != "" {
		t.counts[CountKey{typ, from}]--
	}
	if to != "" {
		t.counts[CountKey{typ, to}]++
	}
	if to == jobs.Succeeded || to == jobs.Failed {
		if t.ends == nil {
			t.ends = make(map[EndKey]Ends)
		}
		k := EndKey{Minute: Minute(now), Type: typ}
		e := t.ends[k]
		if to == jobs.Succeeded {
			e.Succeeded++
		} else {
			e.Failed++
		}
		t.ends[k] = e
	}
}

// Add merges o into t.
func (t *Tally) Add(o *Tally) {
	for k, n := range o.counts {
		if t.counts == nil {
			t.counts = make(map[CountKey]int)
		}
		t.counts[k] += n
	}
	for k, e := range o.ends {
		if t.ends == nil {
			t.ends = make(map[EndKey]Ends)
		}
		cur := t.ends[k]
		t.ends[k] = Ends{cur.Succeeded + e.Succeeded, cur.Failed + e.Failed}
	}
}

// Reset empties t, keeping its maps for reuse.
func (t *Tally) Reset() {
	clear(t.counts)
	clear(t.ends)
}

// Empty reports whether t changes no counter.
func (t *Tally) Empty() bool {
	for _, n := range t.counts {
		if n != 0 {
			return false
		}
	}
	return len(t.ends) == 0
}

// Counts returns the non-zero counter changes, sorted by type then state:
// one order for every writer, so that upserts of the same rows never
// deadlock.
func (t *Tally) Counts() (keys []CountKey, deltas []int) {
	for k, n := range t.counts {
		if n != 0 {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b CountKey) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.State, b.State))
	})
	deltas = make([]int, len(keys))
	for i, k := range keys {
		deltas[i] = t.counts[k]
	}
	return keys, deltas
}

// Ends returns the Throughput changes, sorted by minute then type.
func (t *Tally) Ends() (keys []EndKey, ends []Ends) {
	for k := range t.ends {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b EndKey) int {
		return cmp.Or(a.Minute.Compare(b.Minute), cmp.Compare(a.Type, b.Type))
	})
	ends = make([]Ends, len(keys))
	for i, k := range keys {
		ends[i] = t.ends[k]
	}
	return keys, ends
}

// Minute returns the start of t's minute, in UTC.
func Minute(t time.Time) time.Time { return t.UTC().Truncate(time.Minute) }

// Bucket returns the start of the Throughput bucket of width step that
// holds t: a whole multiple of step since the Unix epoch.
func Bucket(t time.Time, step time.Duration) time.Time {
	us := t.UnixMicro()
	w := step.Microseconds()
	b := us - us%w
	if us < 0 && us%w != 0 {
		b -= w
	}
	return FromMicros(b)
}

// AddCount adds the count n of jobs of typ in state to out, a Counts result
// being built from rows sorted by type; oldest is the type's oldest Queued
// job (zero when unknown).
func AddCount(out []jobs.TypeCounts, typ string, state jobs.State, n int, oldest time.Time) []jobs.TypeCounts {
	if len(out) == 0 || out[len(out)-1].Type != typ {
		states := make(map[jobs.State]int, 5)
		for _, st := range jobs.States() {
			states[st] = 0
		}
		out = append(out, jobs.TypeCounts{Type: typ, States: states})
	}
	tc := &out[len(out)-1]
	tc.States[state] += n
	if !oldest.IsZero() && (tc.OldestQueued.IsZero() || oldest.Before(tc.OldestQueued)) {
		tc.OldestQueued = Round(oldest)
	}
	return out
}
