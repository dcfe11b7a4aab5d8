package spool

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Lock opens name in root and takes an exclusive flock on it, waiting at
// most timeout: the space ledger (LockFile) and each rate-limit state are
// locked so. It is the one kind of file the collector opens without
// O_EXCL: a lock is shared by every collector and the agent by design.
// O_NOFOLLOW still refuses a planted symlink. Closing the file releases
// the lock.
func Lock(root *os.Root, name string, timeout time.Duration) (*os.File, error) {
	f, err := root.OpenFile(name, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	deadline := time.Now().Add(timeout)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("lock %s: still held by another process after %v", name, timeout)
			}
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		time.Sleep(time.Millisecond)
	}
}
