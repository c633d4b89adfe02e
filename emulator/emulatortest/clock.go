package emulatortest

import (
	"sync"
	"time"
)

// Clock is a wall clock for emulator.Config.Now that tests move forward:
// it reads the real time plus everything Advance added, so time still
// passes as usual and expiry that takes days takes an Advance call.
type Clock struct {
	mu     sync.Mutex
	offset time.Duration
}

// Now returns the real time plus the offsets added so far.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}
