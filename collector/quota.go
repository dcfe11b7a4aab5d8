package collector

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corepipe/corepipe/collector/spool"
)

// The spool's limits hold under concurrency through a ledger. Collectors
// run side by side, one per crash, so "look at the usage, then write" would
// let two of them take the same free bytes. Instead every entry being
// written holds a reservation, <id>.tmp/reserved, and only ever writes what
// it reserved. A collector grows its reservation under an exclusive flock
// of <spool>/spool.lock (spool.LockFile), after counting what the whole spool holds:
// committed entries by their files, entries being written by the larger of
// their files and their reservation. The count is a walk of the spool, not
// a stored total, so an entry the agent removes, or a collector that died
// (its .tmp entry stays counted until the agent cleans it), needs no
// bookkeeping to be counted right.
const (
	reservationFile = "reserved"
	// lockTimeout bounds the wait for a lock: the dying process is waiting
	// behind the collector. Holders keep a lock for one walk of the spool.
	lockTimeout = time.Second
	// reserveStep bounds how far ahead of its writes an entry reserves, so
	// that concurrent collectors are not starved by one big core.
	reserveStep = 32 << 20
)

// quota is one entry's share of the spool's limits.
type quota struct {
	root     *os.Root
	entry    string // the entry's .tmp directory in root
	spoolDir string
	maxUse   int64
	keepFree int64
	// used is what the entry holds or has promised to write; reserved is
	// what its reservation file says, never less than used.
	used     int64
	reserved int64
	// why names the limit that refused the last take.
	why string
}

// newQuota returns the entry's quota, nil when the spool has no limits.
func newQuota(cfg Config, root *os.Root, entry string) *quota {
	if cfg.SpoolMaxUse <= 0 && cfg.SpoolKeepFree <= 0 {
		return nil
	}
	return &quota{root: root, entry: entry, spoolDir: cfg.SpoolDir, maxUse: cfg.SpoolMaxUse, keepFree: cfg.SpoolKeepFree}
}

// take promises n more bytes to the entry, growing its reservation when
// needed. It returns false, with q.why set, when the limits leave no room;
// nothing is promised then.
func (q *quota) take(n int64) bool {
	need := q.used + n
	if need <= q.reserved {
		q.used = need
		return true
	}
	// Past the first take (the manifest), reserve ahead, doubling up to
	// reserveStep, so that a big core takes the lock a logarithmic number
	// of times.
	want := need
	if q.reserved > 0 {
		want = min(2*need, need+reserveStep)
	}
	if err := q.grow(need, want); err != nil {
		q.why = err.Error()
		return false
	}
	q.used = need
	return true
}

// rest promises the entry everything the limits still allow and returns
// how much that is beyond what it already used: for the last piece of a
// core that does not fit whole.
func (q *quota) rest() int64 {
	if err := q.grow(q.used, math.MaxInt64/2); err != nil {
		q.why = err.Error()
	}
	return q.reserved - q.used
}

// grow raises the reservation to want, or as far as the limits allow, and
// fails when that is below need.
func (q *quota) grow(need, want int64) error {
	lock, err := spool.Lock(q.root, spool.LockFile, lockTimeout)
	if err != nil {
		return err
	}
	defer lock.Close()
	used, pending, err := ledgerUsage(q.root)
	if err != nil {
		return err
	}
	// The walk counted this entry at its reservation: room is beyond it.
	room, why := int64(math.MaxInt64), ""
	if q.maxUse > 0 {
		room, why = q.maxUse-used, fmt.Sprintf("spool max use %d, %d used or reserved", q.maxUse, used)
	}
	if q.keepFree > 0 {
		var st unix.Statfs_t
		if err := unix.Statfs(q.spoolDir, &st); err != nil {
			return fmt.Errorf("spool limits not checked: statfs %s: %w", q.spoolDir, err)
		}
		free := int64(st.Bavail) * st.Bsize
		if r := free - pending - q.keepFree; r < room {
			room, why = r, fmt.Sprintf("spool keep free %d, %d free of which %d reserved", q.keepFree, free, pending)
		}
	}
	grant := q.reserved + max(0, min(want-q.reserved, room))
	if grant < need {
		return errors.New(why)
	}
	if err := q.record(grant); err != nil {
		return err
	}
	q.reserved = grant
	return nil
}

// record writes the reservation for the next walk to see. The file is
// rewritten in place, inside the entry's directory that this collector
// created exclusively; O_NOFOLLOW still refuses a link.
func (q *quota) record(n int64) error {
	f, err := q.root.OpenFile(path.Join(q.entry, reservationFile), os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("spool reservation: %w", err)
	}
	_, err = f.WriteString(strconv.FormatInt(n, 10))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("spool reservation: %w", err)
	}
	return nil
}

// release drops the reservation once the entry's files are all written:
// from then on they count for themselves.
func (q *quota) release() error {
	if q == nil || q.reserved == 0 {
		return nil
	}
	if err := q.root.Remove(path.Join(q.entry, reservationFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("spool reservation: %w", err)
	}
	return nil
}

// renaming runs rename, which gives an entry of the spool another name,
// under the ledger's lock (without it when the lock cannot be had: the
// entry is not lost for that). A listing of the spool made while an entry
// is renamed may hold neither of its names, since a directory's listing
// is not atomic against a rename (ext4 files the two names at different
// hashes); the walk would then count the entry as nothing and grant its
// bytes a second time.
func (q *quota) renaming(rename func() error) error {
	if q != nil {
		if lock, err := spool.Lock(q.root, spool.LockFile, lockTimeout); err == nil {
			defer lock.Close()
		}
	}
	return rename()
}

// ledgerUsage counts the spool for the ledger: every regular file, and for
// entries being written the larger of their files and their reservation.
// pending is the part of reservations not yet written, which the
// filesystem's free space does not show. Symlinks count as nothing and are
// never followed.
func ledgerUsage(root *os.Root) (used, pending int64, err error) {
	top, err := readDir(root, ".")
	if err != nil {
		return 0, 0, err
	}
	ledgerListed()
	for _, de := range top {
		switch {
		case de.Type().IsRegular():
			used += entrySize(de)
		case de.IsDir():
			des, err := readDir(root, de.Name())
			if id, ok := strings.CutSuffix(de.Name(), spool.TmpSuffix); ok && errors.Is(err, fs.ErrNotExist) {
				// Committed since the listing, which then holds neither
				// name: its files count under the new one. (A listing
				// that holds both only counts it twice, which is safe.)
				des, err = readDir(root, id)
			}
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed while walking
			}
			if err != nil {
				return 0, 0, err
			}
			var files int64
			for _, f := range des {
				switch {
				case f.Type().IsRegular():
					files += entrySize(f)
				case f.IsDir() && de.Name() == spool.QuarantineDir:
					// Quarantined entries are a level down and still
					// on the spool's disk.
					files += quarantinedSize(root, f.Name())
				}
			}
			if strings.HasSuffix(de.Name(), spool.TmpSuffix) {
				if r := readReservation(root, de.Name()); r > files {
					pending += r - files
					files = r
				}
			}
			used += files
		}
	}
	return used, pending, nil
}

// quarantinedSize is the bytes of the files of quarantined entry name, 0
// when it went away.
func quarantinedSize(root *os.Root, name string) int64 {
	des, err := readDir(root, path.Join(spool.QuarantineDir, name))
	if err != nil {
		return 0
	}
	var n int64
	for _, f := range des {
		if f.Type().IsRegular() {
			n += entrySize(f)
		}
	}
	return n
}

// ledgerListed runs between the walk's listing and its reads; tests
// commit an entry there.
var ledgerListed = func() {}

func readDir(root *os.Root, name string) ([]fs.DirEntry, error) {
	d, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	des, err := d.ReadDir(-1)
	if err != nil {
		return nil, fmt.Errorf("spool usage: %w", err)
	}
	return des, nil
}

// entrySize is the size of a file found by a walk, 0 when it went away.
func entrySize(de fs.DirEntry) int64 {
	fi, err := de.Info()
	if err != nil {
		return 0
	}
	return fi.Size()
}

// readReservation returns an entry's reservation, 0 when it has none.
func readReservation(root *os.Root, entry string) int64 {
	f, err := root.OpenFile(path.Join(entry, reservationFile), os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return 0
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 32))
	if err != nil {
		return 0
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}
