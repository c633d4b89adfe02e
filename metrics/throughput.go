package metrics

import (
	"sync"
	"time"
)

// throughputMinutes is how much per-minute history Throughput keeps.
const throughputMinutes = 60

// throughput counts job ends per type and minute, for the dashboard's chart
// (Prometheus keeps the real series; this is what one process saw).
type throughput struct {
	mu     sync.Mutex
	byType map[string]*minuteRing
}

type minuteRing struct {
	minute [throughputMinutes]int64 // unix minute each slot holds
	ok     [throughputMinutes]int
	failed [throughputMinutes]int
}

func (t *throughput) add(typ string, now time.Time, ok bool) {
	m := now.Unix() / 60
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byType == nil {
		t.byType = map[string]*minuteRing{}
	}
	r := t.byType[typ]
	if r == nil {
		r = &minuteRing{}
		t.byType[typ] = r
	}
	i := m % throughputMinutes
	if r.minute[i] != m {
		r.minute[i], r.ok[i], r.failed[i] = m, 0, 0
	}
	if ok {
		r.ok[i]++
	} else {
		r.failed[i]++
	}
}

// Throughput returns how many jobs of typ this process saw succeed and fail
// (for good) in each of the last n minutes, oldest first, the current minute
// last. n is capped at 60.
func (m *Metrics) Throughput(typ string, n int) (succeeded, failed []int) {
	n = min(max(n, 0), throughputMinutes)
	succeeded, failed = make([]int, n), make([]int, n)
	now := m.cfg.Now().Unix() / 60
	t := &m.through
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.byType[typ]
	if r == nil {
		return succeeded, failed
	}
	for k := range n {
		minute := now - int64(n-1-k)
		i := minute % throughputMinutes
		if r.minute[i] == minute {
			succeeded[k], failed[k] = r.ok[i], r.failed[i]
		}
	}
	return succeeded, failed
}
