package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// HashCacheDir holds the sha256 of executables the collector already hashed, by the
// identity of the file (device, inode, size, mtime, ctime): a node's crashes
// are mostly of the same few programs, and without it every kept core of one
// whose marker exists would read the whole executable again. No process can
// give another file the identity of its own: the inode and device are the
// kernel's, and ctime changes with any write.
// Each file holds the hex sha256 and a newline (see collector/executable.go).
const HashCacheDir = "exehash"

// CleanHashCache removes the cached hashes older than olderThan, so the
// cache holds only executables that crashed lately; one whose entry is
// removed is hashed again on its next crash.
func (s Spool) CleanHashCache(olderThan time.Duration) (int, error) {
	return s.removeStale(HashCacheDir, "hash cache", func(_ string, de fs.DirEntry) bool {
		fi, err := de.Info()
		return err == nil && time.Since(fi.ModTime()) >= olderThan
	})
}

// removeStale removes the regular files in the spool's directory sub that
// stale picks, and counts them; a missing directory holds none. what names
// the directory in errors.
func (s Spool) removeStale(sub, what string, stale func(path string, de fs.DirEntry) bool) (int, error) {
	dir := filepath.Join(s.Dir, sub)
	des, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("clean %s: %w", what, err)
	}
	removed := 0
	for _, de := range des {
		p := filepath.Join(dir, de.Name())
		if de.Type().IsRegular() && stale(p, de) && os.Remove(p) == nil {
			removed++
		}
	}
	return removed, nil
}
