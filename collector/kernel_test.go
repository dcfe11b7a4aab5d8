package collector

import (
	"debug/elf"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/corepipe/corepipe/collector/corepattern"
	"github.com/corepipe/corepipe/internal/crashtest"
)

// TestKernelCapturesGoCrash installs the real collector binary as the
// machine's core_pattern handler, crashes a Go program, and checks the entry
// the kernel's invocation committed.
func TestKernelCapturesGoCrash(t *testing.T) {
	crashtest.RequireRoot(t)
	// core_pattern holds at most 127 bytes: keep the paths in it short.
	dir, err := os.MkdirTemp("", "cp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "corepipe-collector")
	build := exec.Command("go", "build", "-o", bin, "github.com/corepipe/corepipe/cmd/corepipe-collector")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build collector: %v\n%s", err, out)
	}
	spool := filepath.Join(dir, "s")
	exe := crashtest.BuildGo(t, crashtest.Program{Files: map[string]string{"main.go": `package main

type server struct{ retries int }

func main() {
	var s *server
	println(s.retries)
}
`}})

	var res crashtest.Result
	crashtest.WithPattern(t, corepattern.Settings{Pattern: corepattern.Pattern(bin, spool), PipeLimit: 16}, func() {
		res = crashtest.Run(t, time.Minute, exe, []string{"GOGC=77", "SECRET_TOKEN=hunter2"})
	})
	if res.Signal != syscall.SIGABRT {
		t.Fatalf("crasher did not die of SIGABRT: %s", res.Describe())
	}

	// The kernel lets the process go once the collector closes the pipe,
	// before it commits: poll, bounded.
	var e Entry
	deadline := time.Now().Add(time.Minute)
	for {
		entries, _ := Spool{Dir: spool}.Entries()
		if len(entries) == 1 {
			e = entries[0]
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(spool, LogFile))
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

	f, err := os.Open(e.CorePath())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := zstd.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
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
