// Package netconsoletest replays recorded netconsole captures through a
// real receiver, for the tests of what is made of a kernel panic.
package netconsoletest

import (
	"testing"
	"time"

	"github.com/corepipe/corepipe/internal/testkit"
	"github.com/corepipe/corepipe/netconsole"
)

// Replay feeds a capture file (one datagram a line, as a JSON string, as
// netconsole/testdata holds them) to a receiver as sent by 127.0.0.1:6665,
// qemu's user networking's address for a guest, and returns what it hands
// over.
func Replay(tb testing.TB, path string) *netconsole.Capture {
	tb.Helper()
	var got *netconsole.Capture
	r, err := netconsole.New(netconsole.Config{}, func(c *netconsole.Capture) { got = c })
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	for _, d := range testkit.Datagrams(tb, path) {
		now = now.Add(time.Millisecond)
		r.Datagram(now, "127.0.0.1:6665", []byte(d))
	}
	r.Flush(now)
	if got == nil {
		tb.Fatalf("%s: no capture", path)
	}
	return got
}
