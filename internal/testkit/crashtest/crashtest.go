// Package crashtest builds programs that crash and makes the kernel dump
// their cores, for tests that check reports against real crashes.
//
// Changing core_pattern needs root; the helpers skip the test, with a message,
// when the test does not run as root. Every change to core_pattern happens
// under corepattern.Lock and is undone before the lock is released.
package crashtest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corepipe/corepipe/collector/corepattern"
)

// RequireRoot skips t unless it runs as root, saying why.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIP: needs root to set /proc/sys/kernel/core_pattern and crash real programs (CI runs as root)")
	}
}

// Program is the source of one test program.
type Program struct {
	// Files maps file names to contents; a go.mod is added when missing.
	Files map[string]string
	// Cgo builds with CGO_ENABLED=1.
	Cgo bool
	// Flags are extra `go build` flags such as -trimpath or -ldflags=-s.
	Flags []string
}

// BuildGo compiles p and returns the executable's path.
func BuildGo(t testing.TB, p Program) string {
	t.Helper()
	dir := t.TempDir()
	files := p.Files
	if _, ok := files["go.mod"]; !ok {
		files = map[string]string{"go.mod": "module crasher\n\ngo 1.22\n"}
		for k, v := range p.Files {
			files[k] = v
		}
	}
	for name, src := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	exe := filepath.Join(dir, "crasher")
	args := append([]string{"build", "-o", exe}, p.Flags...)
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Dir = dir
	cgo := "0"
	if p.Cgo {
		cgo = "1"
	}
	cmd.Env = append(os.Environ(), "CGO_ENABLED="+cgo, "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build test program: %v\n%s", err, out)
	}
	return exe
}

// BuildC compiles a C program with gcc and returns the executable's path.
func BuildC(t testing.TB, src string, flags ...string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.c"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "crasher")
	args := append([]string{"-o", exe}, flags...)
	cmd := exec.Command("gcc", append(args, "main.c")...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build C test program: %v\n%s", err, out)
	}
	return exe
}

// Result is what a crashed program left behind.
type Result struct {
	Stderr string
	// Signal killed the process; 0 if it exited.
	Signal   syscall.Signal
	ExitCode int
	PID      int
}

var rlimitOnce sync.Once

// allowCores lets this process's children dump cores of any size: the limit
// is inherited, and the test process itself never crashes on purpose.
func allowCores(t testing.TB) {
	rlimitOnce.Do(func() {
		lim := unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
		if err := unix.Setrlimit(unix.RLIMIT_CORE, &lim); err != nil {
			t.Fatalf("raise RLIMIT_CORE: %v", err)
		}
	})
}

// Run starts exe with GOTRACEBACK=crash plus env, waits for it (at most
// timeout) and returns how it died. It does not touch core_pattern: the
// caller decides where cores go.
func Run(t testing.TB, timeout time.Duration, exe string, env []string, args ...string) Result {
	t.Helper()
	allowCores(t)
	cmd := exec.Command(exe, args...)
	cmd.Env = append(append(os.Environ(), "GOTRACEBACK=crash"), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", exe, err)
	}
	timer := time.AfterFunc(timeout, func() { cmd.Process.Kill() })
	err := cmd.Wait()
	timer.Stop()
	res := Result{Stderr: stderr.String(), PID: cmd.Process.Pid}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		ws := exit.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			res.Signal = ws.Signal()
		} else {
			res.ExitCode = ws.ExitStatus()
		}
	} else if err != nil {
		t.Fatalf("run %s: %v", exe, err)
	}
	return res
}

// PatternDir returns a new directory, removed when the test ends, for the
// paths a test puts in core_pattern: the kernel takes at most 127 bytes
// there, too few for t.TempDir's paths, so it is directly under
// os.TempDir and named by prefix.
func PatternDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Core crashes exe with core_pattern pointing at a fresh directory and
// returns the core's path with how the program died. It fails the test when
// the program did not dump core.
func Core(t testing.TB, exe string, env []string, args ...string) (string, Result) {
	t.Helper()
	RequireRoot(t)
	corePath := filepath.Join(PatternDir(t, "corepipe-core"), "core")

	var res Result
	WithPattern(t, corepattern.Settings{Pattern: corePath}, func() {
		res = Run(t, 2*time.Minute, exe, env, args...)
	})
	if _, err := os.Stat(corePath); err != nil {
		t.Fatalf("%s left no core (signal %v, exit %d): %v\nstderr:\n%s", exe, res.Signal, res.ExitCode, err, tail(res.Stderr, 40))
	}
	return corePath, res
}

// WithPattern runs fn with the kernel's core settings set to s, holding the
// core_pattern lock, and restores the previous settings afterwards — also when
// fn fails the test.
func WithPattern(t testing.TB, s corepattern.Settings, fn func()) {
	t.Helper()
	RequireRoot(t)
	unlock, err := corepattern.Lock()
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	var k corepattern.Kernel
	prev, err := k.Read()
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := k.Write(prev); err != nil {
			t.Errorf("restore core_pattern %q: %v", prev.Pattern, err)
		}
	}()
	if err := k.Write(s); err != nil {
		t.Fatal(err)
	}
	fn()
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// Describe is a one-line account of res for failure messages.
func (r Result) Describe() string {
	return fmt.Sprintf("pid %d, signal %v, exit %d", r.PID, r.Signal, r.ExitCode)
}
