package storekit

import (
	"fmt"
	"slices"

	"github.com/courierq/courier/jobs"
)

// Refused explains a conditional change of job id that applied to no row,
// given the job as it is now (nil: there is none): ErrNotFound, or the job
// and an error wrapping ErrConflict that says why.
func Refused(pkg, method, id, lease string, cur *jobs.Job) (*jobs.Job, error) {
	if cur == nil {
		return nil, fmt.Errorf("%s: %s: job %s: %w", pkg, method, id, jobs.ErrNotFound)
	}
	if lease != "" && cur.State == jobs.Running && cur.Lease != lease {
		return cur, fmt.Errorf("%s: %s: job %s is RUNNING under another lease (taken over, or released after its lease lapsed): %w",
			pkg, method, id, jobs.ErrConflict)
	}
	return cur, fmt.Errorf("%s: %s: job %s is %s: %w", pkg, method, id, cur.State, jobs.ErrConflict)
}

// StartRefused explains a Start that applied to no row, given the job as it
// is now (nil: there is none). A job Running under p.Lease is a repeated
// call: the job and no error. Running under another live lease: the job and
// ErrLeased. Otherwise as Refused.
func StartRefused(pkg string, p jobs.StartParams, cur *jobs.Job) (*jobs.Job, error) {
	if cur != nil && cur.State == jobs.Running {
		if cur.Lease == p.Lease {
			return cur, nil
		}
		return cur, fmt.Errorf("%s: Start: job %s runs under another lease until %s: %w",
			pkg, p.ID, cur.LeaseExpiry.Format("2006-01-02T15:04:05.999999Z07:00"), jobs.ErrLeased)
	}
	return Refused(pkg, "Start", p.ID, "", cur)
}

// Lost returns the IDs of refs that are not in held (the IDs a Heartbeat
// extended), in the order of refs, each once.
func Lost(refs []jobs.LeaseRef, held []string) []string {
	ok := make(map[string]bool, len(held))
	for _, id := range held {
		ok[id] = true
	}
	var lost []string
	for _, r := range refs {
		if !ok[r.ID] && !slices.Contains(lost, r.ID) {
			lost = append(lost, r.ID)
		}
	}
	return lost
}
