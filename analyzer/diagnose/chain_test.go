package diagnose

import (
	"strings"
	"testing"

	"github.com/corepipe/corepipe"
)

// TestFatalErrorInDeferredCall: a fatal error thrown in a deferred call of a
// panic ends the chain the runtime prints ("panic: A\n\tfatal error: …"),
// and is what the process died of: its checks fire as for a fatal error on
// its own.
func TestFatalErrorInDeferredCall(t *testing.T) {
	r := &corepipe.Report{Panic: &corepipe.Panic{Kind: corepipe.PanicKindPanic,
		Message: "request failed\nfatal error: concurrent map writes"}, CrashingGoroutine: 1,
		Goroutines: []corepipe.Goroutine{{ID: 1, Status: "running", Frames: []corepipe.Frame{{Function: "main.save"}}}}}
	var found bool
	for _, d := range Diagnose(r, nil) {
		if d.Code == CodeConcurrentMap {
			found = true
			if !strings.Contains(d.Evidence, "fatal error: concurrent map writes") || strings.Contains(d.Evidence, "request failed") {
				t.Errorf("evidence %q, want the fatal error alone", d.Evidence)
			}
		}
	}
	if !found {
		t.Errorf("no %s diagnosis for %q", CodeConcurrentMap, r.Panic.Message)
	}
}
