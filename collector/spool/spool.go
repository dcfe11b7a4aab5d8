// Package spool is the format of the directory between the collector and
// the node agent: the contract both sides read. The collector (one short
// process per crash, as root) writes entries, markers' readers, rate-limit
// and hash-cache state; the agent ships entries, writes the markers and
// the Settings, and sweeps what the collector left. Nothing here writes an
// entry: that is the collector's job, through an os.Root.
package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/collector/internal/hostfile"
)

// The spool format. One directory per crash, named by its ID:
//
//	<spool>/<id>/manifest.json   the corepipe.Crash, always present
//	<spool>/<id>/core.zst        the core, zstd; absent when it was dropped
//	<spool>/<id>/executable      the crashed executable; absent when it was
//	                             not captured or already stored
//	<spool>/executables/<name>   marker: the agent stored an executable
//	                             under this content ID; holds its
//	                             "<sha256> <size>"
//	<spool>/slots/<n>            flock'd by each collector storing a core
//	                             (see collector/slots.go)
//	<spool>/exehash/<key>        sha256 of an executable file already
//	                             hashed, by its identity (see collector/executable.go)
//	<spool>/collector.log        the collector's own failures, size-capped
//	<spool>/collector.json       the limits the agent set (Settings)
//	<spool>/spool.lock           the space ledger's lock (see collector/quota.go)
//	<spool>/ratelimit/<hash>     crashes per executable in the current
//	                             window (ratelimit.go)
//
// The collector writes an entry as <id>.tmp, holding its space reservation
// in <id>.tmp/reserved, and renames it when every file in it is synced: a
// directory named by a bare ID is complete.
const (
	ManifestFile   = "manifest.json"
	CoreFile       = "core.zst"
	ExecutableFile = "executable"
	ExecutablesDir = "executables"
	LogFile        = "collector.log"
	// TmpSuffix marks an entry, or a file, still being written.
	TmpSuffix = ".tmp"
	// SlotsDir holds the collectors' slot locks (see collector.MaxCollectors).
	SlotsDir = "slots"
	// LockFile is the space ledger's lock.
	LockFile = "spool.lock"
)

// Dropped reasons recorded in the manifest's core.dropped.
const (
	DroppedRlimit      = "rlimit_core=0"
	DroppedSpoolFull   = "spool_full"
	DroppedRateLimited = "rate_limited"
	DroppedWrite       = "write_failed"
	// DroppedBusy: every collector slot stayed taken (see collector.Config.MaxCollectors).
	DroppedBusy = "collectors_busy"
)

// MaxManifestSize bounds what Manifest reads; real manifests are a few KiB
// plus a capped cmdline.
const MaxManifestSize = 4 << 20

// ErrSymlink marks spool entries that are symlinks: nothing in the spool is
// ever created as one, so they are skipped, never followed.
var ErrSymlink = errors.New("symlink in spool")

// Spool is the agent's view of a spool directory.
type Spool struct {
	Dir string
}

// Entry is one committed crash in the spool.
type Entry struct {
	ID  string
	Dir string
}

// Entries returns the committed entries, oldest first. Entries still being
// written (.tmp), junk and symlinks are skipped; when symlinks were skipped
// the valid entries come back together with an error matching ErrSymlink, so
// the caller can both carry on and report them.
func (s Spool) Entries() ([]Entry, error) {
	des, err := os.ReadDir(s.Dir)
	if err != nil {
		return nil, fmt.Errorf("spool %s: %w", s.Dir, err)
	}
	var entries []Entry
	var links []string
	for _, de := range des {
		if !corepipe.ValidID(de.Name()) {
			continue
		}
		switch {
		case de.Type()&fs.ModeSymlink != 0:
			links = append(links, de.Name())
		case de.IsDir():
			entries = append(entries, Entry{ID: de.Name(), Dir: filepath.Join(s.Dir, de.Name())})
		}
	}
	// ULIDs sort by time as strings.
	slices.SortFunc(entries, func(a, b Entry) int { return strings.Compare(a.ID, b.ID) })
	if len(links) > 0 {
		return entries, fmt.Errorf("spool %s: skipped %d entries: %w: %s", s.Dir, len(links), ErrSymlink, strings.Join(links, ", "))
	}
	return entries, nil
}

// Manifest reads the entry's manifest.
func (e Entry) Manifest() (*corepipe.Crash, error) {
	f, err := openNoFollow(filepath.Join(e.Dir, ManifestFile))
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ELOOP) {
		// The collector writes the manifest before it commits: a committed
		// entry without one was not made by it.
		return nil, fmt.Errorf("spool entry %s: %w: no manifest: %v", e.ID, corepipe.ErrInvalid, err)
	}
	if err != nil {
		return nil, fmt.Errorf("spool entry %s: %w", e.ID, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("spool entry %s: read manifest: %w", e.ID, err)
	}
	if len(b) > MaxManifestSize {
		return nil, fmt.Errorf("spool entry %s: %w: manifest is over %d bytes", e.ID, corepipe.ErrInvalid, MaxManifestSize)
	}
	var c corepipe.Crash
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("spool entry %s: %w: decode manifest: %v", e.ID, corepipe.ErrInvalid, err)
	}
	if c.ID != e.ID {
		return nil, fmt.Errorf("spool entry %s: %w: manifest is for crash %.40q", e.ID, corepipe.ErrInvalid, c.ID)
	}
	return &c, nil
}

// CorePath is the compressed core's path, "" when the entry has none.
func (e Entry) CorePath() string { return e.regular(CoreFile) }

// ExecutablePath is the captured executable's path, "" when the entry has
// none (not captured, or already stored: see the manifest's notes).
func (e Entry) ExecutablePath() string { return e.regular(ExecutableFile) }

func (e Entry) regular(name string) string {
	p := filepath.Join(e.Dir, name)
	if fi, err := os.Lstat(p); err != nil || !fi.Mode().IsRegular() {
		return ""
	}
	return p
}

// Remove deletes the entry. It is first renamed back to .tmp, so an
// interrupted removal leaves a stale entry for CleanStale instead of a
// committed one with files missing.
func (e Entry) Remove() error {
	tmp := e.Dir + TmpSuffix
	if err := os.Rename(e.Dir, tmp); err != nil {
		return fmt.Errorf("remove spool entry %s: %w", e.ID, err)
	}
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("remove spool entry %s: %w", e.ID, err)
	}
	return nil
}

// QuarantineDir holds entries the agent cannot ship: kept for a person to
// look at, out of the way of the entries behind them.
const QuarantineDir = "quarantine"

// Quarantine moves the entry out of the spool's queue into QuarantineDir.
func (e Entry) Quarantine() error {
	dir := filepath.Join(filepath.Dir(e.Dir), QuarantineDir)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("quarantine spool entry %s: %w", e.ID, err)
	}
	if err := os.Rename(e.Dir, filepath.Join(dir, e.ID)); err != nil {
		return fmt.Errorf("quarantine spool entry %s: %w", e.ID, err)
	}
	return nil
}

// StoredExe is what a marker says the blob store holds under a content ID:
// the sha256 and size of the object, or an empty SHA256 when the agent did
// not learn them (the object was there before, with other content).
type StoredExe struct {
	SHA256 string
	Size   int64
}

// ExecutableStored reports whether the agent marked the executable with this
// content ID (see corepipe.ExeArtifact.ContentID) as stored, and with what
// content. A build ID is chosen by the program that crashed: only the
// content says whether another executable with the same ID is the same.
func (s Spool) ExecutableStored(contentID string) (StoredExe, bool) {
	if contentID == "" {
		return StoredExe{}, false
	}
	f, err := openNoFollow(filepath.Join(s.Dir, ExecutablesDir, corepipe.SafeName(contentID)))
	if err != nil {
		return StoredExe{}, false
	}
	defer f.Close()
	return ReadMarker(f)
}

// ReadMarker reads a marker, "<sha256> <size>", from f, which the caller
// opened without following links. A marker of an older agent is empty:
// stored, content unknown.
func ReadMarker(f *os.File) (StoredExe, bool) {
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return StoredExe{}, false
	}
	b, _ := io.ReadAll(io.LimitReader(f, 128))
	var m StoredExe
	if fields := strings.Fields(string(b)); len(fields) == 2 && len(fields[0]) == 64 {
		if n, err := strconv.ParseInt(fields[1], 10, 64); err == nil && n >= 0 {
			m = StoredExe{SHA256: fields[0], Size: n}
		}
	}
	return m, true
}

// MarkExecutableStored records that the blob store durably holds m under
// contentID, so collectors of an executable with that content stop copying
// it. Call it only after the store confirmed the write. A marker is
// replaced, never appended to.
func (s Spool) MarkExecutableStored(contentID string, m StoredExe) error {
	if contentID == "" {
		return errors.New("mark executable stored: empty content id")
	}
	dir := filepath.Join(s.Dir, ExecutablesDir)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("mark executable stored: %w", err)
	}
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("mark executable stored: %s is not a directory", dir)
	}
	name := filepath.Join(dir, corepipe.SafeName(contentID))
	if cur, ok := s.ExecutableStored(contentID); ok && cur == m {
		return nil
	}
	// Losing a marker in a power cut only costs one more copy: no fsync.
	err := hostfile.Replace(name, name+TmpSuffix, 0o600, false, func(w io.Writer) error {
		if m.SHA256 == "" {
			return nil
		}
		_, err := fmt.Fprintf(w, "%s %d\n", m.SHA256, m.Size)
		return err
	})
	if err != nil {
		return fmt.Errorf("mark executable stored: %w", err)
	}
	return nil
}

// CleanStale removes entries left as .tmp by a collector that died, once
// their directory is older than olderThan. Collectors run under a bounded
// deadline, so olderThan well above it never races a live one.
func (s Spool) CleanStale(olderThan time.Duration) (int, error) {
	des, err := os.ReadDir(s.Dir)
	if err != nil {
		return 0, fmt.Errorf("clean spool %s: %w", s.Dir, err)
	}
	removed := 0
	var errs []error
	for _, de := range des {
		id, ok := strings.CutSuffix(de.Name(), TmpSuffix)
		if !ok || !corepipe.ValidID(id) || !de.IsDir() {
			continue
		}
		fi, err := de.Info()
		if err != nil || time.Since(fi.ModTime()) < olderThan {
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.Dir, de.Name())); err != nil {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("clean spool %s: %w", s.Dir, err)
	}
	return removed, nil
}

// Usage is the bytes the spool's files take, entries being written included.
// Symlinks are counted as themselves, never followed.
func (s Spool) Usage() (int64, error) {
	var total int64
	err := filepath.WalkDir(s.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			// An entry removed while walking is not an error.
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		total += fi.Size()
		return nil
	})
	if err != nil {
		return total, fmt.Errorf("spool usage %s: %w", s.Dir, err)
	}
	return total, nil
}

func openNoFollow(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
}

// KeptSuffix marks an entry the agent has shipped without its core, which
// the fleet's core policy keeps on the node until it is requested or its
// time is up: <spool>/<id>.kept/ holds core.zst and the manifest as
// shipped. It stays a top-level directory, so the collector's space
// ledger counts it against the spool's limits.
const KeptSuffix = ".kept"

// ledgerWait bounds the agent's wait for the space ledger's lock, which a
// collector holds only while it counts the spool.
const ledgerWait = 2 * time.Second

// Keep turns a shipped entry into a kept one: its executable (stored
// already) goes, its core stays. The rename is made under the space
// ledger's lock, as the collector's commit is: a collector's walk that
// lists the spool during a rename can miss both names and would grant the
// core's bytes again. Without the lock (not had within ledgerWait) the
// entry is kept all the same.
func (e Entry) Keep() (Entry, error) {
	if err := os.Remove(filepath.Join(e.Dir, ExecutableFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Entry{}, fmt.Errorf("keep spool entry %s: %w", e.ID, err)
	}
	if root, err := os.OpenRoot(filepath.Dir(e.Dir)); err == nil {
		lock, err := Lock(root, LockFile, ledgerWait)
		root.Close()
		if err == nil {
			defer lock.Close()
		}
	}
	kept := Entry{ID: e.ID, Dir: e.Dir + KeptSuffix}
	if err := os.Rename(e.Dir, kept.Dir); err != nil {
		return Entry{}, fmt.Errorf("keep spool entry %s: %w", e.ID, err)
	}
	return kept, nil
}

// Kept returns the kept entries, oldest first.
func (s Spool) Kept() ([]Entry, error) {
	des, err := os.ReadDir(s.Dir)
	if err != nil {
		return nil, fmt.Errorf("spool %s: %w", s.Dir, err)
	}
	var kept []Entry
	for _, de := range des {
		id, ok := strings.CutSuffix(de.Name(), KeptSuffix)
		if ok && corepipe.ValidID(id) && de.IsDir() && de.Type()&fs.ModeSymlink == 0 {
			kept = append(kept, Entry{ID: id, Dir: filepath.Join(s.Dir, de.Name())})
		}
	}
	slices.SortFunc(kept, func(a, b Entry) int { return strings.Compare(a.ID, b.ID) })
	return kept, nil
}

// KeptEntry returns the kept entry of crash id, if the spool still has it.
func (s Spool) KeptEntry(id string) (Entry, bool) {
	if !corepipe.ValidID(id) {
		return Entry{}, false
	}
	dir := filepath.Join(s.Dir, id+KeptSuffix)
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
		return Entry{}, false
	}
	return Entry{ID: id, Dir: dir}, true
}

// Size is the bytes of the entry's files.
func (e Entry) Size() int64 {
	des, err := os.ReadDir(e.Dir)
	if err != nil {
		return 0
	}
	var n int64
	for _, de := range des {
		if fi, err := de.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}
