// Package corepattern owns the kernel's core_pattern and core_pipe_limit: it
// installs corepipe's pipe handler, remembers what was there before in a state
// file, and puts it back — on a clean stop, and on the next start after a
// crash or SIGKILL left the handler installed.
package corepattern

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/corepipe/corepipe/collector/internal/hostfile"
)

// DefaultSysDir is where the kernel exposes core_pattern.
const DefaultSysDir = "/proc/sys/kernel"

// maxPattern is the kernel's CORENAME_MAX_SIZE less its terminating NUL: a
// longer pattern is silently cut, which would run a different command.
const maxPattern = 127

// Marker is the name of the collector binary. A pattern that pipes into a
// program of this name is corepipe's own and may be replaced.
const Marker = "corepipe-collector"

// Settings are the two kernel values corepipe changes.
type Settings struct {
	Pattern   string `json:"core_pattern"`
	PipeLimit int    `json:"core_pipe_limit"`
}

// Kernel reads and writes the settings under a sysctl directory, normally
// DefaultSysDir; tests point it elsewhere.
type Kernel struct {
	SysDir string
}

func (k Kernel) dir() string {
	if k.SysDir == "" {
		return DefaultSysDir
	}
	return k.SysDir
}

// Read returns the current settings.
func (k Kernel) Read() (Settings, error) {
	p, err := os.ReadFile(filepath.Join(k.dir(), "core_pattern"))
	if err != nil {
		return Settings{}, fmt.Errorf("read core_pattern: %w", err)
	}
	l, err := os.ReadFile(filepath.Join(k.dir(), "core_pipe_limit"))
	if err != nil {
		return Settings{}, fmt.Errorf("read core_pipe_limit: %w", err)
	}
	limit, err := strconv.Atoi(strings.TrimSpace(string(l)))
	if err != nil {
		return Settings{}, fmt.Errorf("read core_pipe_limit: %w", err)
	}
	return Settings{Pattern: strings.TrimRight(string(p), "\n"), PipeLimit: limit}, nil
}

// Write sets both values, the limit first so the handler never runs with a
// limit it was not installed with.
func (k Kernel) Write(s Settings) error {
	if len(s.Pattern) > maxPattern {
		return fmt.Errorf("core_pattern %q is %d bytes, the kernel keeps only %d", s.Pattern, len(s.Pattern), maxPattern)
	}
	if err := os.WriteFile(filepath.Join(k.dir(), "core_pipe_limit"), []byte(strconv.Itoa(s.PipeLimit)+"\n"), 0o644); err != nil {
		return fmt.Errorf("write core_pipe_limit: %w", err)
	}
	if err := os.WriteFile(filepath.Join(k.dir(), "core_pattern"), []byte(s.Pattern+"\n"), 0o644); err != nil {
		return fmt.Errorf("write core_pattern: %w", err)
	}
	return nil
}

// Owned reports whether pattern pipes into corepipe's collector.
func Owned(pattern string) bool {
	if !strings.HasPrefix(pattern, "|") {
		return false
	}
	fields := strings.Fields(strings.TrimPrefix(pattern, "|"))
	return len(fields) > 0 && filepath.Base(fields[0]) == Marker
}

// ErrForeign is returned by Install when another handler owns core_pattern.
var ErrForeign = errors.New("core_pattern belongs to another handler")

// Handler is one installation of the collector.
type Handler struct {
	Kernel Kernel
	// StateFile keeps the settings found before installation, so a later
	// process can restore them after this one was killed.
	StateFile string
	// Force replaces a core_pattern that is not corepipe's own.
	Force bool
}

// Pattern builds the core_pattern for collector writing into spool. The
// kernel splits the expanded pattern on spaces, so only numeric specifiers are
// passed: names (%e, %E, %h) come from /proc or uname, where spaces are safe.
// %F (a pidfd, Linux 6.16+) expands to nothing on older kernels, so it comes
// last where its absence shifts nothing.
func Pattern(collector, spool string) string {
	return "|" + collector + " -spool " + spool + " %P %i %I %s %t %c %u %g %d %p %F"
}

// Install writes want, saving what it replaces in the state file first. When
// core_pattern is already corepipe's (a previous run was killed), the settings
// saved by that run stay the ones to restore.
func (h Handler) Install(want Settings) error {
	cur, err := h.Kernel.Read()
	if err != nil {
		return err
	}
	prev, saved, err := h.saved()
	if err != nil {
		return err
	}
	switch {
	case saved && Owned(cur.Pattern):
		// Keep the state file: it holds the pattern from before corepipe.
	case Owned(cur.Pattern):
		// Ours, but nothing says what came before: the kernel default is the
		// honest thing to restore.
		prev = Settings{Pattern: "core", PipeLimit: 0}
		if err := h.save(prev); err != nil {
			return err
		}
	case !h.Force && cur.Pattern != "core" && cur.Pattern != "":
		return fmt.Errorf("%w: %q (use --force to replace it; it is restored on exit)", ErrForeign, cur.Pattern)
	default:
		if err := h.save(cur); err != nil {
			return err
		}
	}
	return h.Kernel.Write(want)
}

// Ensure installs want again when the kernel's settings differ from it,
// and returns what it found instead (nil when they were want). Whatever
// overwrote them is saved as the settings to restore, the way Install
// saves what it replaces: the latest choice of whoever else manages the
// node wins on stop. A foreign handler is not replaced without Force.
func (h Handler) Ensure(want Settings) (*Settings, error) {
	cur, err := h.Kernel.Read()
	if err != nil {
		return nil, err
	}
	if cur == want {
		return nil, nil
	}
	if err := h.Install(want); err != nil {
		return nil, err
	}
	return &cur, nil
}

// InstallBinary copies the collector binary src into dir as Marker and
// returns its path. The copy is written beside the target and renamed over
// it, so the kernel, which may start a collector at any moment, runs either
// the old binary or the new one, never half of one. This is how a
// DaemonSet's image puts the collector on the node: core_pattern runs it in
// the host's namespaces, where the image's files are not visible.
func InstallBinary(src, dir string) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", fmt.Errorf("install collector: %w", err)
	}
	defer in.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("install collector: %w", err)
	}
	dst := filepath.Join(dir, Marker)
	err = hostfile.Replace(dst, fmt.Sprintf("%s.tmp%d", dst, os.Getpid()), 0o755, true, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("install collector into %s: %w", dir, err)
	}
	return dst, nil
}

// Restore puts back the settings saved by Install and removes the state file.
// Without a state file it does nothing: there is nothing of ours to undo.
func (h Handler) Restore() error {
	prev, saved, err := h.saved()
	if err != nil || !saved {
		return err
	}
	cur, err := h.Kernel.Read()
	if err != nil {
		return err
	}
	// Someone replaced our handler in the meantime: theirs wins.
	if Owned(cur.Pattern) {
		if err := h.Kernel.Write(prev); err != nil {
			return err
		}
	}
	if err := os.Remove(h.StateFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove core_pattern state: %w", err)
	}
	return nil
}

func (h Handler) saved() (Settings, bool, error) {
	b, err := os.ReadFile(h.StateFile)
	if errors.Is(err, os.ErrNotExist) {
		return Settings{}, false, nil
	}
	if err != nil {
		return Settings{}, false, fmt.Errorf("read core_pattern state: %w", err)
	}
	var s Settings
	if err := json.Unmarshal(b, &s); err != nil {
		return Settings{}, false, fmt.Errorf("read core_pattern state %s: %w", h.StateFile, err)
	}
	return s, true, nil
}

func (h Handler) save(s Settings) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(h.StateFile), 0o700); err != nil {
		return fmt.Errorf("save core_pattern state: %w", err)
	}
	tmp := h.StateFile + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("save core_pattern state: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("save core_pattern state: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("save core_pattern state: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save core_pattern state: %w", err)
	}
	if err := os.Rename(tmp, h.StateFile); err != nil {
		return fmt.Errorf("save core_pattern state: %w", err)
	}
	return nil
}

// Lock serialises every change to the machine's core_pattern made by tests:
// go test runs packages in parallel, and two tests installing different
// handlers would steal each other's crashes. It blocks until the lock is held
// and returns its release.
func Lock() (func(), error) {
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "corepipe-core-pattern.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("core_pattern lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("core_pattern lock: %w", err)
	}
	return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}
