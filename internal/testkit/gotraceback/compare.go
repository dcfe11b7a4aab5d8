package gotraceback

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/corepipe/corepipe"
)

// Compare returns what r says differently from what the runtime printed in
// d, one sentence each; none when the report is faithful. It checks:
//
//   - the sets of goroutine ids;
//   - the crashing goroutine;
//   - the crashing goroutine's frames, function and line, in order, after
//     dropping on both sides the leading panic/throw/fault machinery (see
//     machinery): which of those frames appear depends on inlining and
//     on the Go version, not on the bug. When either side elided frames of
//     a deep stack, the innermost and outermost frames the runtime printed
//     are compared with the report's first and last ones;
//   - the system stack a fatal error was thrown on ("runtime stack:"),
//     every frame, function and line, against the report's dying thread
//     (Threads[0]);
//   - the kind and message of the panic or fatal error;
//   - the fault's address (when the runtime printed one: it does only for
//     SIGSEGV and SIGBUS), code and PC.
//
// A report of a program whose output holds no panic message (a C crash, a
// report from a core alone) is not blamed for what the dump lacks.
func Compare(r *corepipe.Report, d *Dump) []string {
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }

	want := make([]int64, 0, len(d.Goroutines))
	for _, g := range d.Goroutines {
		want = append(want, g.ID)
	}
	got := make([]int64, 0, len(r.Goroutines))
	for _, g := range r.Goroutines {
		got = append(got, g.ID)
	}
	if missing, extra := diff(want, got); len(missing)+len(extra) > 0 {
		add("goroutines: report lacks %v and has extra %v (runtime printed %d, report has %d)", clip(missing), clip(extra), len(want), len(got))
	}

	if r.CrashingGoroutine != d.CrashingGoroutine {
		add("crashing goroutine: report says %d, runtime printed %d first", r.CrashingGoroutine, d.CrashingGoroutine)
	}
	if d.CrashingGoroutine != 0 {
		out = append(out, compareFrames(r, d)...)
	}

	out = append(out, compareRuntimeStack(r, d)...)

	if d.Kind != "" {
		switch {
		case r.Panic == nil:
			add("panic: report has none, runtime printed %s %q", d.Kind, d.Message)
		case r.Panic.Kind != d.Kind || r.Panic.Message != d.Message:
			add("panic: report says %s %q, runtime printed %s %q", r.Panic.Kind, r.Panic.Message, d.Kind, d.Message)
		}
	}

	if s := d.Signal; s != nil {
		f := r.Fault
		switch {
		case f == nil:
			add("fault: report has none, runtime printed %s addr=%s pc=%s", s.Name, s.Address, s.PC)
		default:
			if f.Name != s.Name {
				add("fault signal: report says %s, runtime printed %s", f.Name, s.Name)
			}
			if s.Address != "" && !sameHex(f.Address, s.Address) {
				add("fault address: report says %s, runtime printed %s", f.Address, s.Address)
			}
			if !sameHex(f.PC, s.PC) {
				add("fault pc: report says %s, runtime printed %s", f.PC, s.PC)
			}
			if s.Code >= 0 && f.Code != s.Code {
				add("fault code: report says %d, runtime printed %d", f.Code, s.Code)
			}
		}
	}
	return out
}

func compareFrames(r *corepipe.Report, d *Dump) []string {
	var dg *Goroutine
	for i := range d.Goroutines {
		if d.Goroutines[i].ID == d.CrashingGoroutine {
			dg = &d.Goroutines[i]
		}
	}
	rg := r.CrashingGoroutineReport()
	if dg == nil || rg == nil {
		return nil // already reported as a goroutine or crashing-goroutine mismatch
	}
	type fl struct {
		fn   string
		line int
	}
	dump := make([]fl, 0, len(dg.Frames))
	for _, f := range dg.Frames {
		dump = append(dump, fl{f.Function, f.Line})
	}
	rep := make([]fl, 0, len(rg.Frames))
	for _, f := range rg.Frames {
		rep = append(rep, fl{f.Function, f.Line})
	}
	innerD, outerD := dump, []fl(nil)
	if dg.ElidedAt >= 0 {
		innerD, outerD = dump[:dg.ElidedAt], dump[dg.ElidedAt:]
	}
	skipD := machinery(innerD, func(f fl) string { return f.fn })
	skipR := machinery(rep, func(f fl) string { return f.fn })
	innerD, rep = innerD[skipD:], rep[skipR:]

	var out []string
	mismatch := func(what string, got, want []fl) {
		out = append(out, fmt.Sprintf("crashing goroutine %d %s frames:\n  report:  %s\n  runtime: %s", rg.ID, what, render(got), render(want)))
	}
	if dg.ElidedAt < 0 && rg.FramesElided == 0 {
		if !slices.Equal(rep, innerD) {
			mismatch("", rep, innerD)
		}
		return out
	}
	// A deep stack: compare the ends each side kept.
	n := min(len(innerD), len(rep))
	if !slices.Equal(rep[:n], innerD[:n]) {
		mismatch("innermost", rep[:n], innerD[:n])
	}
	if len(outerD) > 0 {
		m := min(len(outerD), len(rep))
		if !slices.Equal(rep[len(rep)-m:], outerD[len(outerD)-m:]) {
			mismatch("outermost", rep[len(rep)-m:], outerD[len(outerD)-m:])
		}
	}
	return out
}

// compareRuntimeStack checks the stack a throw happened on: the runtime
// prints it first, so the report must show it, frame for frame, as its
// dying thread's.
func compareRuntimeStack(r *corepipe.Report, d *Dump) []string {
	if len(d.RuntimeStack) == 0 {
		return nil
	}
	want := make([]string, 0, len(d.RuntimeStack))
	for _, f := range d.RuntimeStack {
		want = append(want, fmt.Sprintf("%s:%d", f.Function, f.Line))
	}
	var got []string
	if len(r.Threads) > 0 {
		for _, f := range r.Threads[0].Frames {
			got = append(got, fmt.Sprintf("%s:%d", f.Function, f.Line))
		}
	}
	if !slices.Equal(got, want) {
		return []string{fmt.Sprintf("runtime stack (the dying thread's):\n  report:  %s\n  runtime: %s", strings.Join(got, " → "), strings.Join(want, " → "))}
	}
	return nil
}

// machinery returns how many leading frames are the runtime's panic, throw
// or fault machinery: panic (runtime.gopanic), runtime.panic* and
// runtime.goPanic* (panicmem, panicIndex, …), runtime.sigpanic,
// runtime.throw, runtime.fatal, runtime.fatalthrow, runtime.fatalpanic.
// Frames below the first other frame are always compared.
func machinery[T any](frames []T, name func(T) string) int {
	for i, f := range frames {
		n := name(f)
		switch {
		case n == "panic", n == "runtime.gopanic", n == "runtime.sigpanic",
			n == "runtime.throw", n == "runtime.fatal", n == "runtime.fatalthrow", n == "runtime.fatalpanic",
			strings.HasPrefix(n, "runtime.panic"), strings.HasPrefix(n, "runtime.goPanic"):
		default:
			return i
		}
	}
	return len(frames)
}

func render[T any](frames []T) string {
	parts := make([]string, 0, len(frames))
	for _, f := range frames {
		s := fmt.Sprint(f)
		parts = append(parts, strings.Trim(s, "{}"))
	}
	return strings.Join(parts, " → ")
}

// diff returns the ids in want but not in got, and in got but not in want.
func diff(want, got []int64) (missing, extra []int64) {
	set := func(s []int64) map[int64]bool {
		m := make(map[int64]bool, len(s))
		for _, v := range s {
			m[v] = true
		}
		return m
	}
	w, g := set(want), set(got)
	for _, v := range want {
		if !g[v] {
			missing = append(missing, v)
		}
	}
	for _, v := range got {
		if !w[v] {
			extra = append(extra, v)
		}
	}
	return missing, extra
}

func clip(ids []int64) []int64 {
	if len(ids) > 10 {
		return ids[:10]
	}
	return ids
}

func sameHex(a, b string) bool {
	x, err1 := strconv.ParseUint(strings.TrimPrefix(a, "0x"), 16, 64)
	y, err2 := strconv.ParseUint(strings.TrimPrefix(b, "0x"), 16, 64)
	return err1 == nil && err2 == nil && x == y
}

// CompareStacks returns, one sentence each, the goroutines other than the
// crashing one whose frames, function and line, inlined calls included,
// differ from what the runtime printed for them; none when every stack is
// faithful. Compare checks the crashing goroutine; this is the rest of the
// dump. A goroutine the runtime printed without frames (running on another
// thread, stack unavailable) is not compared, nor is one the report lacks,
// which Compare already names.
func CompareStacks(r *corepipe.Report, d *Dump) []string {
	byID := make(map[int64]*corepipe.Goroutine, len(r.Goroutines))
	for i := range r.Goroutines {
		byID[r.Goroutines[i].ID] = &r.Goroutines[i]
	}
	var out []string
	for _, dg := range d.Goroutines {
		rg := byID[dg.ID]
		if dg.ID == d.CrashingGoroutine || rg == nil || len(dg.Frames) == 0 {
			continue
		}
		dump := make([]string, 0, len(dg.Frames))
		for _, f := range dg.Frames {
			dump = append(dump, fmt.Sprintf("%s:%d", f.Function, f.Line))
		}
		rep := make([]string, 0, len(rg.Frames))
		for _, f := range rg.Frames {
			rep = append(rep, fmt.Sprintf("%s:%d", f.Function, f.Line))
		}
		if dg.ElidedAt >= 0 || rg.FramesElided > 0 {
			n := min(len(dump), len(rep), max(dg.ElidedAt, 0))
			dump, rep = dump[:n], rep[:n]
		}
		if !slices.Equal(rep, dump) {
			out = append(out, fmt.Sprintf("goroutine %d [%s] frames:\n  report:  %s\n  runtime: %s", dg.ID, dg.Status, strings.Join(rep, " → "), strings.Join(dump, " → ")))
		}
	}
	return out
}
