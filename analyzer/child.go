package analyzer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	// arguments, e.g. {"/usr/bin/corepipe", "analyze"}.
	Command []string
	// MaxMemory caps the child's address space (RLIMIT_AS) in bytes (0: no
	// cap). It is not a cap on the core's size: the core is read through,
	// never mapped. A Go program reserves more address space than it
	// touches, so leave room: 4 GiB (the command's default) is ample.
	MaxMemory uint64
	// MaxCPU caps the child's CPU time (0: no cap).
	MaxCPU time.Duration
	// Timeout caps the child's wall time (0: no cap).
	Timeout time.Duration
}

// Inspect runs the child and decodes the report it writes. The report goes
// to a file next to the core, in the scratch space the analyzer made for
// it, and is decoded from there one goroutine at a time: a report of
// 100 000 goroutines is over 100 MiB of JSON.
func (c Child) Inspect(ctx context.Context, corePath, exePath string) (*corepipe.Report, error) {
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	out, err := os.CreateTemp(filepath.Dir(corePath), "report-*.json")
	if err != nil {
		return nil, fmt.Errorf("report file for the analysis: %w", err)
	}
	defer os.Remove(out.Name())
	defer out.Close()

	args := append(append([]string{}, c.Command[1:]...), "--exe", exePath, corePath)
	cmd := exec.CommandContext(ctx, c.Command[0], args...)
	// The child leads its own process group, and a timeout kills the whole
	// group: anything it started would otherwise hold its stderr open and
	// keep Wait waiting.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	stderr := &headTail{max: 32 << 10}
	cmd.Stdout = out
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start analysis: %w", err)
	}
	// Limits are set on the running child: os/exec has no way to set them
	// between fork and exec, and the child has not opened the core yet.
	if err := c.limit(cmd.Process.Pid); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, err
	}
	err = cmd.Wait()
	if ctx.Err() == context.DeadlineExceeded {
		return nil, fmt.Errorf("%w: analysis took longer than %v", corepipe.ErrInvalid, c.Timeout)
	}
	if err != nil {
		return nil, c.childError(err, cmd.ProcessState, stderr.String())
	}
	if _, err := out.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("read the analysis's report: %w", err)
	}
	r, err := decodeReport(bufio.NewReaderSize(out, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("analysis wrote no readable report: %w", err)
	}
	return r, nil
}

func (c Child) limit(pid int) error {
	if c.MaxMemory > 0 {
		if err := unix.Prlimit(pid, unix.RLIMIT_AS, &unix.Rlimit{Cur: c.MaxMemory, Max: c.MaxMemory}, nil); err != nil {
			return fmt.Errorf("limit the analysis's memory: %w", err)
		}
	}
	if c.MaxCPU > 0 {
		// The runtime ignores SIGXCPU at the soft limit; the hard limit,
		// a second later, is a SIGKILL.
		s := uint64(max(1, c.MaxCPU.Seconds()))
		if err := unix.Prlimit(pid, unix.RLIMIT_CPU, &unix.Rlimit{Cur: s, Max: s + 1}, nil); err != nil {
			return fmt.Errorf("limit the analysis's CPU time: %w", err)
		}
	}
	return nil
}

// childError turns how the child ended into one line. A crash of the child
// (a delve panic, running out of memory or CPU time) is permanent for this
// core: retrying gives the same. The analyze command prints its own one-line
// error last and exits 2 for a core or executable it cannot read; the Go
// runtime also exits 2 when it crashes, so its output is looked for first.
func (c Child) childError(err error, ps *os.ProcessState, stderr string) error {
	last := lastLine(stderr)
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

// decodeReport reads a report one goroutine at a time, so that what it
// holds is the report itself, not also its text; the strings that repeat
// across goroutines (functions, files, states) are stored once.
func decodeReport(rd io.Reader) (*corepipe.Report, error) {
	dec := json.NewDecoder(rd)
	if err := expectDelim(dec, '{'); err != nil {
		return nil, err
	}
	var (
		rest       bytes.Buffer // every field but the goroutines
		goroutines []corepipe.Goroutine
		in         = interner{}
	)
	rest.WriteByte('{')
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return nil, err
		}
		if key == "goroutines" {
			if err := expectDelim(dec, '['); err != nil {
				return nil, err
			}
			for dec.More() {
				var g corepipe.Goroutine
				if err := dec.Decode(&g); err != nil {
					return nil, fmt.Errorf("goroutine %d: %w", len(goroutines), err)
				}
				goroutines = append(goroutines, in.goroutine(g))
			}
			if err := expectDelim(dec, ']'); err != nil {
				return nil, err
			}
			continue
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		if rest.Len() > 1 {
			rest.WriteByte(',')
		}
		k, _ := json.Marshal(key)
		rest.Write(k)
		rest.WriteByte(':')
		rest.Write(raw)
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, err
	}
	rest.WriteByte('}')
	var r corepipe.Report
	if err := json.Unmarshal(rest.Bytes(), &r); err != nil {
		return nil, err
	}
	r.Goroutines = goroutines
	return &r, nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != want {
		return fmt.Errorf("report JSON has %v where %v belongs", tok, want)
	}
	return nil
}

// interner keeps one copy of each string it is given.
type interner map[string]string

func (in interner) str(s string) string {
	if v, ok := in[s]; ok {
		return v
	}
	in[s] = s
	return s
}

func (in interner) goroutine(g corepipe.Goroutine) corepipe.Goroutine {
	g.Status, g.WaitReason, g.CreatedBy = in.str(g.Status), in.str(g.WaitReason), in.str(g.CreatedBy)
	for i := range g.Frames {
		f := &g.Frames[i]
		f.Function, f.File, f.PC = in.str(f.Function), in.str(f.File), in.str(f.PC)
	}
	return g
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
