package handlers

import "time"

// Clock is the time source of the middleware that waits (RateLimit). Tests
// inject one that returns fixed instants; nil means the real clock.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
