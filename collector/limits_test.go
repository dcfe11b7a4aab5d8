package collector

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/collector/spool"
	"github.com/corepipe/corepipe/internal/testkit"
)

// pipedCore feeds core through a pipe the way the kernel does and reports,
// once Run returned, whether the collector read all of it.
type pipedCore struct {
	r    *io.PipeReader
	done chan bool
}

func newPipedCore(core []byte) *pipedCore {
	r, w := io.Pipe()
	p := &pipedCore{r: r, done: make(chan bool, 1)}
	go func() {
		_, err := w.Write(core)
		w.Close()
		p.done <- err == nil
	}()
	return p
}

// TestRunRateLimit runs crashes of one executable side by side, as
// concurrent collector processes would: exactly the first N keep their
// core, the others keep a manifest saying why, without the core being read.
func TestRunRateLimit(t *testing.T) {
	exe := testExe(t)
	procRoot := fixtureProc(t, exe, nil)
	spoolDir := filepath.Join(t.TempDir(), "spool")
	var now atomic.Int64
	now.Store(time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	cfg := Config{SpoolDir: spoolDir, ProcRoot: procRoot, Hostname: "node-1", RateLimit: 3, RateWindow: time.Minute,
		Now: func() time.Time { return time.Unix(0, now.Load()) }}
	core := genCore(256 << 10)

	const crashes = 20
	var wg sync.WaitGroup
	results := make([]*corepipe.Crash, crashes)
	drained := make([]bool, crashes)
	for i := range crashes {
		wg.Go(func() {
			p := newPipedCore(core)
			c, err := Run(context.Background(), cfg, kernelArgv("18446744073709551615"), p.r)
			if err != nil {
				t.Error(err)
				return
			}
			results[i], drained[i] = c, <-p.done
		})
	}
	wg.Wait()
	kept := 0
	for i, c := range results {
		if c == nil {
			continue
		}
		switch c.Core.Dropped {
		case "":
			kept++
			if c.Core.Size != int64(len(core)) || !drained[i] {
				t.Errorf("kept core %+v, drained %v", c.Core, drained[i])
			}
		case spool.DroppedRateLimited:
			if !hasNote(c, "rate limited: crash") || !hasNote(c, "only the first 3 per 1m0s") {
				t.Errorf("rate-limited crash without a note saying so: %q", c.Notes)
			}
			if drained[i] {
				t.Error("the core of a rate-limited crash was read")
			}
			if c.Executable.Found {
				t.Error("the executable of a rate-limited crash was copied")
			}
		default:
			t.Errorf("core dropped as %q: %q", c.Core.Dropped, c.Notes)
		}
	}
	if kept != 3 {
		t.Errorf("%d of %d crashes kept their core, want 3", kept, crashes)
	}
	entries, err := spool.Spool{Dir: spoolDir}.Entries()
	if err != nil || len(entries) != crashes {
		t.Fatalf("%d entries, %v; want %d", len(entries), err, crashes)
	}

	// Another executable has its own budget.
	other := fixtureProc(t, "", nil)
	c, err := Run(context.Background(), Config{SpoolDir: spoolDir, ProcRoot: other, RateLimit: 3, RateWindow: time.Minute, Now: cfg.Now},
		kernelArgv("18446744073709551615"), strings.NewReader("core"))
	if err != nil || c.Core.Dropped != "" {
		t.Errorf("another executable's crash: %+v, %v", c, err)
	}

	// Once the window is over, the executable gets its budget back; the
	// agent's cleaning removes the state of windows that ended.
	now.Add(int64(time.Minute))
	if n, err := (spool.Spool{Dir: spoolDir}).CleanRateLimits(time.Unix(0, now.Load())); err != nil || n != 2 {
		t.Errorf("CleanRateLimits removed %d, %v; want the 2 ended windows", n, err)
	}
	c, err = Run(context.Background(), cfg, kernelArgv("18446744073709551615"), bytes.NewReader(core))
	if err != nil || c.Core.Dropped != "" {
		t.Errorf("crash in a new window: %+v, %v", c.Core, err)
	}
}

// TestRunSpoolLedger runs collectors side by side against a small max use
// and checks, sampling while they write, that the spool never holds more,
// while every crash keeps its manifest and every kept core is whole or a
// valid prefix.
func TestRunSpoolLedger(t *testing.T) {
	procRoot := fixtureProc(t, "", nil)
	spoolDir := filepath.Join(t.TempDir(), "spool")
	const maxUse = 6 << 20
	cfg := Config{SpoolDir: spoolDir, ProcRoot: procRoot, Hostname: "node-1", SpoolMaxUse: maxUse}
	if err := os.Mkdir(spoolDir, 0o700); err != nil {
		t.Fatal(err)
	}

	stopSampling := testkit.SamplePeak(spoolDir, time.Millisecond)

	const crashes = 16
	cores := make([][]byte, crashes)
	results := make([]*corepipe.Crash, crashes)
	var wg sync.WaitGroup
	for i := range crashes {
		cores[i], _ = io.ReadAll(newCoreStream(2<<20, uint64(i+10)))
		wg.Go(func() {
			c, err := Run(context.Background(), cfg, kernelArgv("18446744073709551615"), newPipedCore(cores[i]).r)
			if err != nil {
				t.Error(err)
			}
			results[i] = c
		})
	}
	wg.Wait()
	peak := stopSampling()

	final := testkit.FilesSize(spoolDir)
	t.Logf("peak %d, final %d bytes of %d", peak, final, maxUse)
	if peak > maxUse || final > maxUse {
		t.Errorf("spool held %d bytes at its peak, %d at the end; max use %d", peak, final, maxUse)
	}
	entries, err := spool.Spool{Dir: spoolDir}.Entries()
	if err != nil || len(entries) != crashes {
		t.Fatalf("%d entries, %v; want one per crash", len(entries), err)
	}
	whole, cut, dropped := 0, 0, 0
	for i, c := range results {
		switch {
		case c == nil:
		case c.Core.Dropped == spool.DroppedSpoolFull:
			dropped++
		case c.Core.Dropped != "":
			t.Errorf("core dropped as %q: %q", c.Core.Dropped, c.Notes)
		default:
			e := spool.Entry{ID: c.ID, Dir: filepath.Join(spoolDir, c.ID)}
			got := readCore(t, e.CorePath())
			if !bytes.Equal(got, cores[i][:c.Core.Size]) || sha(got) != c.Core.SHA256 {
				t.Errorf("crash %d: stored core is not the first %d bytes of its core", i, c.Core.Size)
			}
			if c.Core.Truncated {
				cut++
			} else {
				whole++
			}
		}
	}
	t.Logf("%d whole, %d cut, %d dropped", whole, cut, dropped)
	if whole == 0 || dropped+cut == 0 {
		t.Errorf("%d whole, %d cut, %d dropped: the limit was not exercised", whole, cut, dropped)
	}
}

// TestRunHostileExecutable gives the executable a name with a newline, a
// space and shell syntax: it is data in the manifest, never a path in the
// spool, and the executable is still captured through the held handle.
func TestRunHostileExecutable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a dir\n..")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "evil\nname; rm -rf $HOME (deleted)")
	if err := os.Link(testExe(t), exe); err != nil {
		b, _ := os.ReadFile(testExe(t))
		if err := os.WriteFile(exe, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(exe)
	if err != nil {
		t.Fatal(err)
	}
	// As the kernel prints it: the newline escaped, the real inode.
	ino := strconv.FormatUint(fi.Sys().(*syscall.Stat_t).Ino, 10)
	escaped := strings.ReplaceAll(exe, "\n", "\\012")
	maps := "400000-401000 r--p 00000000 08:01 " + ino + " " + escaped + "\n" +
		"401000-402000 r-xp 00001000 08:01 " + ino + " " + escaped + "\n"
	cfg := testConfig(t, fixtureProc(t, exe, map[string][]byte{"maps": []byte(maps)}))
	c, err := Run(context.Background(), cfg, kernelArgv("18446744073709551615"), strings.NewReader("core"))
	if err != nil {
		t.Fatal(err)
	}
	m := committedManifest(t, cfg.SpoolDir)
	if m.Process.Exe != exe || !m.Executable.Found || c.Executable.GoBuildID == "" {
		t.Errorf("exe %q found %v, want %q captured", m.Process.Exe, m.Executable.Found, exe)
	}
	// The name ends in " (deleted)", the file is not.
	if m.Mappings == nil || m.Mappings.ExeBase != "0x400000" || m.Mappings.ExeDeleted || m.Mappings.Files != 1 || m.Mappings.FileBytes != 0x2000 {
		t.Errorf("mappings = %+v", m.Mappings)
	}
	des, _ := os.ReadDir(cfg.SpoolDir)
	for _, de := range des {
		if strings.ContainsAny(de.Name(), "\n ;$") {
			t.Errorf("spool holds a name from the process: %q", de.Name())
		}
	}
}

func TestParseMaps(t *testing.T) {
	long := strings.Repeat("x", maxMapsLine+10)
	in := strings.Join([]string{
		"55d0c6a00000-55d0c6a02000 r--p 00000000 08:01 1234                       /usr/local/bin/api server",
		"55d0c6a02000-55d0c6b00000 r-xp 00002000 08:01 1234                       /usr/local/bin/api server",
		"55d0c6c00000-55d0c6c21000 rw-p 00000000 00:00 0                          [heap]",
		"7f1c2a000000-7f1c2a200000 r--p 00000000 08:01 5678                       /usr/lib/libc.so.6",
		"7f1c2a400000-7f1c2a401000 rw-p 00000000 00:00 0 ",
		"garbage",
		"1000-2000 r--p 00000000 08:01 77 /" + long,
		"ffff-0 r--p 00000000 08:01 1 /backwards",
		"3000-4000 r--p 00000000 08:02 1234 /other/fs/same/inode",
	}, "\n") + "\n"
	m, notes := parseMaps(strings.NewReader(in), "/usr/local/bin/api server", 0)
	if m.ExeBase != "0x55d0c6a00000" || m.ExeDeleted || m.Files != 3 || m.FileBytes != 0x100000+0x200000+0x1000 || len(notes) != 0 {
		t.Errorf("mappings %+v, notes %q", m, notes)
	}
	// By inode, when the path does not match (a container's view of it).
	if m, _ := parseMaps(strings.NewReader(in), "/elsewhere", 1234); m.ExeBase != "0x3000" {
		t.Errorf("exe base by inode = %q", m.ExeBase)
	}
}

// Concurrent collectors read the clock before they take the lock: one that
// counts a moment before the window a faster one opened must not reset it,
// or a storm admits more cores than the limit.
func TestRateLimitOutOfOrderClock(t *testing.T) {
	root, err := os.OpenRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	t0 := time.Unix(1_800_000_000, 0)
	if ok, _, err := admit(root, "build:x", 1, time.Minute, t0); !ok || err != nil {
		t.Fatalf("first crash: admitted %v, %v", ok, err)
	}
	if ok, st, err := admit(root, "build:x", 1, time.Minute, t0.Add(-time.Millisecond)); ok || err != nil {
		t.Errorf("a crash read a millisecond before the window opened was admitted past the limit: %+v, %v", st, err)
	}
	if ok, _, _ := admit(root, "build:x", 1, time.Minute, t0.Add(-2*time.Minute)); !ok {
		t.Error("a clock stepped back by more than a window must start a new one")
	}
}

// TestLedgerCountsEntryCommittedWhileWalking: an entry renamed from .tmp to
// its ID between the walk's listing and its read of the entry is in the
// listing under neither name. It used to count as nothing, and collectors
// running side by side then overfilled the spool (seen in
// TestRunSpoolLedger, about one run in ten).
func TestLedgerCountsEntryCommittedWhileWalking(t *testing.T) {
	dir := t.TempDir()
	id := corepipe.NewID(time.Now())
	if err := os.Mkdir(filepath.Join(dir, id+spool.TmpSuffix), 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, id+spool.TmpSuffix, spool.CoreFile), make([]byte, 5000), 0o600)
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	ledgerListed = func() { os.Rename(filepath.Join(dir, id+spool.TmpSuffix), filepath.Join(dir, id)) }
	defer func() { ledgerListed = func() {} }()
	used, _, err := ledgerUsage(root)
	if err != nil || used != 5000 {
		t.Errorf("ledgerUsage = %d, %v; want the committed entry's 5000 bytes", used, err)
	}
}

// Entries the agent quarantined stay on the spool's disk and count against
// its limits: they used to count as nothing, a level too deep for the walk.
func TestLedgerCountsQuarantinedEntries(t *testing.T) {
	dir := t.TempDir()
	id := corepipe.NewID(time.Now())
	os.MkdirAll(filepath.Join(dir, spool.QuarantineDir, id), 0o700)
	os.WriteFile(filepath.Join(dir, spool.QuarantineDir, id, spool.CoreFile), make([]byte, 7000), 0o600)
	os.WriteFile(filepath.Join(dir, spool.QuarantineDir, id, "manifest.json"), make([]byte, 100), 0o600)
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	used, _, err := ledgerUsage(root)
	if err != nil || used != 7100 {
		t.Errorf("ledgerUsage = %d, %v; want the quarantined entry's 7100 bytes", used, err)
	}
}

// A walk's listing made while an entry is renamed can miss both its names
// (ext4 files them at different hashes), which the walk cannot repair: the
// collector renames its entry only under the ledger's lock, which every
// walk holds. TestRunSpoolLedger overfilled the spool about one run in 30
// before.
func TestCommitRenamesUnderLedgerLock(t *testing.T) {
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	q := newQuota(Config{SpoolDir: dir, SpoolMaxUse: 1 << 20}, root, "x"+spool.TmpSuffix)
	lock, err := spool.Lock(root, spool.LockFile, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var renamed atomic.Bool
	done := make(chan error, 1)
	go func() { done <- q.renaming(func() error { renamed.Store(true); return nil }) }()
	// Less than lockTimeout, after which the rename goes ahead anyway.
	time.Sleep(lockTimeout / 4)
	if renamed.Load() {
		t.Error("renamed while a walk holds the ledger's lock")
	}
	lock.Close()
	if err := <-done; err != nil || !renamed.Load() {
		t.Errorf("renaming = %v, renamed %v", err, renamed.Load())
	}
}
