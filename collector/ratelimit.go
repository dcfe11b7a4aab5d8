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
	"time"

	"github.com/corepipe/corepipe/collector/spool"
)

// The rate limit against crash storms: per executable, the first N crashes
// of a window keep their core, later ones only their manifest. Each
// collector is its own short-lived process, so the count lives in the
// spool: one small file per executable under spool.RateLimitDir, named by a
// hash of the executable's identity and updated under an flock of the file
// itself (its format is spool.RateState).

// DefaultRateWindow is the window when a limit is set without one.
const DefaultRateWindow = 10 * time.Minute

// rateFile is the state file's name for an executable identity (a build ID,
// else its path): a hash, so no name from the crashing process becomes
// part of a path.
func rateFile(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:16])
}

// admit counts one crash of the executable key and reports whether its core
// may be kept, with the state after counting it.
func admit(root *os.Root, key string, limit int, window time.Duration, now time.Time) (bool, spool.RateState, error) {
	if err := root.Mkdir(spool.RateLimitDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return true, spool.RateState{}, fmt.Errorf("rate limit: %w", err)
	}
	if fi, err := root.Lstat(spool.RateLimitDir); err != nil || !fi.IsDir() {
		return true, spool.RateState{}, fmt.Errorf("rate limit: %s is not a directory", spool.RateLimitDir)
	}
	name := path.Join(spool.RateLimitDir, rateFile(key))
	// The agent removes expired files: if it removed this one between the
	// open and the lock, the count would go to an unlinked file. Lock, then
	// check the name still leads to the locked file.
	for range 3 {
		f, err := spool.Lock(root, name, lockTimeout)
		if err != nil {
			return true, spool.RateState{}, fmt.Errorf("rate limit: %w", err)
		}
		if !sameFile(root, name, f) {
			f.Close()
			continue
		}
		ok, st, err := count(f, limit, window, now)
		f.Close()
		return ok, st, err
	}
	return true, spool.RateState{}, errors.New("rate limit: state file keeps being replaced")
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
func count(f *os.File, limit int, window time.Duration, now time.Time) (bool, spool.RateState, error) {
	b, err := io.ReadAll(io.LimitReader(f, 128))
	if err != nil {
		return true, spool.RateState{}, fmt.Errorf("rate limit: read %s: %w", f.Name(), err)
	}
	st, valid := spool.ParseRateState(b)
	if !valid || st.Expired(now) {
		st = spool.RateState{Start: now.UnixNano(), Window: int64(window)}
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
