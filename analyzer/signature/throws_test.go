package signature

import (
	"slices"
	"testing"

	"github.com/corepipe/corepipe"
)

// TestThrowOnSystemStack: thread exhaustion is one group whichever
// scheduler path reached the limit, named by the function that threw, and
// not the group of a deadlock in the same program, which keeps its frames
// from the goroutines.
func TestThrowOnSystemStack(t *testing.T) {
	parked := []corepipe.Goroutine{{ID: 1, Status: "sleep", Frames: []corepipe.Frame{{Function: "time.Sleep"}, {Function: "main.main"}}}}
	report := func(msg string, stack ...string) *corepipe.Report {
		var frames []corepipe.Frame
		for _, fn := range stack {
			frames = append(frames, corepipe.Frame{Function: fn})
		}
		return &corepipe.Report{Panic: &corepipe.Panic{Kind: corepipe.PanicKindFatal, Message: msg},
			Goroutines: parked, Threads: []corepipe.Thread{{ID: 9, Frames: frames}}}
	}
	sysmon := report("thread exhaustion", "runtime.throw", "runtime.checkmcount", "runtime.mReserveID", "runtime.startm", "runtime.handoffp", "runtime.retake", "runtime.sysmon", "runtime.mstart")
	wakep := report("thread exhaustion", "runtime.throw", "runtime.checkmcount", "runtime.mReserveID", "runtime.startm", "runtime.wakep", "runtime.resetspinning", "runtime.schedule", "runtime.mcall")
	deadlock := report("all goroutines are asleep - deadlock!", "runtime.fatal", "runtime.checkdead", "runtime.mput", "runtime.stopm", "runtime.mcall")

	if got := Frames(sysmon); !slices.Equal(got, []string{"runtime.checkmcount"}) {
		t.Errorf("frames %v, want [runtime.checkmcount]", got)
	}
	if Signature(sysmon) != Signature(wakep) {
		t.Errorf("thread exhaustion by two scheduler paths: %s and %s", Signature(sysmon), Signature(wakep))
	}
	if got := Frames(deadlock); !slices.Equal(got, []string{"time.Sleep", "main.main"}) {
		t.Errorf("deadlock frames %v, want the goroutines'", got)
	}
}

// TestChainClass: a chain of panics is classed by its last entry, as its
// title names it.
func TestChainClass(t *testing.T) {
	r := func(kind, msg string) *corepipe.Report {
		return &corepipe.Report{Panic: &corepipe.Panic{Kind: kind, Message: msg}}
	}
	for _, tc := range []struct {
		r    *corepipe.Report
		want string
	}{
		{r(corepipe.PanicKindPanic, "first [recovered]\npanic: index 5"), "panic: index N"},
		{r(corepipe.PanicKindPanic, "first\nfatal error: sync: unlock of unlocked mutex"), "fatal error: sync: unlock of unlocked mutex"},
		{r(corepipe.PanicKindPanic, "line 1\nline 2"), "panic: line N\nline N"},
		{r(corepipe.PanicKindFatal, "concurrent map writes"), "fatal error: concurrent map writes"},
	} {
		if got := Class(tc.r); got != tc.want {
			t.Errorf("Class(%q) = %q, want %q", tc.r.Panic.Message, got, tc.want)
		}
	}
	if got, ok := Function("internal/sync.fatal"); ok {
		t.Errorf("internal/sync.fatal is kept as %q: it is the runtime's throw", got)
	}
}
