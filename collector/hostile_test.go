package collector

import (
	"context"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/collector/spool"
	"github.com/corepipe/corepipe/internal/testkit"
)

// sparseCopy writes a file of size bytes whose first bytes are those of
// src's first head bytes, the rest a hole: it costs the disk only head.
func sparseCopy(t testing.TB, src string, head int, size int64) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "sparse-exe")
	if err := os.WriteFile(p, b[:min(head, len(b))], 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRunSparseExecutable: a 16 GiB executable that holds 64 KiB is
// neither hashed nor copied, whether its core is kept or not, and the
// collector says why; before, it was hashed whole (36 s) and its copy wrote
// the holes out.
func TestRunSparseExecutable(t *testing.T) {
	exe := sparseCopy(t, testExe(t), 64<<10, 16<<30)
	for _, rlimit := range []string{"18446744073709551615", "0"} {
		cfg := testConfig(t, fixtureProc(t, exe, nil))
		// No size limit: the holes alone must be enough to refuse it.
		cfg.MaxExecutableSize = -1
		start := time.Now()
		c, err := Run(context.Background(), cfg, kernelArgv(rlimit), strings.NewReader("core"))
		if err != nil {
			t.Fatal(err)
		}
		e := committed(t, cfg.SpoolDir)
		t.Logf("rlimit %s: %v, notes %q", rlimit, time.Since(start), c.Notes)
		if e.ExecutablePath() != "" || c.Executable.Found || c.Executable.SHA256 != "" {
			t.Errorf("rlimit %s: sparse executable captured: %+v", rlimit, c.Executable)
		}
		want := "sparse"
		if rlimit == "0" {
			want = "not hashed or copied"
		}
		if !hasNote(c, want) {
			t.Errorf("rlimit %s: no note %q: %q", rlimit, want, c.Notes)
		}
		if u := testkit.FilesSize(cfg.SpoolDir); u > 1<<20 {
			t.Errorf("spool holds %d bytes", u)
		}
	}
}

// TestRunExecutableKeepsHoles: a copy of an executable with a few MiB of
// holes keeps them as holes, and its hash is that of the whole file.
func TestRunExecutableKeepsHoles(t *testing.T) {
	const size = 8 << 20
	exe := sparseCopy(t, testExe(t), 64<<10, size)
	// Data at the end as well, so a hole lies between two extents.
	f, err := os.OpenFile(exe, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("tail"), size-4)
	f.Close()
	cfg := testConfig(t, fixtureProc(t, exe, nil))
	c, err := Run(context.Background(), cfg, kernelArgv("18446744073709551615"), strings.NewReader("core"))
	if err != nil {
		t.Fatal(err)
	}
	e := committed(t, cfg.SpoolDir)
	if e.ExecutablePath() == "" {
		t.Fatalf("not copied: %q", c.Notes)
	}
	want, _ := os.ReadFile(exe)
	got, _ := os.ReadFile(e.ExecutablePath())
	if string(got) != string(want) || c.Executable.SHA256 != sha(want) || c.Executable.Size != size {
		t.Errorf("copy differs from the executable (%d of %d bytes), or sha256 %s is not its", len(got), len(want), c.Executable.SHA256)
	}
	var st syscall.Stat_t
	syscall.Stat(e.ExecutablePath(), &st)
	if st.Blocks*512 > 1<<20 {
		t.Errorf("copy allocates %d bytes: the holes were written out", st.Blocks*512)
	}
}

// TestRunExecutableSizeLimit: an executable over the limit is refused.
func TestRunExecutableSizeLimit(t *testing.T) {
	exe := testExe(t)
	cfg := testConfig(t, fixtureProc(t, exe, nil))
	cfg.MaxExecutableSize = 1 << 10
	c, err := Run(context.Background(), cfg, kernelArgv("18446744073709551615"), strings.NewReader("core"))
	if err != nil {
		t.Fatal(err)
	}
	if committed(t, cfg.SpoolDir).ExecutablePath() != "" || !hasNote(c, "over the limit") {
		t.Errorf("executable over the limit: %+v, notes %q", c.Executable, c.Notes)
	}
}

// TestRateLimitSquatter: a program claiming another's build ID, from
// another file, spends only its own budget: the victim's crash keeps its
// core. Before, the build ID alone chose the bucket.
func TestRateLimitSquatter(t *testing.T) {
	victim := testExe(t)
	b, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	// Same bytes, so the same build IDs, in another file.
	squatter := filepath.Join(t.TempDir(), "squatter")
	if err := os.WriteFile(squatter, b, 0o755); err != nil {
		t.Fatal(err)
	}
	spoolDir := filepath.Join(t.TempDir(), "spool")
	run := func(exe string, uid int) *Crashed {
		cfg := Config{SpoolDir: spoolDir, ProcRoot: fixtureProc(t, exe, nil), Hostname: "n", RateLimit: 1, RateWindow: time.Hour}
		argv := kernelArgv("18446744073709551615")
		argv[6] = strconv.Itoa(uid)
		c, err := Run(context.Background(), cfg, argv, strings.NewReader("core"))
		if err != nil {
			t.Fatal(err)
		}
		return &Crashed{c.Core.Dropped, c.Notes}
	}
	if c := run(squatter, 1000); c.Dropped != "" {
		t.Fatalf("squatter's first crash: %+v", c)
	}
	if c := run(squatter, 1000); c.Dropped != spool.DroppedRateLimited {
		t.Fatalf("squatter's second crash not limited: %+v", c)
	}
	if c := run(victim, 1000); c.Dropped != "" {
		t.Errorf("victim's crash limited by the squatter's: %+v", c)
	}
	if c := run(squatter, 1001); c.Dropped != "" {
		t.Errorf("another user's crash of the same file limited: %+v", c)
	}
}

// Crashed is what TestRateLimitSquatter looks at.
type Crashed struct {
	Dropped string
	Notes   []string
}

// TestRunSlotsBusy: with every collector slot held, a crash keeps its
// manifest, says why, and its core is not read.
func TestRunSlotsBusy(t *testing.T) {
	cfg := testConfig(t, fixtureProc(t, testExe(t), nil))
	cfg.MaxCollectors, cfg.SlotWait = 2, 50*time.Millisecond
	root, err := openSpoolRoot(cfg.SpoolDir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	var held []*os.File
	for range 2 {
		f, err := takeSlot(root, 2, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, f)
	}
	p := newPipedCore(make([]byte, 4<<20))
	c, err := Run(context.Background(), cfg, kernelArgv("18446744073709551615"), p.r)
	if err != nil {
		t.Fatal(err)
	}
	if c.Core.Dropped != spool.DroppedBusy || !hasNote(c, "collector slots stayed busy") || committed(t, cfg.SpoolDir).CorePath() != "" {
		t.Errorf("busy slots: core %+v, notes %q", c.Core, c.Notes)
	}
	if <-p.done {
		t.Error("the core was read although no slot was free")
	}
	if c.Executable.Found {
		t.Error("executable copied for a dropped core")
	}
	// A slot freed is taken again.
	held[0].Close()
	c, err = Run(context.Background(), cfg, kernelArgv("18446744073709551615"), strings.NewReader("core"))
	if err != nil || c.Core.Dropped != "" {
		t.Errorf("with a slot free: %+v, %v", c.Core, err)
	}
	held[1].Close()
}

// TestSlotsBound: many collectors at once never hold more than n slots.
func TestSlotsBound(t *testing.T) {
	root, err := os.OpenRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	const n = 3
	var got []*os.File
	for range n {
		f, err := takeSlot(root, n, 10*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, f)
	}
	if f, err := takeSlot(root, n, 10*time.Millisecond); err == nil {
		f.Close()
		t.Fatal("a slot past the bound was granted")
	}
	for i, f := range got {
		// Each slot is its own lock file.
		for _, g := range got[i+1:] {
			a, _ := f.Stat()
			b, _ := g.Stat()
			if os.SameFile(a, b) {
				t.Fatal("two collectors share a slot")
			}
		}
		f.Close()
	}
}

// TestRunDumpable: %d is recorded, so the API and notifier can apply the
// suid_dumpable=2 policy.
func TestRunDumpable(t *testing.T) {
	cfg := testConfig(t, fixtureProc(t, testExe(t), nil))
	argv := kernelArgv("18446744073709551615")
	argv[8] = "2"
	c, err := Run(context.Background(), cfg, argv, strings.NewReader("core"))
	if err != nil {
		t.Fatal(err)
	}
	m := committedManifest(t, cfg.SpoolDir)
	if m.Process.Dumpable != 2 || !hasNote(c, "suid_dumpable=2") {
		t.Errorf("dumpable %d, notes %q", m.Process.Dumpable, c.Notes)
	}
}

// TestAbandon: the unfinished entry of a collector giving up is removed.
func TestAbandon(t *testing.T) {
	spool := t.TempDir()
	tmp := "01JABANDONED0000000000000.tmp"
	if err := os.Mkdir(filepath.Join(spool, tmp), 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(spool, tmp, "core.zst"), []byte("half"), 0o600)
	forget := track(spool, tmp)
	defer forget()
	if err := Abandon(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path.Join(spool, tmp)); !os.IsNotExist(err) {
		t.Errorf("unfinished entry left: %v", err)
	}
}

// TestRunExecutableHashCached: a marked executable is hashed once per file
// identity; a file changed since (a new mtime or ctime) is hashed again.
func TestRunExecutableHashCached(t *testing.T) {
	b, err := os.ReadFile(testExe(t))
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(t.TempDir(), "exe")
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, fixtureProc(t, exe, nil))
	os.Mkdir(cfg.SpoolDir, 0o700)
	id, own := markStored(t, cfg.SpoolDir, exe, "")
	run := func() *corepipe.Crash {
		t.Helper()
		c, err := Run(context.Background(), cfg, kernelArgv("18446744073709551615"), strings.NewReader("core"))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := run(); c.Executable.SHA256 != own || !hasNote(c, "already stored") {
		t.Fatalf("first crash: %+v, notes %q", c.Executable, c.Notes)
	}
	des, _ := os.ReadDir(filepath.Join(cfg.SpoolDir, spool.HashCacheDir))
	if len(des) != 1 {
		t.Fatalf("%d cache entries, want 1", len(des))
	}
	// Make the cache say something the file does not: only a crash that
	// reads the cache instead of the file can report it.
	fake := strings.Repeat("5a", 32)
	os.WriteFile(filepath.Join(cfg.SpoolDir, spool.HashCacheDir, des[0].Name()), []byte(fake+"\n"), 0o600)
	(spool.Spool{Dir: cfg.SpoolDir}).MarkExecutableStored(id, spool.StoredExe{SHA256: fake, Size: int64(len(b))})
	if c := run(); c.Executable.SHA256 != fake {
		t.Errorf("second crash hashed the file again: %s", c.Executable.SHA256)
	}
	later := time.Now().Add(time.Hour)
	os.Chtimes(exe, later, later)
	if c := run(); c.Executable.SHA256 != own || !c.Executable.Found || hasNote(c, "already stored") {
		t.Errorf("changed file taken from the cache: %+v, notes %q", c.Executable, c.Notes)
	}
	if n, err := (spool.Spool{Dir: cfg.SpoolDir}).CleanHashCache(0); err != nil || n != 2 {
		t.Errorf("CleanHashCache = %d, %v; want both entries", n, err)
	}
}

// TestRunSlotsUnavailable: slots that cannot be taken at all (a file where
// the directory should be) do not cost the crash its core.
func TestRunSlotsUnavailable(t *testing.T) {
	cfg := testConfig(t, fixtureProc(t, testExe(t), nil))
	os.MkdirAll(cfg.SpoolDir, 0o700)
	os.WriteFile(filepath.Join(cfg.SpoolDir, spool.SlotsDir), nil, 0o600)
	c, err := Run(context.Background(), cfg, kernelArgv("18446744073709551615"), strings.NewReader("core"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Core.Dropped != "" || c.Core.Size != 4 || !hasNote(c, "collector slots not checked") {
		t.Errorf("core %+v, notes %q", c.Core, c.Notes)
	}
}
