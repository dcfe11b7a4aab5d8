package corepipe

import "testing"

// TestPanicLast: a chain is named by its last entry, what killed the
// process; the whole chain stays in the message.
func TestPanicLast(t *testing.T) {
	for _, tc := range []struct {
		p    Panic
		want Panic
	}{
		{Panic{PanicKindPanic, "plain"}, Panic{PanicKindPanic, "plain"}},
		{Panic{PanicKindPanic, "first line\nsecond line"}, Panic{PanicKindPanic, "first line\nsecond line"}},
		{Panic{PanicKindPanic, "A [recovered]\npanic: B"}, Panic{PanicKindPanic, "B"}},
		{Panic{PanicKindPanic, "A\npanic: B\npanic: C\nwith a second line"}, Panic{PanicKindPanic, "C\nwith a second line"}},
		{Panic{PanicKindPanic, "A\nfatal error: sync: unlock of unlocked mutex"}, Panic{PanicKindFatal, "sync: unlock of unlocked mutex"}},
		{Panic{PanicKindPanic, "A [recovered]\npanic: B\nfatal error: concurrent map writes"}, Panic{PanicKindFatal, "concurrent map writes"}},
		{Panic{PanicKindSignal, "SIGSEGV: segmentation violation"}, Panic{PanicKindSignal, "SIGSEGV: segmentation violation"}},
	} {
		if got := tc.p.Last(); got != tc.want {
			t.Errorf("%q.Last() = %+v, want %+v", tc.p.Message, got, tc.want)
		}
	}
}

// TestThrowSiteTitle: a throw on a system stack with no crashing goroutine
// is titled by the function that threw; a deadlock, by no place.
func TestThrowSiteTitle(t *testing.T) {
	runtimeStack := func(fns ...string) []Thread {
		var frames []Frame
		for _, fn := range fns {
			frames = append(frames, Frame{Function: fn})
		}
		return []Thread{{ID: 7, Frames: frames}}
	}
	parked := []Goroutine{{ID: 1, Status: "sleep", Frames: []Frame{{Function: "time.Sleep"}, {Function: "main.main"}}}}
	for _, tc := range []struct {
		name  string
		r     Report
		site  string
		title string
	}{
		{"threads", Report{Panic: &Panic{PanicKindFatal, "thread exhaustion"}, Goroutines: parked,
			Threads: runtimeStack("runtime.throw", "runtime.checkmcount", "runtime.mReserveID", "runtime.startm", "runtime.mstart")},
			"runtime.checkmcount", "fatal error: thread exhaustion in runtime.checkmcount"},
		{"fault in the runtime", Report{Panic: &Panic{PanicKindFatal, "unexpected signal during runtime execution"}, Goroutines: parked,
			Threads: runtimeStack("runtime.throw", "runtime.sigpanic", "runtime.(*mheap).allocSpan", "runtime.mstart")},
			"runtime.(*mheap).allocSpan", "fatal error: unexpected signal during runtime execution in runtime.(*mheap).allocSpan"},
		{"deadlock", Report{Panic: &Panic{PanicKindFatal, "all goroutines are asleep - deadlock!"}, Goroutines: parked,
			Threads: runtimeStack("runtime.fatal", "runtime.checkdead", "runtime.mput", "runtime.mcall")},
			"", "fatal error: all goroutines are asleep - deadlock!"},
		{"a goroutine crashed", Report{Panic: &Panic{PanicKindFatal, "stack overflow"}, CrashingGoroutine: 1,
			Goroutines: []Goroutine{{ID: 1, Frames: []Frame{{Function: "main.recurse"}}}},
			Threads:    runtimeStack("runtime.throw", "runtime.newstack", "runtime.morestack")},
			"", "fatal error: stack overflow in main.recurse"},
		{"no runtime stack", Report{Panic: &Panic{PanicKindFatal, "thread exhaustion"}, Goroutines: parked,
			Threads: runtimeStack("runtime.raise", "runtime.dieFromSignal")},
			"", "fatal error: thread exhaustion"},
		{"fatal error in a deferred call", Report{Panic: &Panic{PanicKindPanic, "A\nfatal error: sync: unlock of unlocked mutex"}, CrashingGoroutine: 1,
			Goroutines: []Goroutine{{ID: 1, Frames: []Frame{{Function: "internal/sync.fatal"}, {Function: "sync.(*Mutex).Unlock"}, {Function: "main.f"}}}}},
			"", "fatal error: sync: unlock of unlocked mutex in sync.(*Mutex).Unlock"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.r.ThrowSite(); got != tc.site {
				t.Errorf("ThrowSite() = %q, want %q", got, tc.site)
			}
			if got := Title(&tc.r, ""); got != tc.title {
				t.Errorf("Title = %q, want %q", got, tc.title)
			}
		})
	}
}
