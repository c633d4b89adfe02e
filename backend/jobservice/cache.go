package jobservice

import (
	"sync"
	"time"

	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

// ended is a read-through cache of jobs that have ended, for GetJob: a
// SUCCEEDED, FAILED or CANCELLED job does not change again (only the
// janitor deletes it, after the retention period), so polling callers are
// answered from memory instead of the store. Entries live for ttl (a job
// deleted from the store is answered for at most that long after) and the
// oldest are dropped beyond size. Its values are shared: callers must not
// change them (gRPC only marshals them).
type ended struct {
	size int
	ttl  time.Duration
	now  func() time.Time

	mu    sync.Mutex
	jobs  map[string]endedEntry
	order []string // insertion order, for eviction (a ring)
	next  int
}

type endedEntry struct {
	job *courierv1.Job
	at  time.Time
}

func newEnded(size int, ttl time.Duration, now func() time.Time) *ended {
	if size <= 0 {
		return nil
	}
	return &ended{size: size, ttl: ttl, now: now, jobs: make(map[string]endedEntry, size), order: make([]string, 0, size)}
}

// get returns the cached job id, or nil.
func (c *ended) get(id string) *courierv1.Job {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	e, ok := c.jobs[id]
	c.mu.Unlock()
	if !ok || c.now().Sub(e.at) > c.ttl {
		return nil
	}
	return e.job
}

// put caches j if it has ended.
func (c *ended) put(j *courierv1.Job) {
	if c == nil {
		return
	}
	switch j.GetState() {
	case courierv1.State_SUCCEEDED, courierv1.State_FAILED, courierv1.State_CANCELLED:
	default:
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.jobs[j.GetId()]; ok {
		return
	}
	if len(c.order) < c.size {
		c.order = append(c.order, j.GetId())
	} else {
		delete(c.jobs, c.order[c.next])
		c.order[c.next] = j.GetId()
		c.next = (c.next + 1) % c.size
	}
	c.jobs[j.GetId()] = endedEntry{job: j, at: c.now()}
}
