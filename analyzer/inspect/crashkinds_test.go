package inspect

import (
	"slices"
	"strings"
	"testing"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
	"github.com/corepipe/corepipe/internal/testkit/gotraceback"
)

// crashExe crashes exe with args under the real kernel, analyses the core,
// and requires the report to agree with the runtime's own output. It
// returns the report and the parsed runtime output. Every goroutine's
// frames are compared, inlined calls included.
func crashExe(t *testing.T, exe string, env []string, args ...string) (*corepipe.Report, *gotraceback.Dump) {
	t.Helper()
	core, res := crashtest.Core(t, exe, env, args...)
	r := inspect(t, core, exe)
	return r, agree(t, r, res.Stderr)
}

// agree requires r to agree with the runtime's output, stderr, and returns
// that output parsed.
func agree(t *testing.T, r *corepipe.Report, stderr string) *gotraceback.Dump {
	t.Helper()
	d, err := gotraceback.Parse(stderr)
	if err != nil {
		t.Fatalf("parse the runtime's output: %v\n%s", err, stderr)
	}
	diffs := append(gotraceback.Compare(r, d), gotraceback.CompareStacks(r, d)...)
	if partial(r) {
		// Only the crashing goroutine was readable: it must still be right.
		diffs = slices.DeleteFunc(diffs, func(s string) bool { return strings.HasPrefix(s, "goroutines: report lacks") })
	}
	if len(diffs) > 0 {
		t.Errorf("report disagrees with the runtime:\n%s\n\nruntime printed:\n%s", strings.Join(diffs, "\n"), tailLines(stderr, 60))
	}
	return d
}

// partial reports whether r says it could read only the crashing goroutine.
func partial(r *corepipe.Report) bool {
	return slices.ContainsFunc(r.Diagnosis, func(d corepipe.Diagnosis) bool { return d.Code == "goroutines_unreadable" })
}

func tailLines(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// userFrames are the crashing goroutine's frames in package main.
func userFrames(r *corepipe.Report) []string {
	var out []string
	if g := r.CrashingGoroutineReport(); g != nil {
		for _, f := range g.Frames {
			if strings.HasPrefix(f.Function, "main.") {
				out = append(out, f.Function)
			}
		}
	}
	return out
}

func wantPanic(t *testing.T, r *corepipe.Report, kind, msg string) {
	t.Helper()
	if r.Panic == nil || r.Panic.Kind != kind || r.Panic.Message != msg {
		t.Errorf("panic = %+v, want %s %q", r.Panic, kind, msg)
	}
}

func wantTitle(t *testing.T, r *corepipe.Report, want string) {
	t.Helper()
	if r.Title != want {
		t.Errorf("title = %q, want %q", r.Title, want)
	}
}

func wantFault(t *testing.T, r *corepipe.Report, name, codeName, addr string) {
	t.Helper()
	f := r.Fault
	if f == nil || f.Name != name || f.CodeName != codeName || (addr != "" && f.Address != addr) || f.PC == "" {
		t.Errorf("fault = %+v, want %s %s at %s", f, name, codeName, addr)
	}
}

// TestCrashKinds crashes one program in every way a Go program dies, each
// under the real kernel, and checks each report against the runtime's own
// traceback plus what is particular to that kind.
func TestCrashKinds(t *testing.T) {
	t.Parallel()
	exe := crashtest.BuildKinds(t)

	for _, tc := range []struct {
		kind string
		// panicKind and panicMsg are the panic the report must carry, title
		// its title; an empty one is not checked.
		panicKind, panicMsg, title string
		// check holds what else is particular to the kind, if anything.
		check func(t *testing.T, r *corepipe.Report)
	}{
		{kind: "nilfield", panicKind: corepipe.PanicKindPanic, panicMsg: "runtime error: invalid memory address or nil pointer dereference",
			title: "nil pointer dereference in main.(*server).retries", check: func(t *testing.T, r *corepipe.Report) {
				wantFault(t, r, "SIGSEGV", "SEGV_MAPERR", "0x10")
			}},
		{kind: "wild", panicKind: corepipe.PanicKindFatal, panicMsg: "fault",
			title: "wild pointer dereference (SIGSEGV at 0xdeadbeef000) in main.wild", check: func(t *testing.T, r *corepipe.Report) {
				wantFault(t, r, "SIGSEGV", "SEGV_MAPERR", "0xdeadbeef000")
			}},
		{kind: "sigbus", panicKind: corepipe.PanicKindFatal, panicMsg: "fault", check: func(t *testing.T, r *corepipe.Report) {
			wantFault(t, r, "SIGBUS", "BUS_ADRERR", "")
			if !strings.HasPrefix(r.Title, "bus error (BUS_ADRERR") || !strings.HasSuffix(r.Title, "in main.sigbus") {
				t.Errorf("title = %q", r.Title)
			}
		}},
		{kind: "index", panicKind: corepipe.PanicKindPanic, panicMsg: "runtime error: index out of range [5] with length 3",
			title: "panic: runtime error: index out of range [5] with length 3 in main.index"},
		{kind: "nilmap", panicKind: corepipe.PanicKindPanic, panicMsg: "assignment to entry in nil map"},
		{kind: "divide", panicKind: corepipe.PanicKindPanic, panicMsg: "runtime error: integer divide by zero",
			title: "panic: runtime error: integer divide by zero in main.divide"},
		{kind: "assert", panicKind: corepipe.PanicKindPanic, panicMsg: "interface conversion: interface {} is string, not int"},
		{kind: "string", panicKind: corepipe.PanicKindPanic, panicMsg: "plain message", check: func(t *testing.T, r *corepipe.Report) {
			if r.Fault != nil {
				t.Errorf("a plain panic has no fault: %+v", r.Fault)
			}
		}},
		{kind: "error", panicKind: corepipe.PanicKindPanic, panicMsg: "connection reset by peer"},
		{kind: "customerror", panicKind: corepipe.PanicKindPanic, panicMsg: "flush failed with code 7"},
		{kind: "struct", check: func(t *testing.T, r *corepipe.Report) {
			if r.Panic == nil || !strings.HasPrefix(r.Panic.Message, "(main.state) 0x") {
				t.Errorf("panic = %+v, want (main.state) 0x…", r.Panic)
			}
		}},
		{kind: "named", panicKind: corepipe.PanicKindPanic, panicMsg: `main.named("typed")`},
		{kind: "stringer", panicKind: corepipe.PanicKindPanic, panicMsg: "level-3"},
		{kind: "float", panicKind: corepipe.PanicKindPanic, panicMsg: "1.5"},
		// A chain is titled by its last entry (corepipe.Panic.Last).
		{kind: "recovered", panicKind: corepipe.PanicKindPanic, panicMsg: "first failure [recovered]\npanic: second failure",
			title: "panic: second failure in main.repanic.func1"},
		{kind: "repanicked", panicKind: corepipe.PanicKindPanic, panicMsg: "first failure [recovered, repanicked]"},
		{kind: "nested", panicKind: corepipe.PanicKindPanic, panicMsg: "first failure\npanic: second failure"},
		{kind: "mapwrites", panicKind: corepipe.PanicKindFatal, panicMsg: "concurrent map writes",
			title: "fatal error: concurrent map writes in main.hammer"},
		{kind: "deadlock", panicKind: corepipe.PanicKindFatal, panicMsg: "all goroutines are asleep - deadlock!",
			title: "fatal error: all goroutines are asleep - deadlock!", check: func(t *testing.T, r *corepipe.Report) {
				if r.CrashingGoroutine != 0 {
					t.Errorf("crashing goroutine %d in a deadlock, want none", r.CrashingGoroutine)
				}
				var statuses []string
				for _, g := range r.Goroutines {
					statuses = append(statuses, g.Status)
				}
				for _, want := range []string{"chan receive", "sync.Mutex.Lock"} {
					if !slices.Contains(statuses, want) {
						t.Errorf("no goroutine is %q: %v", want, statuses)
					}
				}
			}},
		{kind: "oom", panicKind: corepipe.PanicKindFatal, panicMsg: "out of memory", title: "fatal error: out of memory in main.main"},
		{kind: "overflow", panicKind: corepipe.PanicKindFatal, panicMsg: "stack overflow",
			title: "fatal error: stack overflow in main.recurse", check: func(t *testing.T, r *corepipe.Report) {
				g := r.CrashingGoroutineReport()
				if g == nil {
					t.Fatal("no crashing goroutine")
				}
				if len(g.Frames) != defaultMaxFrames || g.FramesElided < 1_000_000 {
					t.Errorf("kept %d frames, elided %d: want %d kept of more than a million", len(g.Frames), g.FramesElided, defaultMaxFrames)
				}
				fns := functions(g)
				if want := []string{"main.recurse", "main.main", "runtime.main", "runtime.goexit"}; !slices.Equal(fns[len(fns)-4:], want) {
					t.Errorf("outermost frames %v, want %v", fns[len(fns)-4:], want)
				}
			}},
		{kind: "threads", panicKind: corepipe.PanicKindFatal, panicMsg: "thread exhaustion", check: func(t *testing.T, r *corepipe.Report) {
			if r.Runtime == nil || r.Runtime.MaxThreads != 12 || r.Runtime.Threads <= 12 {
				t.Errorf("runtime = %+v, want the 12-thread limit exceeded", r.Runtime)
			}
			if len(r.Threads) < 12 {
				t.Errorf("%d threads in the core, want at least the limit of 12", len(r.Threads))
			}
		}},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			t.Parallel()
			r, _ := crashExe(t, exe, nil, tc.kind)
			if tc.panicKind != "" {
				wantPanic(t, r, tc.panicKind, tc.panicMsg)
			}
			if tc.title != "" {
				wantTitle(t, r, tc.title)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
			if g := r.CrashingGoroutineReport(); r.CrashingGoroutine != 0 && (g == nil || r.Goroutines[0].ID != g.ID) {
				t.Errorf("crashing goroutine %d is not reported first", r.CrashingGoroutine)
			}
			if r.Runtime == nil || r.Runtime.GOMAXPROCS < 1 {
				t.Errorf("runtime state not read: %+v", r.Runtime)
			}
			if t.Failed() {
				t.Logf("report:\n%s", tailLines(dump(r), 200))
			}
		})
	}
}
