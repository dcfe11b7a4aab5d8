package collector

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corepipe/corepipe/collector/spool"
)

// The bound on concurrent collectors. The kernel runs one collector per
// crash and, with core_pipe_limit set, dumps at most that many cores at
// once: every further crash on the node is skipped, without a record. A
// burst of crashes whose cores are long (huge zero-page mappings, under
// distinct executables so the rate limit does not see a storm) could hold
// every one of those slots for minutes. So a collector stores a core only
// while it holds one of MaxCollectors slot files (an flock under
// <spool>/slots, released by the kernel however the collector ends); one
// that finds none free within the slot wait keeps the manifest, closes the
// kernel's stream and exits, freeing its kernel slot at once.
const (
	// DefaultMaxCollectors stays well below the core_pipe_limit the agent
	// installs (64), so the kernel always has slots for the fast path.
	DefaultMaxCollectors = 4
	// DefaultSlotWait is how long a collector waits for a slot: long
	// enough for a normal core to finish, short against a dying process's
	// patience.
	DefaultSlotWait = 2 * time.Second
)

// errSlotsBusy is returned, wrapped, when every slot stayed taken.
var errSlotsBusy = errors.New("collector slots stayed busy")

// takeSlot takes one of n slot locks, waiting at most wait. Closing the
// file releases the slot.
func takeSlot(root *os.Root, n int, wait time.Duration) (*os.File, error) {
	if err := root.Mkdir(spool.SlotsDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("collector slots: %w", err)
	}
	if fi, err := root.Lstat(spool.SlotsDir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("collector slots: %s is not a directory", spool.SlotsDir)
	}
	files := make([]*os.File, 0, n)
	defer func() {
		for _, f := range files {
			if f != nil {
				f.Close()
			}
		}
	}()
	for i := range n {
		f, err := root.OpenFile(path.Join(spool.SlotsDir, strconv.Itoa(i)), os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return nil, fmt.Errorf("collector slots: %w", err)
		}
		files = append(files, f)
	}
	deadline := time.Now().Add(wait)
	for {
		for i, f := range files {
			err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
			if err == nil {
				files[i] = nil
				return f, nil
			}
			if !errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("collector slots: %w", err)
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("all %d %w for %v", n, errSlotsBusy, wait)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// inProgress is the entry this process is writing, for Abandon.
var inProgress struct {
	sync.Mutex
	path string
}

// track records the .tmp entry being written so Abandon can remove it; the
// returned function forgets it once it is committed or removed.
func track(spool, tmp string) func() {
	inProgress.Lock()
	inProgress.path = filepath.Join(spool, tmp)
	inProgress.Unlock()
	return func() {
		inProgress.Lock()
		inProgress.path = ""
		inProgress.Unlock()
	}
}

// Abandon removes the entry a running Run is writing, for a collector that
// gives up past its deadline: the half-written entry goes at once instead of
// waiting for the agent's stale-entry sweep. The entry is .tmp, never
// committed, so the agent cannot have taken it.
func Abandon() error {
	inProgress.Lock()
	defer inProgress.Unlock()
	if inProgress.path == "" {
		return nil
	}
	err := os.RemoveAll(inProgress.path)
	inProgress.path = ""
	return err
}
