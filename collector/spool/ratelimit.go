package spool

import (
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"
	"time"
)

// RateLimitDir holds the collectors' rate-limit counts: one small file per
// executable, named by a hash of its identity and updated under an flock of
// the file itself (see collector/ratelimit.go). A file holds
// "<window start ns> <window ns> <kept> <limited>".
const RateLimitDir = "ratelimit"

// RateState is one executable's count in the current window.
type RateState struct {
	Start   int64 // unix nanoseconds
	Window  int64 // nanoseconds
	Kept    int64
	Limited int64
}

// String is the state as its file holds it.
func (s RateState) String() string {
	return fmt.Sprintf("%d %d %d %d\n", s.Start, s.Window, s.Kept, s.Limited)
}

// ParseRateState reads a state file's content; false when it is not one.
func ParseRateState(b []byte) (RateState, bool) {
	f := strings.Fields(string(b))
	if len(f) != 4 {
		return RateState{}, false
	}
	var v [4]int64
	for i, s := range f {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return RateState{}, false
		}
		v[i] = n
	}
	return RateState{Start: v[0], Window: v[1], Kept: v[2], Limited: v[3]}, true
}

// Expired reports whether the window is over at now. Collectors read the
// clock before they take the lock, so one may count a moment before the
// window another just opened: that crash still belongs to the window. Only
// a clock stepped back by more than a window starts a new one.
func (s RateState) Expired(now time.Time) bool {
	return now.UnixNano() >= s.Start+s.Window || now.UnixNano() < s.Start-s.Window
}

// CleanRateLimits removes the rate limit files whose window is over, so the
// directory holds only executables that crashed recently.
func (s Spool) CleanRateLimits(now time.Time) (int, error) {
	return s.removeStale(RateLimitDir, "rate limits", func(p string, _ fs.DirEntry) bool {
		f, err := openNoFollow(p)
		if err != nil {
			return false
		}
		b, err := io.ReadAll(io.LimitReader(f, 128))
		fi, serr := f.Stat()
		f.Close()
		if err != nil || serr != nil {
			return false
		}
		// An unreadable state is only garbage once no collector can be
		// about to write it: a new file is empty until its first count.
		st, ok := ParseRateState(b)
		return ok && st.Expired(now) || !ok && now.Sub(fi.ModTime()) > time.Minute
	})
}
