package analyzer

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/analyzer/diagnose"
)

// An OOM kill leaves no core, only the container's termination: it gets an
// analysed report with a title, a signature and the diagnosis, without
// asking the inspector anything.
func TestHandleTerminationWithoutCore(t *testing.T) {
	r := newRig(t)
	now := time.Now()
	c := &corepipe.Crash{ID: corepipe.NewID(now), CapturedAt: now, Node: "n1",
		Process:     corepipe.Process{PID: 42, Exe: "/app/web"},
		Container:   &corepipe.Container{Namespace: "default", Pod: "web-7d9f", Container: "app", Image: "registry/web:v3"},
		Termination: &corepipe.Termination{ExitCode: 137, Reason: "OOMKilled", Signal: 9},
		Environ:     map[string]string{"GOGC": "100"},
	}
	r.publish(t, c)
	insp := &fakeInspector{t: t}
	rep := r.analyse(t, c, insp)
	if rep.Status != corepipe.StatusAnalyzed || insp.calls != 0 {
		t.Fatalf("report %+v, inspector calls %d: want analysed from the termination alone", rep, insp.calls)
	}
	if want := "OOMKilled: container app in default/web-7d9f"; rep.Title != want {
		t.Errorf("title %q, want %q", rep.Title, want)
	}
	if !strings.HasPrefix(rep.Signature, "gocrash/v1:") {
		t.Errorf("signature %q", rep.Signature)
	}
	codes := codes(rep.Diagnosis)
	for _, want := range []string{diagnose.CodeOOMKilled, diagnose.CodeExitSignal} {
		if !slices.Contains(codes, want) {
			t.Errorf("diagnosis %v lacks %s", codes, want)
		}
	}
	if r.pending(t) {
		t.Error("crash still queued after its report was stored")
	}
}

// Enrich runs in the child (without the manifest) and again in the worker:
// the second run must replace, not repeat, the checks, and keep what the
// inspection noted.
func TestEnrichIsIdempotent(t *testing.T) {
	rep := &corepipe.Report{
		Signal:            &corepipe.Signal{Number: 6, Name: "SIGABRT"},
		Panic:             &corepipe.Panic{Kind: corepipe.PanicKindFatal, Message: "concurrent map writes"},
		CrashingGoroutine: 3,
		Goroutines: []corepipe.Goroutine{
			{ID: 3, Status: "running", Frames: []corepipe.Frame{{Function: "internal/runtime/maps.fatal"}, {Function: "main.hammer"}}},
			{ID: 4, Status: "running", Frames: []corepipe.Frame{{Function: "main.hammer"}}},
		},
		Diagnosis: []corepipe.Diagnosis{{Code: "goroutines_unreadable", Severity: "warning", Message: "noted by inspect"}},
		Title:     "fatal error: concurrent map writes in main.hammer",
	}
	Enrich(rep, nil)
	first := codes(rep.Diagnosis)
	sig := rep.Signature
	Enrich(rep, &corepipe.Crash{Limits: map[string]string{"Max processes": "63704"}})
	if got := codes(rep.Diagnosis); !slices.Equal(got, first) || rep.Signature != sig {
		t.Errorf("second Enrich: diagnosis %v signature %s, first %v %s", got, rep.Signature, first, sig)
	}
	if !slices.Contains(first, "goroutines_unreadable") || !slices.Contains(first, diagnose.CodeConcurrentMap) {
		t.Errorf("diagnosis %v", first)
	}
	if len(rep.GoroutineGroups) != 2 || rep.Title != "fatal error: concurrent map writes in main.hammer" {
		t.Errorf("groups %+v title %q", rep.GoroutineGroups, rep.Title)
	}
}

func codes(ds []corepipe.Diagnosis) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Code)
	}
	return out
}
