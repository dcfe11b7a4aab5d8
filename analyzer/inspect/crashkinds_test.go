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
		kind  string
		check func(t *testing.T, r *corepipe.Report)
	}{
		{"nilfield", func(t *testing.T, r *corepipe.Report) {
			wantFault(t, r, "SIGSEGV", "SEGV_MAPERR", "0x10")
			wantPanic(t, r, corepipe.PanicKindPanic, "runtime error: invalid memory address or nil pointer dereference")
			wantTitle(t, r, "nil pointer dereference in main.(*server).retries")
		}},
		{"wild", func(t *testing.T, r *corepipe.Report) {
			wantFault(t, r, "SIGSEGV", "SEGV_MAPERR", "0xdeadbeef000")
			wantPanic(t, r, corepipe.PanicKindFatal, "fault")
			wantTitle(t, r, "wild pointer dereference (SIGSEGV at 0xdeadbeef000) in main.wild")
		}},
		{"sigbus", func(t *testing.T, r *corepipe.Report) {
			wantFault(t, r, "SIGBUS", "BUS_ADRERR", "")
			wantPanic(t, r, corepipe.PanicKindFatal, "fault")
			if !strings.HasPrefix(r.Title, "bus error (BUS_ADRERR") || !strings.HasSuffix(r.Title, "in main.sigbus") {
				t.Errorf("title = %q", r.Title)
			}
		}},
		{"index", func(t *testing.T, r *corepipe.Report) {
			wantPanic(t, r, corepipe.PanicKindPanic, "runtime error: index out of range [5] with length 3")
			wantTitle(t, r, "panic: runtime error: index out of range [5] with length 3 in main.index")
		}},
		{"nilmap", func(t *testing.T, r *corepipe.Report) {
			wantPanic(t, r, corepipe.PanicKindPanic, "assignment to entry in nil map")
		}},
		{"divide", func(t *testing.T, r *corepipe.Report) {
			wantPanic(t, r, corepipe.PanicKindPanic, "runtime error: integer divide by zero")
			wantTitle(t, r, "panic: runtime error: integer divide by zero in main.divide")
		}},
		{"assert", func(t *testing.T, r *corepipe.Report) {
			wantPanic(t, r, corepipe.PanicKindPanic, "interface conversion: interface {} is string, not int")
		}},
		{"string", func(t *testing.T, r *corepipe.Report) {
			wantPanic(t, r, corepipe.PanicKindPanic, "plain message")
			if r.Fault != nil {
				t.Errorf("a plain panic has no fault: %+v", r.Fault)
			}
		}},
		{"error", func(t *testing.T, r *corepipe.Report) {
			wantPanic(t, r, corepipe.PanicKindPanic, "connection reset by peer")
		}},
		{"customerror", func(t *testing.T, r *corepipe.Report) {
			wantPanic(t, r, corepipe.PanicKindPanic, "flush failed with code 7")
		}},
		{"struct", func(t *testing.T, r *corepipe.Report) {
			if r.Panic == nil || !strings.HasPrefix(r.Panic.Message, "(main.state) 0x") {
				t.Errorf("panic = %+v, want (main.state) 0x…", r.Panic)
			}
		}},
		{"named", func(t *testing.T, r *corepipe.Report) {
			wantPanic(t, r, corepipe.PanicKindPanic, `main.named("typed")`)
		}},
		{"stringer", func(t *testing.T, r *corepipe.Report) {
			wantPanic(t, r, corepipe.PanicKindPanic, "level-3")
		}},
		{"float", func(t *testing.T, r *corepipe.Report) {
			wantPanic(t, r, corepipe.PanicKindPanic, "1.5")
		}},
		{"recovered", func(t *testing.T, r *corepipe.Report) {
			wantPanic(t, r, corepipe.PanicKindPanic, "first failure [recovered]\npanic: second failure")
			// A chain is titled by its last entry (corepipe.Panic.Last).
			wantTitle(t, r, "panic: second failure in main.repanic.func1")
		}},
		{"repanicked", func(t *testing.T, r *corepipe.Report) {
			wantPanic(t, r, corepipe.PanicKindPanic, "first failure [recovered, repanicked]")
		}},
		{"nested", func(t *testing.T, r *corepipe.Report) {
			wantPanic(t, r, corepipe.PanicKindPanic, "first failure\npanic: second failure")
		}},
		{"mapwrites", func(t *testing.T, r *corepipe.Report) {
			wantPanic(t, r, corepipe.PanicKindFatal, "concurrent map writes")
			wantTitle(t, r, "fatal error: concurrent map writes in main.hammer")
		}},
		{"deadlock", func(t *testing.T, r *corepipe.Report) {
			wantPanic(t, r, corepipe.PanicKindFatal, "all goroutines are asleep - deadlock!")
			if r.CrashingGoroutine != 0 {
				t.Errorf("crashing goroutine %d in a deadlock, want none", r.CrashingGoroutine)
			}
			wantTitle(t, r, "fatal error: all goroutines are asleep - deadlock!")
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
		{"oom", func(t *testing.T, r *corepipe.Report) {
			wantPanic(t, r, corepipe.PanicKindFatal, "out of memory")
			wantTitle(t, r, "fatal error: out of memory in main.main")
		}},
		{"overflow", func(t *testing.T, r *corepipe.Report) {
			wantPanic(t, r, corepipe.PanicKindFatal, "stack overflow")
			wantTitle(t, r, "fatal error: stack overflow in main.recurse")
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
		{"threads", func(t *testing.T, r *corepipe.Report) {
			wantPanic(t, r, corepipe.PanicKindFatal, "thread exhaustion")
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
			tc.check(t, r)
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
