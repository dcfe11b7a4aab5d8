package collector

import (
	"syscall"
	"testing"
	"time"

	"github.com/corepipe/corepipe/collector/spool"
)

// For the external tests, which need the agent (it imports this package).

// HolderSource is the program that waits for the signal that kills it.
const HolderSource = holder

// KernelRig is a spool with the collector binary as the kernel's handler.
type KernelRig struct{ r *kernelRig }

func NewKernelRig(t testing.TB, s spool.Settings) KernelRig { return KernelRig{newKernelRig(t, s)} }

// Dir is a short, world-readable directory for executables.
func (k KernelRig) Dir() string   { return k.r.dir }
func (k KernelRig) Spool() string { return k.r.spool }

// With runs fn with the handler installed.
func (k KernelRig) With(t testing.TB, fn func()) { k.r.with(t, 16, fn) }

// Crash starts exe (attr: credentials, cgroup), crashes it with SIGABRT,
// waits for its entry and returns its pid and how long the kernel held it.
func (k KernelRig) Crash(t testing.TB, exe string, attr *syscall.SysProcAttr) (int, time.Duration) {
	t.Helper()
	before, _ := spool.Spool{Dir: k.r.spool}.Entries()
	h := startHolder(t, exe, attr, "0")
	hold := h.crash(t)
	waitEntries(t, k.r.spool, len(before)+1)
	return h.cmd.Process.Pid, hold
}
