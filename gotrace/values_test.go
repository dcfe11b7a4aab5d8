package gotrace_test

import (
	"strings"
	"testing"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
)

// TestValuesChainsAndThrows reads from a log what the core reader reads from
// a core, by the same rules (issue 12 classes 4 to 6): panic values of every
// kind, chains of panics ending in a panic or a fatal error, a throw on a
// system stack (its runtime stack as the report's thread, named in the
// title) and stack overflows of every shape, each compared with the
// runtime's output and titled as a core of the same crash is.
func TestValuesChainsAndThrows(t *testing.T) {
	exe := crashtest.BuildKinds(t)
	for _, tc := range []struct{ kind, title string }{
		{"value-mycomplex128", "panic: main.MyComplex128(32.1+10i) in main.panicWith"},
		{"value-nan", "panic: NaN in main.panicWith"},
		{"value-myuint8", "panic: main.myUint8(200) in main.panicWith"},
		{"value-multiline", "panic: first line in main.panicWith"},
		{"value-pointer", ""},
		{"value-panickingerror", "fatal error: panic while printing panic value: error method failed in main.panickingError.Error"},
		{"chain-three", "panic: third in main.chainThree.func1"},
		{"chain-fatal", "fatal error: sync: unlock of unlocked mutex in internal/sync.(*Mutex).unlockSlow"},
		{"chain-fatal-error", ""},
		{"chain-recovered-fatal", ""},
		{"chain-goexit", ""},
		{"threads", "fatal error: thread exhaustion in runtime.checkmcount"},
		{"overflow-stringer", "fatal error: stack overflow in fmt.(*pp).handleMethods"},
		{"overflow-mutual", "fatal error: stack overflow in main.ping"},
	} {
		for _, tb := range []string{"single", "crash"} {
			t.Run(tc.kind+"/"+tb, func(t *testing.T) {
				r, _ := parseCrash(t, exe, tb, tc.kind)
				if got := corepipe.Title(r, ""); tc.title != "" && got != tc.title {
					t.Errorf("title %q, want %q", got, tc.title)
				}
				if g := r.CrashingGoroutineReport(); g != nil && strings.HasPrefix(tc.kind, "overflow") {
					if len(g.Frames) != 100 || g.FramesElided == 0 {
						t.Errorf("overflow: %d frames kept, %d elided; want the runtime's 50 + 50 and its count", len(g.Frames), g.FramesElided)
					}
				}
			})
		}
	}
}
