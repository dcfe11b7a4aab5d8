// Package tick runs work at an interval until its context ends: the
// heartbeats, digests and polls that would each write the same ticker loop.
package tick

import (
	"context"
	"time"
)

// Every calls fn every d, the first time d after it is called, until ctx
// ends, and never once it has. A call to fn that takes longer than d
// delays the next one rather than queueing calls, as time.Ticker drops
// ticks.
func Every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// select picks at random when a tick and the end are both
			// there: the end wins.
			if ctx.Err() != nil {
				return
			}
			fn()
		}
	}
}
