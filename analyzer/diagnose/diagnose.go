// Package diagnose runs the SRE runbook of design.md on a report: the checks
// that the core and the crash manifest can answer (what the exit code
// means, thread and memory exhaustion, nil versus wild pointers, deadlocks,
// concurrent map writes, stack overflows, goroutine leaks, OOM kills, the
// container's cgroup limits against memory, threads and GOMAXPROCS), each
// firing with the evidence it rests on.
package diagnose

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/corepipe/corepipe"
)

// Severities, in the checks' own short words.
const (
	Info     = corepipe.SeverityInfo
	Warning  = corepipe.SeverityWarning
	Critical = corepipe.SeverityCritical
)

// Codes of the checks.
const (
	CodeExitSignal       = "exit_signal"
	CodeOOMKilled        = "oom_killed"
	CodeOutOfMemory      = "out_of_memory"
	CodeMemoryLimit      = "memory_over_gomemlimit"
	CodeThreadExhaustion = "thread_exhaustion"
	CodeCgoFault         = "cgo_fault"
	CodeCFault           = "c_fault"
	CodeNilDereference   = "nil_dereference"
	CodeWildPointer      = "wild_pointer"
	CodeBusError         = "bus_error"
	CodeDeadlock         = "deadlock"
	CodeConcurrentMap    = "concurrent_map_access"
	CodeStackOverflow    = "stack_overflow"
	CodeGoroutineLeak    = "goroutine_leak"
	// The checks against the container's cgroup limits (container.go).
	CodeContainerMemory     = "container_memory"
	CodeGoMemLimitContainer = "gomemlimit_vs_container"
	CodePidsLimit           = "pids_limit"
	CodeGOMAXPROCSQuota     = "gomaxprocs_over_cpu_quota"
)

// Leak thresholds: this many goroutines, or this many with one stack, is
// more than a healthy service parks.
const (
	leakTotal = 10000
	leakGroup = 1000
)

// nilPage ends the page no program maps.
const nilPage = 0x1000

// Diagnose returns the checks that fire for r. c is the crash manifest, nil
// when only the core is known (`corepipe analyze`); r's goroutine groups
// should be filled first.
func Diagnose(r *corepipe.Report, c *corepipe.Crash) []corepipe.Diagnosis {
	var env, limits map[string]string
	var cl *corepipe.CgroupLimits
	if c != nil {
		env, limits, cl = c.Environ, c.Limits, c.CgroupLimits
	}
	var out []corepipe.Diagnosis
	add := func(d *corepipe.Diagnosis) {
		if d != nil {
			out = append(out, *d)
		}
	}
	add(exitSignal(r))
	add(oomKilled(r, env))
	add(outOfMemory(r, env, limits))
	add(overMemoryLimit(r, env))
	mem := containerMemory(r, cl)
	add(mem)
	add(goMemLimitVsContainer(r, env, cl, mem != nil))
	add(threadExhaustion(r, limits, cl))
	add(pidsLimit(r, cl))
	add(gomaxprocsQuota(r, env, cl))
	add(nativeFault(r))
	add(pointerFault(r))
	add(deadlock(r))
	add(concurrentMap(r))
	add(stackOverflow(r))
	add(goroutineLeak(r))
	add(noCore(r))
	return out
}

func message(r *corepipe.Report) string {
	if r.Panic == nil {
		return ""
	}
	return r.Panic.Message
}

// fatal reports whether the process died of a fatal error starting with one
// of msgs: the last entry of its panic chain (corepipe.Panic.Last), so that a
// fatal error in a deferred call of a panic counts.
func fatal(r *corepipe.Report, msgs ...string) bool {
	if r.Panic == nil {
		return false
	}
	last := r.Panic.Last()
	if last.Kind != corepipe.PanicKindFatal {
		return false
	}
	for _, m := range msgs {
		if strings.HasPrefix(last.Message, m) {
			return true
		}
	}
	return false
}

// exitSignal explains the exit code a container reports for this death:
// 128+n for signal n, 2 for a Go panic without a core.
func exitSignal(r *corepipe.Report) *corepipe.Diagnosis {
	if t := r.Termination; t != nil {
		switch {
		case t.ExitCode > 128 && t.ExitCode < 128+65:
			n := t.ExitCode - 128
			return &corepipe.Diagnosis{Code: CodeExitSignal, Severity: Info,
				Message:  corepipe.ExitCodeMeaning(t.ExitCode, n),
				Evidence: fmt.Sprintf("exit code %d = 128 + %d; reason %q", t.ExitCode, n, t.Reason)}
		case t.ExitCode == 2:
			return &corepipe.Diagnosis{Code: CodeExitSignal, Severity: Info,
				Message:  corepipe.ExitCodeMeaning(t.ExitCode, 0),
				Evidence: fmt.Sprintf("exit code 2; reason %q", t.Reason)}
		}
		return nil
	}
	if r.Signal == nil || r.Signal.Number <= 0 {
		return nil
	}
	n := r.Signal.Number
	return &corepipe.Diagnosis{Code: CodeExitSignal, Severity: Info,
		Message:  fmt.Sprintf("killed by %s: a container exits with code %d (128 + %d)", r.Signal.Name, 128+n, n) + meaning(n),
		Evidence: fmt.Sprintf("the kernel dumped the core for signal %d (%s)", n, r.Signal.Name)}
}

// meaning is the domain's word on signal n, as a clause of a sentence.
func meaning(n int) string {
	if m := corepipe.SignalMeaning(n); m != "" {
		return "; " + m
	}
	return ""
}

func oomKilled(r *corepipe.Report, env map[string]string) *corepipe.Diagnosis {
	t := r.Termination
	if t == nil || !(t.Reason == "OOMKilled" || (t.ExitCode == 137 && r.Artifacts.Core.Key == "" && len(r.Goroutines) == 0)) {
		return nil
	}
	msg := "the container was killed for exceeding its memory limit (no core is ever dumped for an OOM kill)"
	if env["GOMEMLIMIT"] == "" {
		msg += "; GOMEMLIMIT is not set: set it to about 90% of the container's memory limit so that the Go collector works harder before the kernel kills"
	}
	return &corepipe.Diagnosis{Code: CodeOOMKilled, Severity: Critical, Message: msg,
		Evidence: fmt.Sprintf("reason %q, exit code %d%s", t.Reason, t.ExitCode, envEvidence(env))}
}

func outOfMemory(r *corepipe.Report, env, limits map[string]string) *corepipe.Diagnosis {
	if !fatal(r, "out of memory", "runtime: cannot allocate memory") {
		return nil
	}
	ev := []string{"fatal error: " + r.Panic.Last().Message}
	ev = append(ev, processMemory(r)...)
	if rt := r.Runtime; rt != nil && rt.HeapLive > 0 {
		ev = append(ev, "live heap "+formatBytes(rt.HeapLive))
	}
	if as := limits["Max address space"]; as != "" && as != "unlimited" {
		ev = append(ev, "address-space limit (ulimit -v) "+as+" bytes")
	}
	return &corepipe.Diagnosis{Code: CodeOutOfMemory, Severity: Critical,
		Message:  "the Go runtime could not get memory from the kernel: an allocation beyond the address-space or memory limit, or the heap grew until the node ran out",
		Evidence: strings.Join(ev, "; ") + envEvidence(env)}
}

// overMemoryLimit fires when the process held more than its soft memory
// limit: the limit is not protecting it, the live heap is simply too big.
func overMemoryLimit(r *corepipe.Report, env map[string]string) *corepipe.Diagnosis {
	limit := goMemLimit(r, env)
	if limit <= 0 || r.Process.RSS <= limit {
		return nil
	}
	return &corepipe.Diagnosis{Code: CodeMemoryLimit, Severity: Warning,
		Message:  "the process used more memory than GOMEMLIMIT: the live heap (or memory outside the Go heap: cgo, stacks) is larger than the limit allows",
		Evidence: fmt.Sprintf("RSS %s > GOMEMLIMIT %s", formatBytes(uint64(r.Process.RSS)), formatBytes(uint64(limit)))}
}

// goMemLimit is the process's soft memory limit in bytes, as the runtime
// held it or else as GOMEMLIMIT set it; 0 when unset or unknown.
func goMemLimit(r *corepipe.Report, env map[string]string) int64 {
	if r.Runtime != nil && r.Runtime.MemoryLimit > 0 {
		return r.Runtime.MemoryLimit
	}
	return parseBytes(env["GOMEMLIMIT"])
}

// threadFailure reports whether the runtime died failing to start a thread.
func threadFailure(r *corepipe.Report) bool {
	return fatal(r, "thread exhaustion", "newosproc", "failed to create new OS thread") ||
		strings.Contains(message(r), "pthread_create failed")
}

func threadExhaustion(r *corepipe.Report, limits map[string]string, cl *corepipe.CgroupLimits) *corepipe.Diagnosis {
	if !threadFailure(r) {
		return nil
	}
	var ev []string
	if n := len(r.Threads); n > 0 {
		ev = append(ev, fmt.Sprintf("%d OS threads in the core", n))
	}
	if rt := r.Runtime; rt != nil && rt.MaxThreads > 0 {
		ev = append(ev, fmt.Sprintf("the runtime had started %d threads, its limit (debug.SetMaxThreads) is %d", rt.Threads, rt.MaxThreads))
	}
	if np := limits["Max processes"]; np != "" {
		ev = append(ev, "Max processes (ulimit -u) "+np)
	}
	if cl != nil && cl.PidsMax > 0 {
		ev = append(ev, fmt.Sprintf("cgroup pids.max %d, pids.current %d", cl.PidsMax, cl.PidsCurrent))
	}
	if n := r.Process.Threads; n > 0 {
		ev = append(ev, fmt.Sprintf("%d threads when the collector read /proc", n))
	}
	if n := countGoroutines(r, func(g *corepipe.Goroutine) bool { return g.Status == "syscall" || g.ThreadID != 0 }); n > 0 {
		ev = append(ev, fmt.Sprintf("%d goroutines in system calls or locked to a thread", n))
	}
	return &corepipe.Diagnosis{Code: CodeThreadExhaustion, Severity: Critical,
		Message:  "the process ran out of OS threads: every blocking system call, cgo call or LockOSThread holds one; the limit is the runtime's (debug.SetMaxThreads), the user's (ulimit -u) or the cgroup's pids.max",
		Evidence: strings.Join(ev, "; ")}
}

// nativeFault fires for a fault in C code: inside a cgo call of a Go
// program, or anywhere in a C program.
func nativeFault(r *corepipe.Report) *corepipe.Diagnosis {
	f := r.Fault
	if f == nil || len(r.Threads) == 0 || (r.Panic != nil && r.Panic.Kind != corepipe.PanicKindSignal) {
		return nil
	}
	var fns []string
	for _, fr := range r.Threads[0].Frames {
		if len(fns) < 3 {
			fns = append(fns, fr.Function)
		}
	}
	where := strings.Join(fns, " ← ")
	inLibc := len(fns) > 0 && strings.HasPrefix(fns[0], "libc.so")
	if r.Go == nil {
		msg := fmt.Sprintf("the C program faulted (%s at %s)", f.Name, f.Address)
		if inLibc {
			msg += " inside libc: usually a bad argument passed to it (freed or overrun memory, a NULL string)"
		}
		return &corepipe.Diagnosis{Code: CodeCFault, Severity: Critical, Message: msg, Evidence: "faulting thread: " + where}
	}
	if len(fns) == 0 || strings.Contains(fns[0], ".") && !strings.HasPrefix(fns[0], "libc.so") {
		return nil // a Go function: the runtime would have made it a panic
	}
	return &corepipe.Diagnosis{Code: CodeCgoFault, Severity: Critical,
		Message:  fmt.Sprintf("C code called through cgo faulted (%s at %s); Go's panics and recover cannot catch a fault in C", f.Name, f.Address),
		Evidence: "faulting thread: " + where + cgoCaller(r)}
}

func cgoCaller(r *corepipe.Report) string {
	g := r.CrashingGoroutineReport()
	if g == nil {
		return ""
	}
	for _, f := range g.Frames {
		if !strings.HasPrefix(f.Function, "runtime.") && !strings.Contains(f.Function, "_Cfunc_") {
			return "; called from Go in " + f.Function
		}
	}
	return ""
}

func pointerFault(r *corepipe.Report) *corepipe.Diagnosis {
	f := r.Fault
	if f == nil {
		return nil
	}
	addr, err := strconv.ParseUint(strings.TrimPrefix(f.Address, "0x"), 16, 64)
	if err != nil {
		return nil
	}
	ev := fmt.Sprintf("%s %s at address %s, pc %s", f.Name, f.CodeName, f.Address, f.PC)
	switch {
	case f.Name == "SIGBUS" && f.CodeName == "BUS_ADRERR":
		return &corepipe.Diagnosis{Code: CodeBusError, Severity: Critical,
			Message:  "a read or write past the end of a memory-mapped file: the file was truncated (or the disk filled) while mapped",
			Evidence: ev}
	case (f.Name == "SIGSEGV" || f.Name == "SIGBUS") && addr < nilPage:
		return &corepipe.Diagnosis{Code: CodeNilDereference, Severity: Critical,
			Message:  fmt.Sprintf("nil pointer dereference: the address %s is a field offset from nil", f.Address),
			Evidence: ev}
	case f.Name == "SIGSEGV":
		return &corepipe.Diagnosis{Code: CodeWildPointer, Severity: Critical,
			Message:  fmt.Sprintf("wild pointer: %s is far from nil, so the pointer itself was garbage — unsafe pointer arithmetic, memory freed by C, or a data race tearing a pointer", f.Address),
			Evidence: ev}
	}
	return nil
}

func deadlock(r *corepipe.Report) *corepipe.Diagnosis {
	if !fatal(r, "all goroutines are asleep - deadlock!") {
		return nil
	}
	return &corepipe.Diagnosis{Code: CodeDeadlock, Severity: Critical,
		Message:  "every goroutine was blocked with nothing left to wake it: a channel nobody sends on, a mutex never unlocked, a WaitGroup never done",
		Evidence: groupsEvidence(r, 4)}
}

func concurrentMap(r *corepipe.Report) *corepipe.Diagnosis {
	if !fatal(r, "concurrent map writes", "concurrent map read and map write", "concurrent map iteration and map write", "concurrent map clear and map write") {
		return nil
	}
	ev := []string{"fatal error: " + r.Panic.Last().Message}
	if fn := userFrame(r.CrashingGoroutineReport()); fn != "" {
		ev = append(ev, fmt.Sprintf("goroutine %d was in %s", r.CrashingGoroutine, fn))
	}
	if n := countGoroutines(r, func(g *corepipe.Goroutine) bool {
		return g.ID != r.CrashingGoroutine && g.Status == "running" && userFrame(g) != ""
	}); n > 0 {
		ev = append(ev, fmt.Sprintf("%d other goroutines were running program code", n))
	}
	return &corepipe.Diagnosis{Code: CodeConcurrentMap, Severity: Critical,
		Message:  "a map was used by several goroutines without a lock: guard it with a sync.Mutex or use sync.Map; `go test -race` finds the other side",
		Evidence: strings.Join(ev, "; ")}
}

// countGoroutines is how many of r's goroutines match.
func countGoroutines(r *corepipe.Report, match func(g *corepipe.Goroutine) bool) int {
	n := 0
	for i := range r.Goroutines {
		if match(&r.Goroutines[i]) {
			n++
		}
	}
	return n
}

func stackOverflow(r *corepipe.Report) *corepipe.Diagnosis {
	if !fatal(r, "stack overflow") {
		return nil
	}
	g := r.CrashingGoroutineReport()
	if g == nil {
		return &corepipe.Diagnosis{Code: CodeStackOverflow, Severity: Critical,
			Message: "a goroutine's stack outgrew its limit (debug.SetMaxStack, 1 GB by default)", Evidence: "fatal error: stack overflow"}
	}
	counts := map[string]int{}
	top, most := "", 0
	for _, f := range g.Frames {
		counts[f.Function]++
		if counts[f.Function] > most {
			top, most = f.Function, counts[f.Function]
		}
	}
	return &corepipe.Diagnosis{Code: CodeStackOverflow, Severity: Critical,
		Message: fmt.Sprintf("unbounded recursion in %s: the goroutine's stack outgrew its limit", top),
		Evidence: fmt.Sprintf("goroutine %d had %d frames (%d kept, %d elided); %s is %d of the kept ones",
			g.ID, len(g.Frames)+g.FramesElided, len(g.Frames), g.FramesElided, top, most)}
}

func goroutineLeak(r *corepipe.Report) *corepipe.Diagnosis {
	if len(r.GoroutineGroups) == 0 {
		return nil
	}
	biggest := r.GoroutineGroups[0]
	if len(r.Goroutines) < leakTotal && biggest.Count < leakGroup {
		return nil
	}
	return &corepipe.Diagnosis{Code: CodeGoroutineLeak, Severity: Warning,
		Message:  fmt.Sprintf("%d goroutines, %d of them with one stack: goroutines started and never finished", len(r.Goroutines), biggest.Count),
		Evidence: groupsEvidence(r, 3)}
}

// groupsEvidence describes the biggest goroutine groups that run the
// program's own code: the runtime's background goroutines say nothing.
func groupsEvidence(r *corepipe.Report, n int) string {
	var parts []string
	for _, g := range r.GoroutineGroups {
		fn := userFrame(&corepipe.Goroutine{Frames: g.TopFrames})
		if fn == "" {
			continue
		}
		if len(parts) == n {
			break
		}
		s := fmt.Sprintf("%d × [%s] in %s", g.Count, g.Status, fn)
		if g.CreatedBy != "" {
			s += " created by " + g.CreatedBy
		}
		parts = append(parts, s)
	}
	return fmt.Sprintf("%d goroutines: %s", len(r.Goroutines), strings.Join(parts, "; "))
}

// userFrame is the innermost function of g that is not the runtime's.
func userFrame(g *corepipe.Goroutine) string {
	if g == nil {
		return ""
	}
	for _, f := range g.Frames {
		if f.Function != "panic" && !strings.HasPrefix(f.Function, "runtime.") && !strings.HasPrefix(f.Function, "internal/runtime/") {
			return f.Function
		}
	}
	return ""
}

func processMemory(r *corepipe.Report) []string {
	var ev []string
	if r.Process.RSS > 0 {
		ev = append(ev, "RSS "+formatBytes(uint64(r.Process.RSS)))
	}
	if r.Process.Peak > 0 {
		ev = append(ev, "peak virtual memory "+formatBytes(uint64(r.Process.Peak)))
	}
	return ev
}

// envEvidence lists the Go memory settings of the process's environment.
func envEvidence(env map[string]string) string {
	var parts []string
	for _, k := range []string{"GOMEMLIMIT", "GOGC"} {
		if v, ok := env[k]; ok {
			parts = append(parts, k+"="+v)
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "; " + strings.Join(parts, " ")
}

// formatBytes writes n for a person, rounded in binary units ("900.0 MiB"),
// as the evidence compares it with limits written the same way.
func formatBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// parseBytes reads a GOMEMLIMIT value ("512MiB", "1GiB", "1000000"); 0
// when it cannot.
func parseBytes(s string) int64 {
	s = strings.TrimSpace(s)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"B", 1}} {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			n, err := strconv.ParseInt(num, 10, 64)
			if err != nil {
				return 0
			}
			return n * u.mult
		}
	}
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// Known reports whether code is one of this package's checks.
func Known(code string) bool {
	switch code {
	case CodeExitSignal, CodeOOMKilled, CodeOutOfMemory, CodeMemoryLimit, CodeThreadExhaustion,
		CodeCgoFault, CodeCFault, CodeNilDereference, CodeWildPointer, CodeBusError,
		CodeDeadlock, CodeConcurrentMap, CodeStackOverflow, CodeGoroutineLeak,
		CodeContainerMemory, CodeGoMemLimitContainer, CodePidsLimit, CodeGOMAXPROCSQuota, CodeNoCore:
		return true
	}
	return false
}
