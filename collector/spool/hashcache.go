package spool

import (
	"errors"
	"fmt"
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
	dir := filepath.Join(s.Dir, HashCacheDir)
	des, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("clean hash cache: %w", err)
	}
	removed := 0
	for _, de := range des {
		fi, err := de.Info()
		if err != nil || !fi.Mode().IsRegular() || time.Since(fi.ModTime()) < olderThan {
			continue
		}
		if os.Remove(filepath.Join(dir, de.Name())) == nil {
			removed++
		}
	}
	return removed, nil
}
