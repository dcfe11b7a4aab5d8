package collector

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corepipe/corepipe/collector/corepattern"
	"github.com/corepipe/corepipe/collector/spool"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
)

// TestKernelCapturesGoCrash installs the real collector binary as the
// machine's core_pattern handler, crashes a Go program, and checks the entry
// the kernel's invocation committed.
func TestKernelCapturesGoCrash(t *testing.T) {
	crashtest.RequireRoot(t)
	dir := crashtest.PatternDir(t, "cp")
	bin := buildCollector(t, dir)
	spoolDir := filepath.Join(dir, "s")
	exe := crashtest.BuildGo(t, crashtest.Program{Files: map[string]string{"main.go": `package main

type server struct{ retries int }

func main() {
	var s *server
	println(s.retries)
}
`}})

	var res crashtest.Result
	crashtest.WithPattern(t, corepattern.Settings{Pattern: corepattern.Pattern(bin, spoolDir), PipeLimit: 16}, func() {
		res = crashtest.Run(t, time.Minute, exe, []string{"GOGC=77", "SECRET_TOKEN=hunter2"})
	})
	if res.Signal != syscall.SIGABRT {
		t.Fatalf("crasher did not die of SIGABRT: %s", res.Describe())
	}

	// The kernel lets the process go once the collector closes the pipe,
	// before it commits: poll, bounded.
	var e spool.Entry
	deadline := time.Now().Add(time.Minute)
	for {
		entries, _ := spool.Spool{Dir: spoolDir}.Entries()
		if len(entries) == 1 {
			e = entries[0]
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(spoolDir, spool.LogFile))
			t.Fatalf("no committed entry after a minute (%d entries); collector.log:\n%s", len(entries), log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	m, err := e.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("manifest: pid %d comm %q signal %v core %+v notes %q", m.Process.PID, m.Process.Comm, m.Signal, m.Core, m.Notes)
	wantExe, _ := filepath.EvalSymlinks(exe)
	if m.Process.PID != res.PID || m.Process.Comm != "crasher" || m.Signal.Number != 6 || m.Signal.Name != "SIGABRT" || m.Process.Exe != wantExe {
		t.Errorf("manifest process %+v signal %+v; want pid %d, comm crasher, SIGABRT, exe %s", m.Process, m.Signal, res.PID, wantExe)
	}
	if m.Environ["GOGC"] != "77" || m.Environ["GOTRACEBACK"] != "crash" || len(m.Environ) != 2 {
		t.Errorf("environ = %v", m.Environ)
	}
	for _, n := range m.Notes {
		if strings.Contains(n, "pidfd") {
			t.Logf("kernel without a usable %%F: %s", n)
		}
	}
	if !m.Executable.Found || m.Executable.GoBuildID == "" || e.ExecutablePath() == "" {
		t.Errorf("executable = %+v, path %q", m.Executable, e.ExecutablePath())
	}

	d, closeCore := openCore(t, e.CorePath())
	defer closeCore()
	var hdr [18]byte
	if _, err := io.ReadFull(d, hdr[:]); err != nil {
		t.Fatalf("decompress core: %v", err)
	}
	if string(hdr[:4]) != elf.ELFMAG || elf.Type(hdr[16]) != elf.ET_CORE {
		t.Errorf("core.zst does not hold an ELF core: % x", hdr)
	}
	if m.Core.Size < 4096 || m.Core.Truncated || m.Core.Dropped != "" {
		t.Errorf("core = %+v", m.Core)
	}
}

// buildCollector builds the collector command into dir.
func buildCollector(t testing.TB, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "corepipe-collector")
	build := exec.Command("go", "build", "-o", bin, "github.com/corepipe/corepipe/cmd/corepipe-collector")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build collector: %v\n%s", err, out)
	}
	return bin
}

// holder fills size bytes of memory the way a core's pages look to a
// compressor (a third zero pages, the rest random), says "ready", and waits
// for the signal that kills it.
const holder = `package main

import (
	"math/rand/v2"
	"os"
	"strconv"
)

var keep []byte

func main() {
	n, _ := strconv.Atoi(os.Args[1])
	keep = make([]byte, n)
	rng := rand.NewChaCha8([32]byte{7})
	for off := 0; off < n; off += 4096 {
		if off/4096%3 != 0 {
			rng.Read(keep[off:min(n, off+4096)])
		}
	}
	os.Stdout.Write([]byte("ready\n"))
	os.Stdin.Read(make([]byte, 1))
}
`

// BenchmarkKernelPipeHold measures how long the kernel holds a crashing
// process whose core goes through the collector: from the signal to the
// process being reaped, which with core_pipe_limit set waits until the
// handler has closed its stdin. The baselines are the same crash with
// core_pattern naming a plain file and piping to `zstd -1 -T0` (when zstd
// is installed). Each iteration crashes once per handler in turn, so a busy
// machine slows them alike; the metrics are each handler's mean hold
// (pipe-s, zstd-s, file-s) and pipe/zstd, the ratio of the means. ns/op
// counts all of them and the holders' fill. Run with -benchtime 3x
// (scripts/bench-collector.sh with BENCH_HOLD=1 prints them per round).
func BenchmarkKernelPipeHold(b *testing.B) {
	crashtest.RequireRoot(b)
	dir := crashtest.PatternDir(b, "cph")
	bin := buildCollector(b, dir)
	exe := crashtest.BuildGo(b, crashtest.Program{Files: map[string]string{"main.go": holder}})
	lim := unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &lim); err != nil {
		b.Fatal(err)
	}
	spoolDir := filepath.Join(dir, "s")
	// Steady state on a node: the agent has stored the executable already.
	os.Mkdir(spoolDir, 0o700)
	markStored(b, spoolDir, exe, "")
	patterns := map[string]string{
		"pipe": corepattern.Pattern(bin, spoolDir),
		"file": filepath.Join(dir, "core"),
	}
	modes := []string{"pipe", "file"}
	if zstdBin, err := exec.LookPath("zstd"); err == nil {
		patterns["zstd"] = "|" + zstdBin + " -1 -T0 -q -f -o " + filepath.Join(dir, "core")
		modes = append(modes, "zstd")
	}
	for _, size := range []int{10 << 20, 1 << 30} {
		b.Run(fmt.Sprintf("%dMiB", size>>20), func(b *testing.B) {
			held := map[string]time.Duration{}
			for b.Loop() {
				for _, mode := range modes {
					s := corepattern.Settings{Pattern: patterns[mode], PipeLimit: 64}
					crashtest.WithPattern(b, s, func() { held[mode] += holdOnce(b, exe, size) })
					os.Remove(filepath.Join(dir, "core"))
					entries, _ := spool.Spool{Dir: spoolDir}.Entries()
					for _, e := range entries {
						e.Remove()
					}
				}
			}
			for _, mode := range modes {
				b.ReportMetric(held[mode].Seconds()/float64(b.N), mode+"-s")
			}
			if held["zstd"] > 0 {
				b.ReportMetric(float64(held["pipe"])/float64(held["zstd"]), "pipe/zstd")
			}
		})
	}
}

// holdOnce starts the holder, waits for its heap to be filled, and returns
// how long the process takes to die of SIGABRT with its core dumped.
func holdOnce(b *testing.B, exe string, size int) time.Duration {
	cmd := exec.Command(exe, strconv.Itoa(size))
	cmd.Env = append(os.Environ(), "GOTRACEBACK=crash")
	stdin, _ := cmd.StdinPipe()
	defer stdin.Close()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	if _, err := io.ReadFull(stdout, make([]byte, 6)); err != nil {
		b.Fatalf("holder not ready: %v", err)
	}
	start := time.Now()
	cmd.Process.Signal(syscall.SIGABRT)
	err := cmd.Wait()
	held := time.Since(start)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !ee.Sys().(syscall.WaitStatus).CoreDump() {
		b.Fatalf("holder did not dump core: %v", err)
	}
	return held
}
