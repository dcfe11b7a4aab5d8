package inspect

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/analyzer/signature"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
	"github.com/corepipe/corepipe/internal/testkit/gotraceback"
)

// TestPanicValues: issue 12 class 5. A panic value of every predeclared
// kind, plain and named, is printed as the runtime's printpanicval prints
// it, and a chain of panics (a panic in a deferred call, a fatal error in
// one) is kept whole in the runtime's order, while the title and the
// signature name its last entry (corepipe.Panic.Last). Each crash is also
// compared with the runtime's own output, every goroutine and frame.
func TestPanicValues(t *testing.T) {
	t.Parallel()
	exe := crashtest.BuildKinds(t)
	const in = " in main.panicWith"
	for _, tc := range []struct {
		kind string
		// msg is the panic message; one ending in "0x" is a prefix
		// (an address, which the runtime's output checks exactly).
		msg, title, class string
		fatal             string // the fatal error's message, instead of msg
	}{
		{kind: "value-bool", msg: "true", title: "panic: true" + in},
		{kind: "value-mybool", msg: "main.myBool(false)"},
		{kind: "value-int", msg: "-42"},
		{kind: "value-myint", msg: "main.myInt(-42)"},
		{kind: "value-int8", msg: "-128"},
		{kind: "value-myint8", msg: "main.myInt8(127)"},
		{kind: "value-int16", msg: "-32768"},
		{kind: "value-myint16", msg: "main.myInt16(1600)"},
		{kind: "value-int32", msg: "-2147483648"},
		{kind: "value-myint32", msg: "main.myInt32(320000)"},
		{kind: "value-int64", msg: "-4611686018427387904"},
		{kind: "value-myint64", msg: "main.myInt64(1099511627776)"},
		{kind: "value-uint", msg: "42"},
		{kind: "value-myuint", msg: "main.myUint(7)"},
		{kind: "value-uint8", msg: "255"},
		{kind: "value-myuint8", msg: "main.myUint8(200)"},
		{kind: "value-uint16", msg: "65535"},
		{kind: "value-myuint16", msg: "main.myUint16(1)"},
		{kind: "value-uint32", msg: "4000000000"},
		{kind: "value-myuint32", msg: "main.myUint32(0)"},
		{kind: "value-uint64", msg: "18446744073709551615"},
		{kind: "value-myuint64", msg: "main.myUint64(9223372036854775808)"},
		{kind: "value-uintptr", msg: "3735928559"},
		{kind: "value-myuintptr", msg: "main.myUintptr(4096)"},
		{kind: "value-float32", msg: "0.1"},
		{kind: "value-myfloat32", msg: "main.myFloat32(-3.5)"},
		{kind: "value-float64", msg: "-2.25e-10"},
		{kind: "value-myfloat64", msg: "main.myFloat64(32.1)"},
		{kind: "value-inf", msg: "+Inf"},
		{kind: "value-nan", msg: "NaN"},
		{kind: "value-myinf", msg: "main.myFloat64(-Inf)"},
		{kind: "value-complex64", msg: "(1+2i)"},
		{kind: "value-mycomplex64", msg: "main.MyComplex64(0.1-1i)"},
		{kind: "value-complex128", msg: "(32.1+10i)"},
		{kind: "value-mycomplex128", msg: "main.MyComplex128(32.1+10i)", title: "panic: main.MyComplex128(32.1+10i)" + in},
		{kind: "value-multiline", msg: "first line\nsecond line", title: "panic: first line" + in},
		{kind: "value-mystring", msg: "main.myString(\"named\nstring\")"},
		{kind: "value-wrappederror", msg: "save config: disk full"},
		{kind: "value-multilineerror", msg: "query failed:\n\tno rows"},
		{kind: "value-addrstringer", msg: "stringer db"},
		{kind: "value-nil", msg: "panic called with nil argument"},
		// An Error method that panics makes the runtime throw instead.
		{kind: "value-panickingerror", fatal: "panic while printing panic value: error method failed",
			title: "fatal error: panic while printing panic value: error method failed in main.panickingError.Error"},
		{kind: "value-pointer", msg: "(*int) 0x"},
		{kind: "value-slice", msg: "([]int) 0x"},
		{kind: "value-map", msg: "(map[string]int) 0x"},
		{kind: "value-func", msg: "(func()) 0x"},
		{kind: "value-array", msg: "([2]int) 0x"},
		{kind: "chain-three", msg: "first\npanic: main.myInt(2)\npanic: third",
			title: "panic: third in main.chainThree.func1", class: "panic: third"},
		{kind: "chain-goexit", msg: "during goexit"},
		{kind: "recovered", msg: "first failure [recovered]\npanic: second failure",
			title: "panic: second failure in main.repanic.func1", class: "panic: second failure"},
		// runtime.fatal prints the chain without preprintpanics: an error
		// is its type and address there.
		{kind: "chain-fatal", msg: "first failure\nfatal error: sync: unlock of unlocked mutex",
			title: "fatal error: sync: unlock of unlocked mutex in internal/sync.(*Mutex).unlockSlow",
			class: "fatal error: sync: unlock of unlocked mutex"},
		{kind: "chain-fatal-error", msg: "(*errors.errorString) 0x"},
		{kind: "chain-recovered-fatal", msg: "first [recovered]\npanic: second\nfatal error: sync: unlock of unlocked mutex",
			class: "fatal error: sync: unlock of unlocked mutex"},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			t.Parallel()
			r, _ := crashExe(t, exe, nil, tc.kind)
			if r.Panic == nil {
				t.Fatal("no panic in the report")
			}
			if tc.fatal != "" {
				wantPanic(t, r, corepipe.PanicKindFatal, tc.fatal)
			} else if prefix, ok := strings.CutSuffix(tc.msg, "0x"); ok {
				if !strings.HasPrefix(r.Panic.Message, prefix+"0x") {
					t.Errorf("panic message %q, want %s0x…", r.Panic.Message, prefix)
				}
			} else {
				wantPanic(t, r, corepipe.PanicKindPanic, tc.msg)
			}
			if tc.title != "" {
				wantTitle(t, r, tc.title)
			}
			if tc.class != "" {
				if got := signature.Class(r); got != tc.class {
					t.Errorf("signature class %q, want %q", got, tc.class)
				}
			}
			if t.Failed() {
				t.Logf("report:\n%s", tailLines(dump(r), 120))
			}
		})
	}
}

// TestRuntimeStack: issue 12 class 4. A fatal error thrown on a system
// stack shows that stack as the runtime prints it first ("runtime stack:",
// which crashExe compares frame for frame with the dying thread's), without
// the signal-handler frames of the crash that followed; with no crashing
// goroutine the title and the signature name the runtime function that
// threw.
func TestRuntimeStack(t *testing.T) {
	t.Parallel()
	exe := crashtest.BuildKinds(t)
	for _, tc := range []struct {
		kind, title string
		site        string   // ThrowSite, "" for none
		frames      []string // the runtime stack's functions
	}{
		{"threads", "fatal error: thread exhaustion in runtime.checkmcount", "runtime.checkmcount",
			[]string{"runtime.throw", "runtime.checkmcount", "runtime.mReserveID", "runtime.startm"}},
		{"deadlock", "fatal error: all goroutines are asleep - deadlock!", "",
			[]string{"runtime.fatal", "runtime.checkdead"}},
		{"overflow", "fatal error: stack overflow in main.recurse", "",
			[]string{"runtime.throw", "runtime.newstack", "runtime.morestack"}},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			t.Parallel()
			r, d := crashExe(t, exe, nil, tc.kind)
			if len(d.RuntimeStack) == 0 {
				t.Fatal("the runtime printed no runtime stack")
			}
			wantTitle(t, r, tc.title)
			if got := r.ThrowSite(); got != tc.site {
				t.Errorf("throw site %q, want %q", got, tc.site)
			}
			if len(r.Threads) == 0 {
				t.Fatal("no threads")
			}
			fns := make([]string, 0, len(r.Threads[0].Frames))
			for _, f := range r.Threads[0].Frames {
				fns = append(fns, f.Function)
			}
			if !slices.Equal(fns[:min(len(fns), len(tc.frames))], tc.frames) {
				t.Errorf("dying thread's frames %v, want them to start %v", fns, tc.frames)
			}
			for _, fn := range []string{"runtime.raise", "runtime.dieFromSignal", "runtime.sigtrampgo", "runtime.fatalthrow", "runtime.clone"} {
				if slices.Contains(fns, fn) {
					t.Errorf("runtime stack %v holds %s, which the runtime does not print", fns, fn)
				}
			}
			var text strings.Builder
			if err := r.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(text.String(), "runtime stack (thread ") || !strings.Contains(text.String(), "  "+tc.frames[1]+"\n") {
				t.Errorf("text report lacks the runtime stack:\n%s", text.String())
			}
			if tc.site != "" {
				if got := signature.Frames(r); !slices.Equal(got, []string{tc.site}) {
					t.Errorf("signature frames %v, want [%s]", got, tc.site)
				}
			}
			if t.Failed() {
				t.Logf("report:\n%s", tailLines(dump(r), 120))
			}
		})
	}
}

// TestRuntimeFloat: before Go 1.26 the runtime printed floats with its own
// printfloat, which a Go 1.26 toolchain cannot crash to show: its forms,
// from that function's arithmetic.
func TestRuntimeFloat(t *testing.T) {
	for _, tc := range []struct {
		f    float64
		want string
	}{
		{1.5, "+1.500000e+000"},
		{-0.1, "-1.000000e-001"},
		{0, "+0.000000e+000"},
		{32.1, "+3.210000e+001"},
		{123456789, "+1.234568e+008"},
		{1e300, "+1.000000e+300"},
		{math.Inf(1), "+Inf"},
		{math.Inf(-1), "-Inf"},
		{math.NaN(), "NaN"},
	} {
		if got := formatRuntimeFloat(tc.f); got != tc.want {
			t.Errorf("formatRuntimeFloat(%v) = %q, want %q", tc.f, got, tc.want)
		}
	}
}

// TestStackOverflow: issue 12 class 6. A stack overflow keeps at least the
// runtime's innermost 50 and outermost 50 frames, in order (crashExe
// compares both ends with what the runtime printed), whatever the shape of
// the recursion: inlined calls in every cycle, a method value, mutual
// recursion, another goroutine; frames_elided counts the rest exactly as
// the runtime counts them.
func TestStackOverflow(t *testing.T) {
	t.Parallel()
	exe := crashtest.BuildKinds(t)
	for _, kind := range []string{"overflow", "overflow-goroutine", "overflow-stringer", "overflow-mutual", "overflow-closure"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			r, d := crashExe(t, exe, nil, kind)
			wantPanic(t, r, corepipe.PanicKindFatal, "stack overflow")
			g := r.CrashingGoroutineReport()
			if g == nil {
				t.Fatal("no crashing goroutine")
			}
			var dg *gotraceback.Goroutine
			for i := range d.Goroutines {
				if d.Goroutines[i].ID == g.ID {
					dg = &d.Goroutines[i]
				}
			}
			if dg == nil || dg.ElidedAt != 50 || len(dg.Frames) != 100 {
				t.Fatalf("the runtime did not print 50 + 50 frames of goroutine %d: %+v", g.ID, dg)
			}
			if len(g.Frames) != defaultMaxFrames {
				t.Errorf("kept %d frames, want %d", len(g.Frames), defaultMaxFrames)
			}
			if got, want := len(g.Frames)+g.FramesElided, len(dg.Frames)+dg.Elided; got != want {
				t.Errorf("%d frames kept + %d elided = %d, the runtime counts %d", len(g.Frames), g.FramesElided, got, want)
			}
			if t.Failed() {
				t.Logf("report:\n%s", tailLines(dump(r), 120))
			}
		})
	}
}
