package api

import (
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
)

// TestUICrashRuntimeStack: a fatal error thrown on a system stack (thread
// exhaustion) shows that stack first as the crash site, as the runtime
// prints it; a crash on a goroutine's stack shows none.
func TestUICrashRuntimeStack(t *testing.T) {
	e := newEnv(t)
	r := newReport(time.Minute)
	r.Fault, r.CrashingGoroutine = nil, 0
	r.Goroutines = r.Goroutines[:1]
	r.Panic = &corepipe.Panic{Kind: corepipe.PanicKindFatal, Message: "thread exhaustion"}
	r.Threads = []corepipe.Thread{{ID: 4250, Function: "runtime.raise", Frames: []corepipe.Frame{
		{Function: "runtime.throw", File: "/go/src/runtime/panic.go", Line: 1229},
		{Function: "runtime.checkmcount", File: "/go/src/runtime/proc.go", Line: 977},
		{Function: "runtime.mstart", File: "/go/src/runtime/asm_amd64.s", Line: 426},
	}}}
	r.Title = corepipe.Title(r, "")
	e.add(r, true)
	_, page := e.getOK("/crashes/" + r.ID)
	body := string(page)
	for _, want := range []string{"Runtime stack", "thread 4250", "runtime.checkmcount", "/go/src/runtime/proc.go:977", "fatal error: thread exhaustion in runtime.checkmcount"} {
		if !strings.Contains(body, want) {
			t.Errorf("crash page lacks %q", want)
		}
	}
	if site, goroutines := strings.Index(body, "runtime.checkmcount"), strings.Index(body, "main.waitForSignal"); site > goroutines {
		t.Errorf("runtime stack at %d, goroutines at %d: the crash site must come first", site, goroutines)
	}

	plain := newReport(2 * time.Minute)
	e.add(plain, true)
	if _, page := e.getOK("/crashes/" + plain.ID); strings.Contains(string(page), "Runtime stack") {
		t.Error("a nil dereference's page shows a runtime stack")
	}
}
