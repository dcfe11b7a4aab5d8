package agent

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corepipe/corepipe"
)

// watcher wakes the agent when the collector commits an entry: the commit
// is a rename into the spool, which inotify reports as IN_MOVED_TO. The
// poll stays as the fallback for what inotify misses (an overflowed event
// queue, a spool on a filesystem without inotify).
type watcher struct {
	f    *os.File
	wake chan struct{}
	wg   sync.WaitGroup
}

func watchSpool(dir string) (*watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("watch spool: inotify: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_MOVED_TO|unix.IN_ONLYDIR); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("watch spool %s: %w", dir, err)
	}
	// A non-blocking descriptor makes a pollable File: Close ends a Read
	// in progress, so stopping never waits for an event.
	w := &watcher{f: os.NewFile(uintptr(fd), "inotify:"+dir), wake: make(chan struct{}, 1)}
	w.wg.Go(w.read)
	return w, nil
}

func (w *watcher) read() {
	buf := make([]byte, 64<<10)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			return
		}
		if committed(buf[:n]) {
			select {
			case w.wake <- struct{}{}:
			default:
			}
		}
	}
}

// committed reports whether the events name a committed entry, or overflowed.
func committed(b []byte) bool {
	for len(b) >= unix.SizeofInotifyEvent {
		mask := binary.NativeEndian.Uint32(b[4:])
		n := int(binary.NativeEndian.Uint32(b[12:]))
		end := unix.SizeofInotifyEvent + n
		if end > len(b) {
			return true
		}
		name := string(bytes.TrimRight(b[unix.SizeofInotifyEvent:end], "\x00"))
		if mask&unix.IN_Q_OVERFLOW != 0 || corepipe.ValidID(name) {
			return true
		}
		b = b[end:]
	}
	return false
}

// Wake receives when an entry may have been committed; nil on a nil watcher.
func (w *watcher) Wake() <-chan struct{} {
	if w == nil {
		return nil
	}
	return w.wake
}

func (w *watcher) Close() error {
	if w == nil {
		return nil
	}
	err := w.f.Close()
	w.wg.Wait()
	if errors.Is(err, os.ErrClosed) {
		return nil
	}
	return err
}

// nextBackoff doubles the wait after a failure, from a second up to limit.
func nextBackoff(prev, limit time.Duration) time.Duration {
	return min(max(2*prev, time.Second), limit)
}

// jitter spreads d over [d/2, d], so that the agents of a fleet that lost
// storage together do not all come back in the same instant.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d-d/2+1)
}
