package analyzer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
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
	// MaxMemory caps the child's address space in bytes (0: no cap).
	MaxMemory uint64
	// MaxCPU caps the child's CPU time (0: no cap).
	MaxCPU time.Duration
	// Timeout caps the child's wall time (0: no cap).
	Timeout time.Duration
}

// Inspect runs the child and decodes the report it prints.
func (c Child) Inspect(ctx context.Context, corePath, exePath string) (*corepipe.Report, error) {
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	args := append(append([]string{}, c.Command[1:]...), "--exe", exePath, corePath)
	cmd := exec.CommandContext(ctx, c.Command[0], args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &limitedBuffer{max: 64 << 10, buf: &stderr}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start analysis: %w", err)
	}
	// Limits are set on the running child: os/exec has no way to set them
	// between fork and exec, and the child has not opened the core yet.
	if c.MaxMemory > 0 {
		unix.Prlimit(cmd.Process.Pid, unix.RLIMIT_AS, &unix.Rlimit{Cur: c.MaxMemory, Max: c.MaxMemory}, nil)
	}
	if c.MaxCPU > 0 {
		s := uint64(c.MaxCPU.Seconds())
		unix.Prlimit(cmd.Process.Pid, unix.RLIMIT_CPU, &unix.Rlimit{Cur: s, Max: s + 1}, nil)
	}
	err := cmd.Wait()
	if ctx.Err() == context.DeadlineExceeded {
		return nil, fmt.Errorf("%w: analysis took longer than %v", corepipe.ErrInvalid, c.Timeout)
	}
	if err != nil {
		return nil, childError(err, stderr.String())
	}
	var r corepipe.Report
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		return nil, fmt.Errorf("analysis printed no report: %w", err)
	}
	return &r, nil
}

// childError turns how the child ended into one line. The child prints its
// own one-line error last; a crash of the child (a delve panic, an
// out-of-memory kill) is permanent for this core: retrying gives the same.
func childError(err error, stderr string) error {
	last := lastLine(stderr)
	if ee, ok := err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return fmt.Errorf("%w: analysis died of %s: %s", corepipe.ErrInvalid, corepipe.SignalName(int(ws.Signal())), last)
		}
		// Exit code 2 is the analyze command's word for a core or
		// executable it cannot read; anything else may be passing.
		if ee.ExitCode() == 2 {
			return fmt.Errorf("%w: %s", corepipe.ErrInvalid, strings.TrimPrefix(last, "corepipe: "))
		}
	}
	if strings.Contains(stderr, "out of memory") || strings.Contains(stderr, "cannot allocate memory") {
		return fmt.Errorf("%w: analysis ran out of memory: %s", corepipe.ErrInvalid, last)
	}
	if strings.Contains(stderr, "goroutine ") && strings.Contains(stderr, "panic") {
		return fmt.Errorf("%w: analysis crashed: %s", corepipe.ErrInvalid, firstPanicLine(stderr))
	}
	return fmt.Errorf("analysis failed: %v: %s", err, last)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func firstPanicLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "panic: ") || strings.HasPrefix(l, "fatal error: ") {
			return l
		}
	}
	return lastLine(s)
}

// limitedBuffer keeps the first max bytes of the child's stderr: a child
// printing a million-goroutine traceback must not balloon the worker.
type limitedBuffer struct {
	max int
	buf *bytes.Buffer
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.buf.Len(); room > 0 {
		l.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}
