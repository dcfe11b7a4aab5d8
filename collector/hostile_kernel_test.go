package collector

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/collector/corepattern"
	"github.com/corepipe/corepipe/collector/spool"
	"github.com/corepipe/corepipe/internal/testkit"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
)

// The hostile-process suite: real programs crash under the real kernel with
// the collector binary as core_pattern, each built the way a tenant who
// wants to hurt the node, or another tenant, would build it. Run as root:
//
//	go test -count=1 -v -run 'TestKernelHostile' ./collector

// kernelRig is a spool with the collector installed as the handler.
type kernelRig struct {
	dir, bin, spool string
}

func newKernelRig(t testing.TB, s spool.Settings) *kernelRig {
	t.Helper()
	crashtest.RequireRoot(t)
	// The crashing children inherit it: every core is wanted.
	lim := unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &lim); err != nil {
		t.Fatal(err)
	}
	dir := crashtest.PatternDir(t, "cph")
	// Programs run as another user must reach their executables.
	os.Chmod(dir, 0o755)
	r := &kernelRig{dir: dir, bin: buildCollector(t, dir), spool: filepath.Join(dir, "s")}
	if err := os.Mkdir(r.spool, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(r.spool); err != nil {
		t.Fatal(err)
	}
	return r
}

// with runs fn with the rig's collector as the kernel's handler.
func (r *kernelRig) with(t testing.TB, pipeLimit int, fn func()) {
	t.Helper()
	crashtest.WithPattern(t, corepattern.Settings{Pattern: corepattern.Pattern(r.bin, r.spool), PipeLimit: pipeLimit}, fn)
}

// holderProc is a started program waiting for the signal that kills it.
type holderProc struct {
	cmd   *exec.Cmd
	stdin io.Closer
}

// startHolder starts exe with args, GOTRACEBACK=crash, and waits for its
// "ready" line. attr, when set, is the process's attributes (credentials,
// cgroup).
func startHolder(t testing.TB, exe string, attr *syscall.SysProcAttr, args ...string) *holderProc {
	t.Helper()
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), "GOTRACEBACK=crash")
	cmd.SysProcAttr = attr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", exe, err)
	}
	if _, err := io.ReadFull(stdout, make([]byte, 6)); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("%s not ready: %v", exe, err)
	}
	return &holderProc{cmd: cmd, stdin: stdin}
}

// crash kills the holder with SIGABRT and returns how long the kernel held
// it: from the signal until it was reaped, which with core_pipe_limit set
// includes the collector letting go of the dump.
func (h *holderProc) crash(t testing.TB) time.Duration {
	t.Helper()
	start := time.Now()
	h.cmd.Process.Signal(syscall.SIGABRT)
	err := h.cmd.Wait()
	hold := time.Since(start)
	h.stdin.Close()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !ee.Sys().(syscall.WaitStatus).CoreDump() {
		t.Errorf("pid %d did not dump core: %v", h.cmd.Process.Pid, err)
	}
	return hold
}

// waitEntries waits (bounded) for n committed entries.
func waitEntries(t testing.TB, spoolDir string, n int) []spool.Entry {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		entries, _ := spool.Spool{Dir: spoolDir}.Entries()
		if len(entries) >= n {
			return entries
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(spoolDir, spool.LogFile))
			t.Fatalf("%d of %d entries committed after 3 minutes; collector.log:\n%s", len(entries), n, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// entryOf returns the entry of the crash of pid and its manifest.
func entryOf(t testing.TB, spoolDir string, pid int) (spool.Entry, *corepipe.Crash) {
	t.Helper()
	entries, _ := spool.Spool{Dir: spoolDir}.Entries()
	for _, e := range entries {
		m, err := e.Manifest()
		if err == nil && m.Process.PID == pid {
			return e, m
		}
	}
	t.Fatalf("no entry for pid %d", pid)
	return spool.Entry{}, nil
}

// collectorRSS is the peak RSS, in bytes, that the collector of crash id
// logged for itself (getrusage of its own process). The collector logs
// after it commits the entry: wait for the line, bounded.
func collectorRSS(t testing.TB, spoolDir, id string) int64 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(spoolDir, spool.LogFile))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			// Whatever the crash ID's key is called.
			if !strings.Contains(line, "="+id+" ") {
				continue
			}
			for _, field := range strings.Fields(line) {
				if v, ok := strings.CutPrefix(field, "maxrss_kib="); ok {
					n, err := strconv.ParseInt(v, 10, 64)
					if err != nil {
						t.Fatalf("maxrss %q", v)
					}
					return n << 10
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with maxrss for crash %s", id)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// bombExecutable turns a copy of exe into what issue 14 demonstrated: its
// section-name table claims 1 GiB at 15 GiB, and the file is 16 GiB, all
// of it a hole past the program. The loader reads neither, so it runs.
func bombExecutable(t testing.TB, exe, dst string) {
	t.Helper()
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	shoff, shstrndx := le.Uint64(b[40:]), uint64(le.Uint16(b[62:]))
	sh := b[shoff+shstrndx*64:]
	le.PutUint64(sh[24:], 15<<30)
	le.PutUint64(sh[32:], 1<<30)
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(dst, 16<<30); err != nil {
		t.Fatal(err)
	}
}

// TestKernelHostileSparseExecutable crashes a normal program and the same
// program as a 16 GiB sparse file claiming a 1 GiB .shstrtab. The
// collector's peak RSS must not grow with what the file claims (it reached
// 5.3 GiB before), the executable must be refused without being read
// (36 s of hashing before), and the spool must not fill with its holes.
func TestKernelHostileSparseExecutable(t *testing.T) {
	// No size limit: the holes alone must be enough to refuse it.
	r := newKernelRig(t, spool.Settings{MaxExecutableSize: -1})
	exe := crashtest.BuildGo(t, crashtest.Program{Files: map[string]string{"main.go": holder}})
	bomb := filepath.Join(r.dir, "bomb")
	bombExecutable(t, exe, bomb)

	var normalHold, bombHold time.Duration
	var normalPID, bombPID int
	r.with(t, 16, func() {
		h := startHolder(t, exe, nil, "0")
		normalPID = h.cmd.Process.Pid
		normalHold = h.crash(t)
		waitEntries(t, r.spool, 1)
		h = startHolder(t, bomb, nil, "0")
		bombPID = h.cmd.Process.Pid
		bombHold = h.crash(t)
		waitEntries(t, r.spool, 2)
	})
	_, normal := entryOf(t, r.spool, normalPID)
	be, m := entryOf(t, r.spool, bombPID)
	normalRSS, bombRSS := collectorRSS(t, r.spool, normal.ID), collectorRSS(t, r.spool, m.ID)
	t.Logf("collector peak RSS: normal crash %d KiB, 16 GiB sparse executable %d KiB", normalRSS>>10, bombRSS>>10)
	t.Logf("dying process held: normal crash %v, 16 GiB sparse executable %v", normalHold, bombHold)
	t.Logf("notes: %q", m.Notes)
	// A constant bound: the collector's own buffers (zstd, chunks) and
	// runtime, whatever the executable claims.
	const bound = 96 << 20
	if bombRSS > bound || bombRSS > normalRSS+16<<20 {
		t.Errorf("collector peak RSS %d MiB for the sparse executable (normal crash %d MiB, bound %d MiB)", bombRSS>>20, normalRSS>>20, bound>>20)
	}
	if be.ExecutablePath() != "" || m.Executable.Found || !hasNote(m, "sparse") {
		t.Errorf("sparse executable captured: %+v, notes %q", m.Executable, m.Notes)
	}
	if m.Core.Dropped != "" || be.CorePath() == "" {
		t.Errorf("the core was not kept: %+v", m.Core)
	}
	if m.Executable.GoBuildID == "" {
		t.Errorf("build ID not read from the bounded notes: %+v", m.Executable)
	}
	if u := testkit.FilesSize(r.spool); u > 64<<20 {
		t.Errorf("spool holds %d MiB", u>>20)
	}
}

// v2Root is where the cgroup v2 hierarchy is mounted ("" when it is not).
func v2Root(t testing.TB) string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if f := strings.Fields(pre); ok && len(f) >= 5 && strings.HasPrefix(post, "cgroup2 ") {
			return f[4]
		}
	}
	return ""
}

// TestKernelHostileDelegatedKubepods: a process in a delegated subtree (a
// systemd user manager's) names cgroups below it the way the kubelet names a
// victim pod's container, then crashes. It must not be attributed to that
// pod: the agent would annotate the victim and post about it.
func TestKernelHostileDelegatedKubepods(t *testing.T) {
	root := v2Root(t)
	if root == "" {
		t.Skip("SKIP: no cgroup v2 hierarchy mounted; TestParseCgroup covers the parser with fixtures")
	}
	r := newKernelRig(t, spool.Settings{})
	exe := crashtest.BuildGo(t, crashtest.Program{Files: map[string]string{"main.go": holder}})
	var id [32]byte
	rand.Read(id[:])
	victimID := hex.EncodeToString(id[:])
	rel := "/cptest-" + victimID[:8] + ".slice/user@1000.service/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" +
		testPodSD + ".slice/cri-containerd-" + victimID + ".scope"
	dir := filepath.Join(root, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Skipf("SKIP: cannot create cgroups under %s (%v); TestParseCgroup covers the parser with fixtures", root, err)
	}
	t.Cleanup(func() {
		for d := dir; d != root && strings.HasPrefix(d, root); d = filepath.Dir(d) {
			os.Remove(d)
		}
	})
	cg, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	var pid int
	r.with(t, 16, func() {
		h := startHolder(t, exe, &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}, "0")
		pid = h.cmd.Process.Pid
		h.crash(t)
		waitEntries(t, r.spool, 1)
	})
	_, m := entryOf(t, r.spool, pid)
	t.Logf("cgroup %q, container %+v", m.Cgroup, m.Container)
	if !strings.Contains(m.Cgroup, rel) {
		t.Fatalf("crash not in the crafted cgroup: %q (want …%s)", m.Cgroup, rel)
	}
	if m.Container != nil {
		t.Errorf("process in a delegated subtree attributed to container %+v", m.Container)
	}
}

// setuidCrasher is a C program that crashes at once.
const setuidCrasher = `#include <stdio.h>
#include <unistd.h>
#include <sys/prctl.h>
int main(void) {
	printf("uid %d euid %d dumpable %d\n", getuid(), geteuid(), prctl(PR_GET_DUMPABLE));
	fflush(stdout);
	volatile int *p = 0;
	*p = 1;
	return 0;
}
`

// TestKernelHostileSetuidDumpable: a setuid program run by another user
// crashes under suid_dumpable=2. The kernel passes %d=2; the manifest must
// say so (Process.Dumpable), so that its core goes only to admins and its
// message never to Slack.
func TestKernelHostileSetuidDumpable(t *testing.T) {
	r := newKernelRig(t, spool.Settings{})
	exe := crashtest.BuildC(t, setuidCrasher)
	suid := filepath.Join(r.dir, "suid")
	b, _ := os.ReadFile(exe)
	if err := os.WriteFile(suid, b, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chown(suid, 0, 0)
	if err := os.Chmod(suid, os.ModeSetuid|0o755); err != nil {
		t.Fatal(err)
	}
	const sysctl = "/proc/sys/fs/suid_dumpable"
	var res crashtest.Result
	r.with(t, 16, func() {
		prev, err := os.ReadFile(sysctl)
		if err != nil {
			t.Fatal(err)
		}
		defer os.WriteFile(sysctl, prev, 0o644)
		if err := os.WriteFile(sysctl, []byte("2\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(suid)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		var out bytes.Buffer
		cmd.Stdout = &out
		err = cmd.Run()
		t.Logf("setuid program: %s", bytes.TrimSpace(out.Bytes()))
		var ee *exec.ExitError
		if !errors.As(err, &ee) || !ee.Sys().(syscall.WaitStatus).CoreDump() {
			t.Fatalf("setuid program did not dump core: %v", err)
		}
		res.PID = cmd.Process.Pid
		waitEntries(t, r.spool, 1)
	})
	e, m := entryOf(t, r.spool, res.PID)
	t.Logf("process %+v, notes %q", m.Process, m.Notes)
	if m.Process.Dumpable != 2 || !hasNote(m, "suid_dumpable=2") {
		t.Errorf("dump mode not recorded: dumpable %d, notes %q", m.Process.Dumpable, m.Notes)
	}
	if m.Process.UID != 65534 {
		t.Errorf("uid %d, want the real uid 65534", m.Process.UID)
	}
	// Policy: kept, marked; who may read it is the API's decision.
	if m.Core.Dropped != "" || e.CorePath() == "" {
		t.Errorf("core not kept: %+v", m.Core)
	}
}

// zeroHolder maps os.Args[1] bytes it (almost) never touches: its core is
// that many bytes of zero pages through the pipe, which costs the crashing
// tenant nothing and the collector a pass over all of it.
const zeroHolder = `package main

import (
	"os"
	"strconv"
	"syscall"
)

var keep []byte

func main() {
	n, _ := strconv.Atoi(os.Args[1])
	var err error
	keep, err = syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		panic(err)
	}
	// One written byte gives the mapping its anon_vma, which is what makes
	// the kernel dump all of it; the rest reads as zero pages.
	keep[0] = 1
	os.Stdout.Write([]byte("ready\n"))
	os.Stdin.Read(make([]byte, 1))
}
`

// TestKernelHostileBurst: 64 programs under 64 distinct paths crash at once,
// each with a 1 GiB core of zero pages. At most max_collectors collectors
// store a core at a time (sampled from /proc/locks); the others keep their
// manifest, marked collectors_busy, and let their dump go. Every crash is
// recorded, the kernel's core_pipe_limit slots come free, and a crash right
// after the burst is captured whole.
func TestKernelHostileBurst(t *testing.T) {
	const (
		burst = 64
		slots = 2
		size  = 1 << 30
	)
	r := newKernelRig(t, spool.Settings{MaxCollectors: slots})
	exe := crashtest.BuildGo(t, crashtest.Program{Files: map[string]string{"main.go": zeroHolder}})
	normal := crashtest.BuildGo(t, crashtest.Program{Files: map[string]string{"main.go": holder}})
	b, _ := os.ReadFile(exe)
	paths := make([]string, burst)
	for i := range paths {
		paths[i] = filepath.Join(r.dir, fmt.Sprintf("z%02d", i))
		if err := os.WriteFile(paths[i], b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Create the slot files first, so the sampler knows their inodes.
	root, err := openSpoolRoot(r.spool)
	if err != nil {
		t.Fatal(err)
	}
	f, err := takeSlot(root, slots, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	root.Close()
	inodes := map[string]bool{}
	for i := range slots {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(r.spool, spool.SlotsDir, strconv.Itoa(i)), &st); err != nil {
			t.Fatal(err)
		}
		inodes[fmt.Sprintf(":%d ", st.Ino)] = true
	}

	var (
		maxHeld, maxCollectors int
		holds                  []time.Duration
		victimHold             time.Duration
		victimPID              int
		burstTime              time.Duration
	)
	r.with(t, burst, func() {
		hs := make([]*holderProc, burst)
		for i := range hs {
			hs[i] = startHolder(t, paths[i], nil, strconv.Itoa(size))
		}
		stop := make(chan struct{})
		var sampler sync.WaitGroup
		sampler.Go(func() {
			for {
				held, running := sampleSlots(inodes), countCollectors()
				maxHeld, maxCollectors = max(maxHeld, held), max(maxCollectors, running)
				select {
				case <-stop:
					return
				case <-time.After(2 * time.Millisecond):
				}
			}
		})
		start := time.Now()
		holds = make([]time.Duration, burst)
		var wg sync.WaitGroup
		for i, h := range hs {
			wg.Go(func() { holds[i] = h.crash(t) })
		}
		wg.Wait()
		burstTime = time.Since(start)
		v := startHolder(t, normal, nil, "0")
		victimPID = v.cmd.Process.Pid
		victimHold = v.crash(t)
		waitEntries(t, r.spool, burst+1)
		close(stop)
		sampler.Wait()
	})
	kept, busy := 0, 0
	entries, _ := spool.Spool{Dir: r.spool}.Entries()
	for _, e := range entries {
		m, err := e.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		if m.Process.PID == victimPID {
			if m.Core.Dropped != "" || m.Core.Truncated || e.CorePath() == "" {
				t.Errorf("the crash after the burst was not captured whole: %+v, notes %q", m.Core, m.Notes)
			}
			continue
		}
		switch m.Core.Dropped {
		case "":
			kept++
			if m.Core.Size < size || m.Core.Truncated {
				t.Errorf("kept core of %d bytes, truncated %v: %q", m.Core.Size, m.Core.Truncated, m.Notes)
			}
		case spool.DroppedBusy:
			busy++
			if !hasNote(m, "collector slots stayed busy") {
				t.Errorf("busy drop without its note: %q", m.Notes)
			}
		default:
			t.Errorf("core dropped as %q: %q", m.Core.Dropped, m.Notes)
		}
	}
	longest := time.Duration(0)
	for _, h := range holds {
		longest = max(longest, h)
	}
	t.Logf("%d crashes: %d cores kept, %d dropped as busy; at most %d slots held and %d collectors running at once",
		burst, kept, busy, maxHeld, maxCollectors)
	t.Logf("burst reaped in %v (longest hold %v); the crash after it held %v", burstTime, longest, victimHold)
	if len(entries) != burst+1 {
		t.Errorf("%d entries, want %d: a crash went unrecorded", len(entries), burst+1)
	}
	if maxHeld > slots {
		t.Errorf("%d slots held at once, bound %d", maxHeld, slots)
	}
	if busy == 0 || kept == 0 {
		t.Errorf("%d kept, %d busy: the bound was not exercised", kept, busy)
	}
}

// sampleSlots counts the slot files flock'd right now, from /proc/locks.
func sampleSlots(inodes map[string]bool) int {
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		return 0
	}
	n := 0
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		f := strings.Fields(string(line))
		// "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
		if len(f) >= 6 && f[1] == "FLOCK" {
			dev := f[5]
			if i := strings.LastIndexByte(dev, ':'); i >= 0 && inodes[dev[i:]+" "] {
				n++
			}
		}
	}
	return n
}

// countCollectors counts the running collector processes.
func countCollectors() int {
	des, _ := os.ReadDir("/proc")
	n := 0
	for _, de := range des {
		if _, err := strconv.Atoi(de.Name()); err != nil {
			continue
		}
		if b, err := os.ReadFile("/proc/" + de.Name() + "/comm"); err == nil && strings.HasPrefix(string(b), "corepipe-collec") {
			n++
		}
	}
	return n
}

// BenchmarkKernelHostileHold measures, for a normal program and for the same
// program as a 16 GiB sparse file claiming a 1 GiB .shstrtab, how long the
// kernel holds the crashing process (ns/op: from SIGABRT to reaped) and the
// collector's peak RSS (maxrss-KiB, the largest of the runs). As root:
//
//	go test -run '^$' -bench KernelHostileHold -benchtime 10x ./collector
func BenchmarkKernelHostileHold(b *testing.B) {
	r := newKernelRig(b, spool.Settings{MaxExecutableSize: -1})
	exe := crashtest.BuildGo(b, crashtest.Program{Files: map[string]string{"main.go": holder}})
	bomb := filepath.Join(r.dir, "bomb")
	bombExecutable(b, exe, bomb)
	for _, bc := range []struct{ name, exe string }{{"normal", exe}, {"sparse16G", bomb}} {
		b.Run(bc.name, func(b *testing.B) {
			var rss int64
			r.with(b, 16, func() {
				for b.Loop() {
					b.StopTimer()
					h := startHolder(b, bc.exe, nil, "0")
					b.StartTimer()
					h.crash(b)
					b.StopTimer()
					entries := waitEntries(b, r.spool, 1)
					m, err := entries[0].Manifest()
					if err != nil {
						b.Fatal(err)
					}
					rss = max(rss, collectorRSS(b, r.spool, m.ID))
					entries[0].Remove()
					b.StartTimer()
				}
			})
			b.ReportMetric(float64(rss>>10), "maxrss-KiB")
		})
	}
}
