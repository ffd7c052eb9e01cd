// Package testclock is the fake clock of rdsproxy's tests: code under test
// takes a func() time.Time, and a test passes Clock.Now and moves time with
// Advance or Set instead of sleeping. It is safe for concurrent use.
package testclock

import (
	"sync"
	"time"
)

// Clock is a settable clock. The zero value reads the zero time; New starts
// one at a given instant.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// New returns a clock reading start.
func New(start time.Time) *Clock { return &Clock{now: start} }

// Start returns a clock reading the current wall time, which is what tests
// want when the clock also meets real timestamps (token signing, TLS
// certificates).
func Start() *Clock { return New(time.Now()) }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock by d (backwards when d is negative).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}
