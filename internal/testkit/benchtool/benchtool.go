// Package benchtool makes the big cores the analyzer's benchmarks need — a
// Go program with very many parked goroutines, one with a huge live heap —
// dumped by the real kernel, and measures the wall time and peak RSS of the
// programs that read them.
package benchtool

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corepipe/corepipe/collector/corepattern"
)

// ParkedProgram starts os.Args[1] goroutines parked in the common ways (a
// channel receive a few frames deep, a select, a mutex, a sleep), waits
// until every one is parked, then panics.
const ParkedProgram = `package main

import (
	"os"
	"strconv"
	"sync"
	"time"
)

var (
	block = make(chan struct{})
	other = make(chan struct{})
	mu    sync.Mutex
)

//go:noinline
func recvDeep(depth int) {
	if depth > 0 {
		recvDeep(depth - 1)
		return
	}
	<-block
}

//go:noinline
func selecting() {
	select {
	case <-block:
	case <-other:
	}
}

//go:noinline
func locking() { mu.Lock() }

//go:noinline
func sleeping() { time.Sleep(time.Hour) }

func park(i int, started *sync.WaitGroup) {
	started.Done()
	switch i % 4 {
	case 0:
		recvDeep(i % 3)
	case 1:
		selecting()
	case 2:
		locking()
	default:
		sleeping()
	}
}

func main() {
	n, err := strconv.Atoi(os.Args[1])
	if err != nil {
		panic(err)
	}
	mu.Lock()
	var started sync.WaitGroup
	started.Add(n)
	for i := range n {
		go park(i, &started)
	}
	started.Wait()
	// Let the last ones reach their parking spot.
	time.Sleep(200 * time.Millisecond)
	panic("parked " + os.Args[1] + " goroutines")
}
`

// HeapProgram allocates os.Args[1] MiB of live heap in 1 MiB blocks, every
// page written so that the kernel dumps all of it, then panics.
const HeapProgram = `package main

import (
	"os"
	"strconv"
	"time"
)

var live [][]byte

func main() {
	mib, err := strconv.Atoi(os.Args[1])
	if err != nil {
		panic(err)
	}
	for i := range mib {
		b := make([]byte, 1<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = byte(i) | 1
		}
		live = append(live, b)
	}
	done := make(chan bool)
	for range 8 {
		go func() { <-done }()
	}
	time.Sleep(100 * time.Millisecond)
	panic("heap of " + os.Args[1] + " MiB")
}
`

// Build writes src as a main package in dir and builds it to dir/name.
func Build(dir, name, src string) (string, error) {
	pkg := filepath.Join(dir, name+"-src")
	if err := os.MkdirAll(pkg, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(pkg, "go.mod"), []byte("module "+name+"\n\ngo 1.22\n"), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(pkg, "main.go"), []byte(src), 0o644); err != nil {
		return "", err
	}
	exe := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", exe, ".")
	cmd.Dir = pkg
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %v\n%s", name, err, out)
	}
	return exe, nil
}

// Dump runs exe with GOTRACEBACK=crash under a core_pattern pointing at
// dir/core (holding the core_pattern lock, and restoring the previous
// settings), and returns the core's path and how many goroutines the
// runtime printed as it died. The runtime's traceback goes to a file, not
// to memory: with 100 000 goroutines it is tens of MiB. Needs root.
func Dump(dir, exe string, args ...string) (core string, goroutines int, err error) {
	return DumpProcess(dir, exec.Command(exe, args...), nil)
}

// DumpProcess is Dump for a program that does not crash by itself (a
// server): it starts cmd (with GOTRACEBACK=crash added to its environment
// and its stderr to a file), waits for ready, then aborts it with SIGABRT
// the way an operator's kill -ABRT does. With ready nil, cmd must crash on
// its own. ready gets the process's exit as a channel, closed once it has
// gone, so that it can stop waiting for a server that died.
func DumpProcess(dir string, cmd *exec.Cmd, ready func(exited <-chan struct{}) error) (core string, goroutines int, err error) {
	core = filepath.Join(dir, "core")
	stderrPath := filepath.Join(dir, "stderr")
	stderr, err := os.Create(stderrPath)
	if err != nil {
		return "", 0, err
	}
	defer stderr.Close()

	unlock, err := corepattern.Lock()
	if err != nil {
		return "", 0, err
	}
	defer unlock()
	var k corepattern.Kernel
	prev, err := k.Read()
	if err != nil {
		return "", 0, err
	}
	if err := k.Write(corepattern.Settings{Pattern: core}); err != nil {
		return "", 0, err
	}
	defer k.Write(prev)
	inf := unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &inf); err != nil {
		return "", 0, fmt.Errorf("raise RLIMIT_CORE: %w", err)
	}

	exe := cmd.Path
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, "GOTRACEBACK=crash")
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return "", 0, fmt.Errorf("run %s: %w", exe, err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	if ready != nil {
		if err := ready(exited); err != nil {
			cmd.Process.Kill()
			<-exited
			return "", 0, fmt.Errorf("%s: %w (stderr in %s)", exe, err, stderrPath)
		}
		if err := cmd.Process.Signal(syscall.SIGABRT); err != nil {
			return "", 0, fmt.Errorf("abort %s: %w", exe, err)
		}
	}
	<-exited
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.CoreDump() {
		return "", 0, fmt.Errorf("%s dumped no core: %v (stderr in %s)", exe, waitErr, stderrPath)
	}
	n, err := countGoroutines(stderrPath)
	return core, n, err
}

// countGoroutines counts the "goroutine N [" headers of a traceback, but
// not "goroutine 0": the system stack of a thread running none, which
// GOTRACEBACK=crash prints for the thread the signal reached (as a SIGABRT
// sent from outside does).
func countGoroutines(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		if line := s.Bytes(); bytes.HasPrefix(line, []byte("goroutine ")) && !bytes.HasPrefix(line, []byte("goroutine 0 ")) && bytes.HasSuffix(line, []byte(":")) {
			n++
		}
	}
	return n, s.Err()
}

// Usage is what one run of a program cost.
type Usage struct {
	Wall time.Duration
	// CPU is user plus system time: on a busy machine it says more than
	// the wall time.
	CPU    time.Duration
	MaxRSS int64 // bytes, from wait4's rusage
}

// Measure runs name with args, stdin and stdout as given (stderr to
// stderrTo), and returns its wall time and peak RSS.
func Measure(stdin io.Reader, stdout, stderrTo io.Writer, name string, args ...string) (Usage, error) {
	cmd := exec.Command(name, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderrTo
	start := time.Now()
	err := cmd.Run()
	u := Usage{Wall: time.Since(start)}
	if cmd.ProcessState == nil {
		return u, fmt.Errorf("run %s: %w", name, err)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		u.MaxRSS = ru.Maxrss << 10 // Linux reports KiB
		u.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	if err != nil {
		return u, fmt.Errorf("%s: %w", name, err)
	}
	return u, nil
}
