package collector

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/collector/spool"
	"github.com/corepipe/corepipe/internal/testkit"
)

// TestMain checks that no run leaves a goroutine behind (zstd encoders,
// deadline watchers).
func TestMain(m *testing.M) { testkit.VerifyTestMain(m) }

// fixtureProc copies testdata/proc into a temporary procfs, with
// <pid>/exe linked to exe as the kernel's magic link would be, and returns
// its root. edit may rewrite files of process 4242 before use.
func fixtureProc(t testing.TB, exe string, edit map[string][]byte) string {
	t.Helper()
	root := t.TempDir()
	err := filepath.WalkDir("testdata/proc", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel("testdata/proc", p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(root, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(root, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	if exe != "" {
		if err := os.Symlink(exe, filepath.Join(root, "4242", "exe")); err != nil {
			t.Fatal(err)
		}
	}
	for name, b := range edit {
		if err := os.WriteFile(filepath.Join(root, "4242", name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// testExe is the test binary itself: a real ELF with a Go build ID.
func testExe(t testing.TB) string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// kernelArgv is what the kernel passes for the fixture process 4242.
func kernelArgv(rlimit string) []string {
	return strings.Fields("4242 7 4243 6 1700000000 " + rlimit + " 1000 2000 1 7 3")
}

func testConfig(t testing.TB, procRoot string) Config {
	return Config{SpoolDir: filepath.Join(t.TempDir(), "spool"), ProcRoot: procRoot, CgroupRoot: "testdata/cgroup", Hostname: "node-1"}
}

// coreStream generates n bytes that look like a core to a compressor: runs
// of zero pages between pages of pseudo-random data.
type coreStream struct {
	left int64
	rng  *rand.PCG
	page []byte
	off  int
}

func newCoreStream(n int64, seed uint64) *coreStream {
	return &coreStream{left: n, rng: rand.NewPCG(seed, seed), page: make([]byte, 4096), off: 4096}
}

func (s *coreStream) Read(p []byte) (int, error) {
	if s.left == 0 {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && s.left > 0 {
		if s.off == len(s.page) {
			s.fill()
		}
		k := copy(p[n:min(len(p), n+int(min(s.left, int64(len(s.page)-s.off))))], s.page[s.off:])
		n += k
		s.off += k
		s.left -= int64(k)
	}
	return n, nil
}

func (s *coreStream) fill() {
	s.off = 0
	if s.rng.Uint64()%3 == 0 {
		clear(s.page)
		return
	}
	for i := 0; i < len(s.page); i += 8 {
		v := s.rng.Uint64()
		for j := range 8 {
			s.page[i+j] = byte(v >> (8 * j))
		}
	}
}

func genCore(n int64) []byte {
	b, _ := io.ReadAll(newCoreStream(n, 1))
	return b
}

// openCore opens a spooled core.zst for reading, decompressed; closing it
// closes the file.
func openCore(t testing.TB, path string) (core io.Reader, closeCore func()) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	d, err := zstd.NewReader(f)
	if err != nil {
		f.Close()
		t.Fatal(err)
	}
	return d, func() { d.Close(); f.Close() }
}

func readCore(t testing.TB, path string) []byte {
	t.Helper()
	d, closeCore := openCore(t, path)
	defer closeCore()
	b, err := io.ReadAll(d)
	if err != nil {
		t.Fatalf("decompress %s: %v", path, err)
	}
	return b
}

// committed returns the only entry in the spool, failing on anything else
// left behind, .tmp included.
func committed(t testing.TB, spoolDir string) spool.Entry {
	t.Helper()
	entries, err := spool.Spool{Dir: spoolDir}.Entries()
	if err != nil {
		t.Fatal(err)
	}
	des, _ := os.ReadDir(spoolDir)
	if len(entries) != 1 {
		t.Fatalf("spool has %d committed entries (%v), want 1", len(entries), des)
	}
	for _, de := range des {
		if strings.HasSuffix(de.Name(), spool.TmpSuffix) {
			t.Errorf("left behind: %s", de.Name())
		}
	}
	return entries[0]
}

// committedManifest is the manifest of the only entry in the spool.
func committedManifest(t testing.TB, spoolDir string) *corepipe.Crash {
	t.Helper()
	m, err := committed(t, spoolDir).Manifest()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// procFile reads the file name of the fixture process in testdata/proc.
func procFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata/proc/4242", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func hasNote(c *corepipe.Crash, substr string) bool {
	for _, n := range c.Notes {
		if strings.Contains(n, substr) {
			return true
		}
	}
	return false
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func TestRun(t *testing.T) {
	exe := testExe(t)
	cfg := testConfig(t, fixtureProc(t, exe, nil))
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	cfg.Now = func() time.Time { return now }
	core := genCore(3<<20 + 17)

	c, err := Run(context.Background(), cfg, kernelArgv("18446744073709551615"), bytes.NewReader(core))
	if err != nil {
		t.Fatal(err)
	}
	e := committed(t, cfg.SpoolDir)
	m, err := e.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m, c) {
		t.Errorf("manifest on disk differs from the returned one:\n%+v\n%+v", m, c)
	}
	if m.ID != e.ID || !m.CapturedAt.Equal(now) || m.Node != "node-1" || m.Schema != corepipe.ManifestSchema {
		t.Errorf("header: id %s captured %s node %s schema %d", m.ID, m.CapturedAt, m.Node, m.Schema)
	}
	wantProc := corepipe.Process{
		PID: 4242, NSPID: 7, TID: 4243, Exe: exe, Comm: "api-server",
		Cmdline: []string{"/usr/local/bin/api-server", "--listen=:8080", "--config=/etc/api/config.yaml"},
		UID:     1000, GID: 2000, Threads: 12, RlimitCore: "unlimited", Dumpable: 1, RSS: 58332 << 10, Peak: 1290684 << 10,
	}
	if !reflect.DeepEqual(m.Process, wantProc) {
		t.Errorf("process = %+v\nwant      %+v", m.Process, wantProc)
	}
	if m.Signal != (corepipe.Signal{Number: 6, Name: "SIGABRT"}) {
		t.Errorf("signal = %+v", m.Signal)
	}
	if m.Container == nil || m.Container.ID != idA || m.Container.Runtime != "containerd" {
		t.Errorf("container = %+v", m.Container)
	}
	if want := map[string]string{"GOMAXPROCS": "2", "GOGC": "50", "GODEBUG": "madvdontneed=1,gctrace=0"}; !reflect.DeepEqual(m.Environ, want) {
		t.Errorf("environ = %v, want %v", m.Environ, want)
	}
	if m.Limits["Max core file size"] != "unlimited" {
		t.Errorf("limits = %v", m.Limits)
	}
	if m.CgroupLimits == nil || *m.CgroupLimits != fixtureCgroupLimits {
		t.Errorf("cgroup limits = %+v, want %+v", m.CgroupLimits, fixtureCgroupLimits)
	}

	if got := readCore(t, e.CorePath()); !bytes.Equal(got, core) {
		t.Errorf("core decompresses to %d bytes, want the %d written", len(got), len(core))
	}
	fi, _ := os.Stat(e.CorePath())
	if m.Core.Size != int64(len(core)) || m.Core.SHA256 != sha(core) || m.Core.StoredSize != fi.Size() || m.Core.Truncated || m.Core.Dropped != "" {
		t.Errorf("core artifact = %+v", m.Core)
	}
	if m.Core.StoredSize >= m.Core.Size {
		t.Errorf("stored %d bytes for a %d-byte core: not compressed", m.Core.StoredSize, m.Core.Size)
	}

	exeBytes, _ := os.ReadFile(exe)
	copied, err := os.ReadFile(e.ExecutablePath())
	if err != nil || !bytes.Equal(copied, exeBytes) {
		t.Fatalf("executable copy differs: %v", err)
	}
	x := m.Executable
	if !x.Found || x.Path != exe || x.SHA256 != sha(exeBytes) || x.Size != int64(len(exeBytes)) || x.GoBuildID == "" {
		t.Errorf("executable = %+v", x)
	}
	for _, name := range []string{spool.ManifestFile, spool.CoreFile, spool.ExecutableFile} {
		fi, _ := os.Lstat(filepath.Join(e.Dir, name))
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", name, fi.Mode())
		}
	}
	if fi, _ := os.Lstat(cfg.SpoolDir); fi.Mode().Perm() != 0o700 {
		t.Errorf("spool created with mode %v, want 0700", fi.Mode())
	}
	if hasNote(m, "pidfd") || hasNote(m, "not") {
		t.Errorf("unexpected notes: %q", m.Notes)
	}
}

func TestRunSecretsNeverStored(t *testing.T) {
	cfg := testConfig(t, fixtureProc(t, "", nil))
	if _, err := Run(context.Background(), cfg, kernelArgv("0"), strings.NewReader("")); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(committed(t, cfg.SpoolDir).Dir, spool.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"hunter2", "AKIAEXAMPLE", "DATABASE_PASSWORD", "PATH"} {
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("manifest contains %q", secret)
		}
	}
}

func TestRunHostileProcess(t *testing.T) {
	var cmdline bytes.Buffer
	cmdline.WriteString("../../../etc/passwd\x00line one\nline two\x00/\x00")
	for cmdline.Len() < 100<<10 {
		cmdline.WriteString("/a/b/../../c\n\"}{\x00")
	}
	procRoot := fixtureProc(t, "", map[string][]byte{
		"cmdline": cmdline.Bytes(),
		"comm":    []byte("../x/\n\x00\x1b[31m\n"),
	})
	cfg := testConfig(t, procRoot)
	c, err := Run(context.Background(), cfg, kernelArgv("0"), strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	m := committedManifest(t, cfg.SpoolDir)
	if !reflect.DeepEqual(m.Process, c.Process) {
		t.Errorf("hostile process did not round-trip through JSON:\n%q\n%q", m.Process.Cmdline[:3], c.Process.Cmdline[:3])
	}
	if got := m.Process.Cmdline[:3]; !reflect.DeepEqual(got, []string{"../../../etc/passwd", "line one\nline two", "/"}) {
		t.Errorf("cmdline starts %q", got)
	}
	if n := len(strings.Join(m.Process.Cmdline, "\x00")); n > maxCmdlineBytes {
		t.Errorf("cmdline kept %d bytes, cap is %d", n, maxCmdlineBytes)
	}
	if !hasNote(m, "cmdline cut") {
		t.Errorf("no note about the cut cmdline: %q", m.Notes)
	}
	if m.Process.Comm != "../x/\n\x00\x1b[31m" {
		t.Errorf("comm = %q", m.Process.Comm)
	}
	// Nothing was created from the hostile names.
	des, _ := os.ReadDir(cfg.SpoolDir)
	if len(des) != 1 {
		t.Errorf("spool holds %v", des)
	}
}

func TestRunRlimitZero(t *testing.T) {
	cfg := testConfig(t, fixtureProc(t, testExe(t), nil))
	pr, pw := io.Pipe()
	writeErr := make(chan error, 1)
	go func() {
		_, err := io.Copy(pw, newCoreStream(64<<20, 2))
		writeErr <- err
	}()
	c, err := Run(context.Background(), cfg, kernelArgv("0"), pr)
	if err != nil {
		t.Fatal(err)
	}
	// The kernel's writer sees a closed pipe: the dump was not drained.
	if err := <-writeErr; !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("kernel side write: %v, want a closed pipe", err)
	}
	e := committed(t, cfg.SpoolDir)
	if e.CorePath() != "" || e.ExecutablePath() != "" {
		t.Errorf("core %q executable %q kept with RLIMIT_CORE 0", e.CorePath(), e.ExecutablePath())
	}
	if c.Core.Dropped != spool.DroppedRlimit || c.Core.Size != 0 || c.Process.RlimitCore != "0" || !hasNote(c, "RLIMIT_CORE is 0") {
		t.Errorf("core %+v rlimit %q notes %q", c.Core, c.Process.RlimitCore, c.Notes)
	}
	if c.Executable.GoBuildID == "" || c.Executable.Found {
		t.Errorf("executable = %+v: identified, not copied", c.Executable)
	}
}

func TestRunMaxCoreSize(t *testing.T) {
	for _, tc := range []struct {
		name   string
		max    int64
		rlimit string
		core   int64
		want   int64
	}{
		{"max core size", 1<<20 + 123, "unlimited", 8 << 20, 1<<20 + 123},
		{"RLIMIT_CORE", 0, "65536", 8 << 20, 65536},
		{"exactly at the limit is not truncated", 1 << 20, "unlimited", 1 << 20, 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, fixtureProc(t, "", nil))
			cfg.MaxCoreSize = tc.max
			rl := tc.rlimit
			if rl == "unlimited" {
				rl = "18446744073709551615"
			}
			core := genCore(tc.core)
			c, err := Run(context.Background(), cfg, kernelArgv(rl), bytes.NewReader(core))
			if err != nil {
				t.Fatal(err)
			}
			got := readCore(t, committed(t, cfg.SpoolDir).CorePath())
			if !bytes.Equal(got, core[:tc.want]) {
				t.Errorf("stored core is %d bytes, not the first %d", len(got), tc.want)
			}
			truncated := tc.want < tc.core
			if c.Core.Truncated != truncated || c.Core.Size != tc.want || c.Core.SHA256 != sha(core[:tc.want]) {
				t.Errorf("core = %+v, want truncated=%v size %d", c.Core, truncated, tc.want)
			}
			if hasNote(c, "core longer than") != truncated {
				t.Errorf("notes %q", c.Notes)
			}
		})
	}
}

func TestRunSpoolFull(t *testing.T) {
	cfg := testConfig(t, fixtureProc(t, "", nil))
	cfg.SpoolKeepFree = 1 << 62
	c, err := Run(context.Background(), cfg, kernelArgv("18446744073709551615"), bytes.NewReader(genCore(1<<20)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Core.Dropped != spool.DroppedSpoolFull || committed(t, cfg.SpoolDir).CorePath() != "" {
		t.Errorf("core = %+v, notes %q", c.Core, c.Notes)
	}

	// A core that does not fit whole keeps the prefix that does, and the
	// entry's files stay under max use.
	cfg = testConfig(t, fixtureProc(t, "", nil))
	cfg.SpoolMaxUse = 100 << 10
	core := genCore(1 << 20)
	c, err = Run(context.Background(), cfg, kernelArgv("18446744073709551615"), bytes.NewReader(core))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Core.Truncated || c.Core.Size == 0 || !hasNote(c, "spool max use") {
		t.Errorf("core = %+v, notes %q", c.Core, c.Notes)
	}
	e := committed(t, cfg.SpoolDir)
	if got := readCore(t, e.CorePath()); !bytes.Equal(got, core[:c.Core.Size]) || c.Core.SHA256 != sha(got) {
		t.Errorf("stored core is not the first %d bytes", c.Core.Size)
	}
	if used := testkit.FilesSize(cfg.SpoolDir); used > cfg.SpoolMaxUse {
		t.Errorf("spool holds %d bytes, max use %d", used, cfg.SpoolMaxUse)
	}
	if _, err := os.Lstat(filepath.Join(e.Dir, reservationFile)); err == nil {
		t.Error("the committed entry kept its reservation")
	}
}

func TestRunExecutableMarker(t *testing.T) {
	exe := testExe(t)
	cfg := testConfig(t, fixtureProc(t, exe, nil))
	os.Mkdir(cfg.SpoolDir, 0o700)
	id, sum := markStored(t, cfg.SpoolDir, exe, "")
	c, err := Run(context.Background(), cfg, kernelArgv("18446744073709551615"), strings.NewReader("core"))
	if err != nil {
		t.Fatal(err)
	}
	e := committed(t, cfg.SpoolDir)
	if e.ExecutablePath() != "" {
		t.Error("executable copied although marked stored")
	}
	x := c.Executable
	if !x.Found || x.ContentID() != id || x.Path != exe || x.SHA256 != sum || !hasNote(c, "already stored") {
		t.Errorf("executable = %+v, notes %q", x, c.Notes)
	}
}

// TestRunExecutableMarkerOtherContent: a marker says something with this
// build ID is stored, but its content is another program's (a squatter
// with a forged build ID crashed first): the executable is copied anyway,
// so the agent can store it under its sha256.
func TestRunExecutableMarkerOtherContent(t *testing.T) {
	exe := testExe(t)
	cfg := testConfig(t, fixtureProc(t, exe, nil))
	os.Mkdir(cfg.SpoolDir, 0o700)
	other := strings.Repeat("ab", 32)
	markStored(t, cfg.SpoolDir, exe, other)
	c, err := Run(context.Background(), cfg, kernelArgv("18446744073709551615"), strings.NewReader("core"))
	if err != nil {
		t.Fatal(err)
	}
	e := committed(t, cfg.SpoolDir)
	if e.ExecutablePath() == "" || !c.Executable.Found || c.Executable.SHA256 == other || hasNote(c, "already stored") {
		t.Errorf("squatted build ID kept the executable out: %+v, notes %q", c.Executable, c.Notes)
	}
}

// markStored marks exe stored in spool as the agent does, with the content
// sum (the file's own when ""), and returns its content ID and sha256.
func markStored(t testing.TB, spoolDir, exe, sum string) (id, own string) {
	t.Helper()
	f, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gnu, goID, err := buildIDs(f)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	size, err := io.Copy(h, f)
	if err != nil {
		t.Fatal(err)
	}
	own = hex.EncodeToString(h.Sum(nil))
	if sum == "" {
		sum = own
	}
	id = corepipe.ExeArtifact{BuildID: gnu, GoBuildID: goID}.ContentID()
	if err := (spool.Spool{Dir: spoolDir}).MarkExecutableStored(id, spool.StoredExe{SHA256: sum, Size: size}); err != nil {
		t.Fatal(err)
	}
	return id, own
}

func TestRunPidFD(t *testing.T) {
	t.Run("mismatch", func(t *testing.T) {
		procRoot := fixtureProc(t, testExe(t), nil)
		os.WriteFile(filepath.Join(procRoot, "self", "fdinfo", "3"), []byte("pos:\t0\nPid:\t-1\n"), 0o644)
		cfg := testConfig(t, procRoot)
		c, err := Run(context.Background(), cfg, kernelArgv("18446744073709551615"), strings.NewReader("core"))
		if err != nil {
			t.Fatal(err)
		}
		if c.Process.Comm != "" || c.Process.Cmdline != nil || c.Executable.Found || !hasNote(c, "pidfd refers to pid -1") {
			t.Errorf("data of a possibly different process kept: %+v, notes %q", c.Process, c.Notes)
		}
		if committed(t, cfg.SpoolDir).CorePath() == "" {
			t.Error("core not kept: it comes from the kernel, not /proc")
		}
	})
	t.Run("absent", func(t *testing.T) {
		cfg := testConfig(t, fixtureProc(t, "", nil))
		c, err := Run(context.Background(), cfg, kernelArgv("0")[:10], strings.NewReader(""))
		if err != nil {
			t.Fatal(err)
		}
		if c.Process.Comm != "api-server" || !hasNote(c, "no pidfd") {
			t.Errorf("comm %q notes %q", c.Process.Comm, c.Notes)
		}
	})
}

func TestRunNoProcess(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	c, err := Run(context.Background(), cfg, []string{"garbage"}, strings.NewReader("core bytes"))
	if err != nil {
		t.Fatal(err)
	}
	if got := readCore(t, committed(t, cfg.SpoolDir).CorePath()); string(got) != "core bytes" {
		t.Errorf("core = %q", got)
	}
	if !hasNote(c, "arguments") || !hasNote(c, "/proc not read") {
		t.Errorf("notes %q", c.Notes)
	}
}

func TestRunRefusesSymlinkedSpool(t *testing.T) {
	target := t.TempDir()
	link := filepath.Join(t.TempDir(), "spool")
	os.Symlink(target, link)
	cfg := testConfig(t, fixtureProc(t, "", nil))
	cfg.SpoolDir = link
	if _, err := Run(context.Background(), cfg, kernelArgv("0"), strings.NewReader("")); err == nil {
		t.Fatal("wrote through a symlinked spool")
	}
	if des, _ := os.ReadDir(target); len(des) != 0 {
		t.Errorf("symlink target written: %v", des)
	}
}

// TestRunDeadline checks that a dump that stops flowing does not hold the
// collector: the read deadline interrupts a blocked read on a pollable pipe,
// and what was read is kept.
func TestRunDeadline(t *testing.T) {
	cfg := testConfig(t, fixtureProc(t, "", nil))
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	core := genCore(1 << 20)
	go w.Write(core)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	c, err := Run(ctx, cfg, kernelArgv("18446744073709551615"), r)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Core.Truncated || c.Core.Size != int64(len(core)) || !hasNote(c, "deadline") {
		t.Errorf("core = %+v, notes %q", c.Core, c.Notes)
	}
	if got := readCore(t, committed(t, cfg.SpoolDir).CorePath()); !bytes.Equal(got, core) {
		t.Errorf("kept %d bytes, want the %d read before the deadline", len(got), len(core))
	}
}

// TestRunConstantMemory streams a 512 MiB core and checks the heap never
// grows with it: the bound is on memory, whatever the time taken.
func TestRunConstantMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 512 MiB")
	}
	const size = 512 << 20
	const bound = 64 << 20
	cfg := testConfig(t, fixtureProc(t, testExe(t), nil))

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var peakHeap, peakSys uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			peakHeap, peakSys = max(peakHeap, ms.HeapInuse), max(peakSys, ms.Sys)
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	c, err := Run(context.Background(), cfg, kernelArgv("18446744073709551615"), newCoreStream(size, 3))
	close(done)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.New()
	io.Copy(want, newCoreStream(size, 3))
	if c.Core.Size != size || c.Core.SHA256 != hex.EncodeToString(want.Sum(nil)) {
		t.Errorf("core = %+v", c.Core)
	}
	t.Logf("512 MiB core: peak HeapInuse %d MiB, Sys %d → %d MiB, stored %d MiB", peakHeap>>20, before.Sys>>20, peakSys>>20, c.Core.StoredSize>>20)
	if peakHeap > bound {
		t.Errorf("peak HeapInuse %d MiB, bound %d MiB", peakHeap>>20, bound>>20)
	}
	if peakSys-before.Sys > bound {
		t.Errorf("Sys grew by %d MiB, bound %d MiB", (peakSys-before.Sys)>>20, bound>>20)
	}
}

func BenchmarkIngest(b *testing.B) {
	const size = 256 << 20
	exe := testExe(b)
	procRoot := fixtureProc(b, exe, nil)
	spool := b.TempDir()
	// Steady state on a node: the executable is already stored.
	markStored(b, spool, exe, "")
	cfg := Config{SpoolDir: spool, ProcRoot: procRoot, Hostname: "bench"}
	b.SetBytes(size)
	var stored int64
	for b.Loop() {
		c, err := Run(context.Background(), cfg, kernelArgv("18446744073709551615"), newCoreStream(size, 4))
		if err != nil {
			b.Fatal(err)
		}
		stored = c.Core.StoredSize
		b.StopTimer()
		os.RemoveAll(filepath.Join(spool, c.ID))
		b.StartTimer()
	}
	b.ReportMetric(float64(size)/float64(stored), "ratio")
}

// On a developer machine the shell's RLIMIT_CORE of 0 is no decision; the
// dev settings keep the core anyway, and say so.
func TestRunIgnoreRlimitCore(t *testing.T) {
	cfg := testConfig(t, fixtureProc(t, testExe(t), nil))
	cfg.IgnoreRlimitCore = true
	core := []byte("\x7fELF core bytes")
	c, err := Run(context.Background(), cfg, kernelArgv("0"), bytes.NewReader(core))
	if err != nil {
		t.Fatal(err)
	}
	e := committed(t, cfg.SpoolDir)
	if got := readCore(t, e.CorePath()); !bytes.Equal(got, core) || c.Core.Dropped != "" {
		t.Errorf("core %q dropped %q, want it kept", got, c.Core.Dropped)
	}
	if !hasNote(c, "RLIMIT_CORE 0 ignored") {
		t.Errorf("notes %q do not say the limit was ignored", c.Notes)
	}
}

func TestSettingsRoundTrip(t *testing.T) {
	spoolDir := t.TempDir()
	if s, err := spool.LoadSettings(spoolDir); err != nil || !reflect.DeepEqual(s, spool.Settings{}) {
		t.Fatalf("settings of a fresh spool: %+v, %v", s, err)
	}
	want := spool.Settings{MaxCoreSize: 1 << 30, MaxUse: 10 << 30, KeepFree: 1 << 30, EnvAllow: []string{"GOGC"}, IgnoreRlimitCore: true,
		RateLimit: 5, RateWindow: time.Hour}
	if err := want.Save(spoolDir); err != nil {
		t.Fatal(err)
	}
	got, err := spool.LoadSettings(spoolDir)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("LoadSettings = %+v, %v; want %+v", got, err, want)
	}
	var cfg Config
	cfg.Apply(got)
	if cfg.MaxCoreSize != 1<<30 || cfg.SpoolMaxUse != 10<<30 || cfg.SpoolKeepFree != 1<<30 || !cfg.IgnoreRlimitCore || cfg.EnvAllowlist[0] != "GOGC" ||
		cfg.RateLimit != 5 || cfg.RateWindow != time.Hour {
		t.Errorf("applied %+v", cfg)
	}
	if err := os.WriteFile(filepath.Join(spoolDir, spool.SettingsFile), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := spool.LoadSettings(spoolDir); err == nil {
		t.Error("a corrupt settings file loaded without error")
	}
}
