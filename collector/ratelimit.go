package collector

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The rate limit against crash storms: per executable, the first N crashes
// of a window keep their core, later ones only their manifest. Each
// collector is its own short-lived process, so the count lives in the
// spool: one small file per executable under RateLimitDir, named by a hash
// of the executable's identity and updated under an flock of the file
// itself. The file holds "<window start ns> <window ns> <kept> <limited>".
const (
	RateLimitDir = "ratelimit"
	// DefaultRateWindow is the window when a limit is set without one.
	DefaultRateWindow = 10 * time.Minute
)

// rateState is one executable's count in the current window.
type rateState struct {
	Start   int64 // unix nanoseconds
	Window  int64 // nanoseconds
	Kept    int64
	Limited int64
}

func (s rateState) String() string {
	return fmt.Sprintf("%d %d %d %d\n", s.Start, s.Window, s.Kept, s.Limited)
}

func parseRateState(b []byte) (rateState, bool) {
	f := strings.Fields(string(b))
	if len(f) != 4 {
		return rateState{}, false
	}
	var v [4]int64
	for i, s := range f {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return rateState{}, false
		}
		v[i] = n
	}
	return rateState{Start: v[0], Window: v[1], Kept: v[2], Limited: v[3]}, true
}

// expired reports whether the window is over at now. Collectors read the
// clock before they take the lock, so one may count a moment before the
// window another just opened: that crash still belongs to the window. Only
// a clock stepped back by more than a window starts a new one.
func (s rateState) expired(now time.Time) bool {
	return now.UnixNano() >= s.Start+s.Window || now.UnixNano() < s.Start-s.Window
}

// rateFile is the state file's name for an executable identity (a build ID,
// else its path): a hash, so no name from the crashing process becomes
// part of a path.
func rateFile(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:16])
}

// admit counts one crash of the executable key and reports whether its core
// may be kept, with the state after counting it.
func admit(root *os.Root, key string, limit int, window time.Duration, now time.Time) (bool, rateState, error) {
	if err := root.Mkdir(RateLimitDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return true, rateState{}, fmt.Errorf("rate limit: %w", err)
	}
	if fi, err := root.Lstat(RateLimitDir); err != nil || !fi.IsDir() {
		return true, rateState{}, fmt.Errorf("rate limit: %s is not a directory", RateLimitDir)
	}
	name := path.Join(RateLimitDir, rateFile(key))
	// The agent removes expired files: if it removed this one between the
	// open and the lock, the count would go to an unlinked file. Lock, then
	// check the name still leads to the locked file.
	for range 3 {
		f, err := lockFile(root, name, lockTimeout)
		if err != nil {
			return true, rateState{}, fmt.Errorf("rate limit: %w", err)
		}
		if !sameFile(root, name, f) {
			f.Close()
			continue
		}
		ok, st, err := count(f, limit, window, now)
		f.Close()
		return ok, st, err
	}
	return true, rateState{}, errors.New("rate limit: state file keeps being replaced")
}

func sameFile(root *os.Root, name string, f *os.File) bool {
	a, err := root.Lstat(name)
	if err != nil {
		return false
	}
	b, err := f.Stat()
	return err == nil && os.SameFile(a, b)
}

// count reads, updates and writes the locked state file.
func count(f *os.File, limit int, window time.Duration, now time.Time) (bool, rateState, error) {
	b, err := io.ReadAll(io.LimitReader(f, 128))
	if err != nil {
		return true, rateState{}, fmt.Errorf("rate limit: read %s: %w", f.Name(), err)
	}
	st, valid := parseRateState(b)
	if !valid || st.expired(now) {
		st = rateState{Start: now.UnixNano(), Window: int64(window)}
	}
	ok := st.Kept < int64(limit)
	if ok {
		st.Kept++
	} else {
		st.Limited++
	}
	// Losing the count in a power cut only admits a few more cores: no fsync.
	if err := f.Truncate(0); err != nil {
		return ok, st, fmt.Errorf("rate limit: %w", err)
	}
	if _, err := f.WriteAt([]byte(st.String()), 0); err != nil {
		return ok, st, fmt.Errorf("rate limit: %w", err)
	}
	return ok, st, nil
}

// CleanRateLimits removes the rate limit files whose window is over, so the
// directory holds only executables that crashed recently.
func (s Spool) CleanRateLimits(now time.Time) (int, error) {
	dir := filepath.Join(s.Dir, RateLimitDir)
	des, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("clean rate limits: %w", err)
	}
	removed := 0
	for _, de := range des {
		if !de.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, de.Name())
		f, err := openNoFollow(p)
		if err != nil {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(f, 128))
		fi, serr := f.Stat()
		f.Close()
		if err != nil || serr != nil {
			continue
		}
		// An unreadable state is only garbage once no collector can be
		// about to write it: a new file is empty until its first count.
		st, ok := parseRateState(b)
		if ok && st.expired(now) || !ok && now.Sub(fi.ModTime()) > time.Minute {
			if os.Remove(p) == nil {
				removed++
			}
		}
	}
	return removed, nil
}
