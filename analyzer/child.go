package analyzer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corepipe/corepipe"
)

// Child inspects each core in a child process running `corepipe analyze`, so
// that a panic, hang or runaway allocation inside delve costs one report, not
// the worker.
type Child struct {
	// Command is the analyze command without the core and executable
	// arguments, e.g. {"/usr/bin/corepipe", "analyze"}. It is given the
	// crash's manifest with --manifest, so that the report it writes is
	// the finished one (see Complete).
	Command []string
	// MaxMemory caps the child's address space (RLIMIT_AS) in bytes (0: no
	// cap). It is not a cap on the core's size: the core is read through,
	// never mapped. A Go program reserves more address space than it
	// touches, so leave room: 4 GiB (the command's default) is ample.
	MaxMemory uint64
	// MaxCPU caps the child's CPU time (0: no cap).
	MaxCPU time.Duration
	// MaxReport caps the report the child writes (RLIMIT_FSIZE), in bytes
	// (0: no cap); DefaultMaxReport is ample.
	MaxReport uint64
	// Timeout caps the child's wall time (0: no cap).
	Timeout time.Duration
	// Nice lowers the child's CPU priority by this much (0-19): on a node,
	// the analysis must yield to the node's workloads.
	Nice int
}

// DefaultMaxReport is eight times the report of a core of 100 000
// goroutines.
const DefaultMaxReport = 1 << 30

// Inspect runs the child with its report going to report, a file in the
// scratch space the analyzer made for the core. The child writes to it
// directly, so RLIMIT_FSIZE holds it, and nothing of it passes through
// this process.
func (c Child) Inspect(ctx context.Context, crash *corepipe.Crash, corePath, exePath string, report *os.File) error {
	if !childInitDone.Load() {
		return errors.New("analysis child: analyzer.ChildInit was not called at the start of main, so its limits cannot be applied")
	}
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	prog, err := exec.LookPath(c.Command[0])
	if err != nil {
		return fmt.Errorf("analysis command: %w", err)
	}
	args := append([]string{prog}, c.Command[1:]...)
	if crash != nil {
		manifest := filepath.Join(filepath.Dir(corePath), "crash.json")
		if err := writeManifest(manifest, crash); err != nil {
			return err
		}
		defer os.Remove(manifest)
		args = append(args, "--manifest", manifest)
	}
	// The analyzer leaves the debug file it found in the symbol store
	// beside the core, as it does the manifest.
	if debug := filepath.Join(filepath.Dir(corePath), DebugDir); dirExists(debug) {
		args = append(args, "--debug-dir", debug)
	}
	args = append(args, "--exe", exePath, corePath)
	// The child starts as this same program in its trampoline mode
	// (ChildInit), which sets the limits on itself and then execs the
	// analysis: limits survive exec, so they hold from the analysis's
	// first instruction. prlimit on a child os/exec has started (it has
	// no hook between fork and exec) leaves the child's first moments
	// unlimited, and stopping the child at exec with ptrace needs a
	// locked thread and is often forbidden in containers.
	cmd := exec.CommandContext(ctx, "/proc/self/exe", args...)
	cmd.Env = append(childEnv(os.Environ()), limitsEnv+"="+c.limits())
	// The child leads its own process group, and a timeout kills the whole
	// group: anything it started would otherwise hold its stderr open and
	// keep Wait waiting.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	stderr := &headTail{max: 32 << 10}
	cmd.Stdout = report
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start analysis: %w", err)
	}
	err = cmd.Wait()
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("%w: analysis took longer than %v", corepipe.ErrInvalid, c.Timeout)
	}
	if err != nil {
		return c.childError(err, cmd.ProcessState, stderr.String(), report)
	}
	return nil
}

// maxManifest bounds a manifest: the collector keeps a bounded subset of
// the process's command line and environment.
const maxManifest = 16 << 20

// ReadManifest reads the crash manifest a Child hands to its command.
func ReadManifest(path string) (*corepipe.Crash, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	defer f.Close()
	var c corepipe.Crash
	if err := json.NewDecoder(io.LimitReader(f, maxManifest)).Decode(&c); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", path, err)
	}
	return &c, nil
}

func writeManifest(path string, crash *corepipe.Crash) error {
	b, err := json.Marshal(crash)
	if err == nil {
		err = os.WriteFile(path, b, 0o600)
	}
	if err != nil {
		return fmt.Errorf("manifest for the analysis: %w", err)
	}
	return nil
}

// childEnv is what of the analyzer's environment the child may see. The
// analyzer holds the blob store's and the queue's credentials, and the
// child reads a hostile core: a child that delve's bugs let the core take
// over must find nothing worth taking.
func childEnv(environ []string) []string {
	var env []string
	arenas := false
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "MALLOC_ARENA_MAX":
			arenas = true
			env = append(env, kv)
		case "PATH", "HOME", "TMPDIR", "TZ", "LANG", "GOGC", "GOMEMLIMIT", "GOMAXPROCS", "GODEBUG":
			env = append(env, kv)
		case "GOTRACEBACK":
			// "crash" would dump the child's core, a hostile core's
			// contents included, into the pipeline it is serving.
			if v == "crash" {
				kv = k + "=system"
			}
			env = append(env, kv)
		}
	}
	if !arenas {
		// glibc reserves 64 MiB of address space per thread's malloc
		// arena: under MaxMemory (RLIMIT_AS) a cgo build of corepipe
		// then fails to start threads long before the analysis needs
		// the memory (measured: 1 GiB fails, 1 GiB with 2 arenas works).
		env = append(env, "MALLOC_ARENA_MAX=2")
	}
	return env
}

// limitsEnv carries the child's limits to its trampoline, which removes it.
const limitsEnv = "COREPIPE_ANALYSIS_LIMITS"

// The resources the trampoline limits, by the names limitsEnv uses.
var rlimits = map[string]int{
	"as":    unix.RLIMIT_AS,
	"cpu":   unix.RLIMIT_CPU,
	"fsize": unix.RLIMIT_FSIZE,
	"core":  unix.RLIMIT_CORE,
}

func (c Child) limits() string {
	// A crash of the analysis must never dump a core: it would hold the
	// hostile core's bytes and come back through the pipeline. The kernel
	// ignores RLIMIT_CORE 0 when core_pattern is a pipe (corepipe dev's
	// collector keeps such cores); 1 is its marker for "never", there too.
	l := []string{"core=1"}
	if c.MaxMemory > 0 {
		l = append(l, fmt.Sprintf("as=%d", c.MaxMemory))
	}
	if c.MaxCPU > 0 {
		l = append(l, fmt.Sprintf("cpu=%d", uint64(max(1, c.MaxCPU.Seconds()))))
	}
	if c.MaxReport > 0 {
		l = append(l, fmt.Sprintf("fsize=%d", c.MaxReport))
	}
	if c.Nice > 0 {
		l = append(l, fmt.Sprintf("nice=%d", min(c.Nice, 19)))
	}
	return strings.Join(l, ",")
}

var childInitDone atomic.Bool

// ChildInit must be the first thing main does in a program that runs a
// Child. In the program's own run it only records that it was called. In
// the trampoline a Child starts it as, it never returns: it sets the
// limits on itself, then execs the analysis command, which inherits them.
func ChildInit() {
	childInitDone.Store(true)
	spec, ok := os.LookupEnv(limitsEnv)
	if !ok {
		return
	}
	err := execLimited(spec, os.Args[1:])
	fmt.Fprintf(os.Stderr, "corepipe: start the analysis: %v\n", err)
	os.Exit(1)
}

func execLimited(spec string, argv []string) error {
	if len(argv) == 0 {
		return errors.New("no command")
	}
	for _, kv := range strings.Split(spec, ",") {
		name, val, _ := strings.Cut(kv, "=")
		res, ok := rlimits[name]
		n, err := strconv.ParseUint(val, 10, 64)
		if name == "nice" && err == nil && n <= 19 {
			// Relative to the parent's, as nice(1) does.
			cur, err := unix.Getpriority(unix.PRIO_PROCESS, 0)
			if err != nil {
				return fmt.Errorf("nice: %w", err)
			}
			// The raw syscall returns 20 - nice.
			if err := unix.Setpriority(unix.PRIO_PROCESS, 0, min(19, 20-cur+int(n))); err != nil {
				return fmt.Errorf("nice: %w", err)
			}
			continue
		}
		if !ok || err != nil {
			return fmt.Errorf("bad limit %q", kv)
		}
		var old unix.Rlimit
		if err := unix.Getrlimit(res, &old); err != nil {
			return fmt.Errorf("limit %s: %w", name, err)
		}
		lim := unix.Rlimit{Cur: min(n, old.Max), Max: min(n, old.Max)}
		if res == unix.RLIMIT_CPU {
			// The Go runtime ignores SIGXCPU at the soft limit; the hard
			// limit, a second later, is a SIGKILL.
			lim.Max = min(n+1, old.Max)
		}
		if err := unix.Setrlimit(res, &lim); err != nil {
			return fmt.Errorf("limit %s: %w", name, err)
		}
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, limitsEnv+"=") {
			env = append(env, kv)
		}
	}
	return unix.Exec(argv[0], argv, env)
}

// childError turns how the child ended into one line. A crash of the child
// (a delve panic, running out of memory or CPU time) is permanent for this
// core: retrying gives the same. The analyze command prints its own one-line
// error last and exits 2 for a core or executable it cannot read; the Go
// runtime also exits 2 when it crashes, so its output is looked for first.
func (c Child) childError(err error, ps *os.ProcessState, stderr string, report *os.File) error {
	last := lastLine(stderr)
	// A Go child's writes fail with EFBIG at RLIMIT_FSIZE; others die of
	// SIGXFSZ. Either way the report has reached the limit.
	if st, serr := report.Stat(); serr == nil && c.MaxReport > 0 && uint64(st.Size()) >= c.MaxReport {
		return fmt.Errorf("%w: analysis wrote a report over its limit of %d MiB", corepipe.ErrInvalid, c.MaxReport>>20)
	}
	if oom := outOfMemory(stderr); oom != "" {
		return fmt.Errorf("%w: analysis ran out of memory (limit %d MiB): %s", corepipe.ErrInvalid, c.MaxMemory>>20, oom)
	}
	if p := runtimeCrash(stderr); p != "" {
		return fmt.Errorf("%w: analysis crashed: %s", corepipe.ErrInvalid, p)
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		if c.MaxCPU > 0 && (ws.Signal() == syscall.SIGKILL || ws.Signal() == syscall.SIGXCPU) && ps.UserTime()+ps.SystemTime() >= c.MaxCPU {
			return fmt.Errorf("%w: analysis used more than its CPU time limit of %v", corepipe.ErrInvalid, c.MaxCPU)
		}
		return fmt.Errorf("%w: analysis died of %s: %s", corepipe.ErrInvalid, corepipe.SignalName(int(ws.Signal())), last)
	}
	if ps.ExitCode() == 2 {
		return fmt.Errorf("%w: %s", corepipe.ErrInvalid, strings.TrimPrefix(last, "corepipe: "))
	}
	return fmt.Errorf("analysis failed: %v: %s", err, last)
}

// outOfMemory returns the runtime's line about failing to allocate, if the
// child printed one.
func outOfMemory(stderr string) string {
	for l := range strings.Lines(stderr) {
		l = strings.TrimSpace(l)
		// Under a tight address-space limit the runtime may fail before it
		// allocates anything: reserving its arenas is the first use.
		if strings.HasPrefix(l, "fatal error: ") && (strings.Contains(l, "out of memory") || strings.Contains(l, "failed to reserve")) {
			return l
		}
		if strings.HasPrefix(l, "runtime: out of memory") || strings.Contains(l, "cannot allocate memory") {
			return l
		}
	}
	return ""
}

// runtimeCrash returns the "panic: …" or "fatal error: …" line of a Go
// runtime crash, if the child printed a goroutine traceback.
func runtimeCrash(stderr string) string {
	if !strings.Contains(stderr, "\ngoroutine ") && !strings.Contains(stderr, "\nruntime stack:") {
		return ""
	}
	for l := range strings.Lines(stderr) {
		if strings.HasPrefix(l, "panic: ") || strings.HasPrefix(l, "fatal error: ") {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// headTail keeps the first and the last max bytes of the child's stderr: a
// runtime crash says what happened at the top of a traceback that may run
// to megabytes, the analyze command says it on its last line.
type headTail struct {
	max        int
	head, tail []byte
	cut        bool
}

func (h *headTail) Write(p []byte) (int, error) {
	n := len(p)
	if room := h.max - len(h.head); room > 0 {
		k := min(room, len(p))
		h.head = append(h.head, p[:k]...)
		p = p[k:]
	}
	h.tail = append(h.tail, p...)
	if over := len(h.tail) - h.max; over > 0 {
		h.tail = append(h.tail[:0], h.tail[over:]...)
		h.cut = true
	}
	return n, nil
}

func (h *headTail) String() string {
	if h.cut {
		return string(h.head) + "\n…\n" + string(h.tail)
	}
	return string(h.head) + string(h.tail)
}
