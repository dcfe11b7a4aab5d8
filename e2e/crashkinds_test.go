package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/analyzer/diagnose"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
	"github.com/corepipe/corepipe/internal/testkit/gotraceback"
)

// TestCrashKindsDev crashes programs that die in different ways through
// `corepipe dev`: each report must agree with the runtime's own traceback,
// carry a signature, and fire the runbook check that names its kind.
func TestCrashKindsDev(t *testing.T) {
	holdCorePattern(t)
	_, api := startDev(t, nil)

	for _, tc := range []struct {
		name, diagnosis string
		check           func(t *testing.T, r *corepipe.Report)
	}{
		{"mapwrites", diagnose.CodeConcurrentMap, func(t *testing.T, r *corepipe.Report) {
			wantTitlePrefix(t, r, "fatal error: concurrent map writes in main.record")
		}},
		{"deadlock", diagnose.CodeDeadlock, func(t *testing.T, r *corepipe.Report) {
			if r.CrashingGoroutine != 0 {
				t.Errorf("crashing goroutine %d in a deadlock, want none", r.CrashingGoroutine)
			}
			if len(r.GoroutineGroups) == 0 {
				t.Error("no goroutine groups")
			}
		}},
		{"overflow", diagnose.CodeStackOverflow, func(t *testing.T, r *corepipe.Report) {
			g := r.CrashingGoroutineReport()
			if g == nil || len(g.Frames) > 1000 || g.FramesElided < 100_000 {
				t.Errorf("crashing goroutine %+v: want at most 1000 frames kept and the rest elided", summary(g))
			}
			wantTitlePrefix(t, r, "fatal error: stack overflow in main.(*node).depth")
		}},
		{"errorpanic", diagnose.CodeExitSignal, func(t *testing.T, r *corepipe.Report) {
			want := "load config: open /nonexistent/corepipe.yaml: no such file or directory"
			if r.Panic == nil || r.Panic.Kind != corepipe.PanicKindPanic || r.Panic.Message != want {
				t.Errorf("panic %+v, want %q", r.Panic, want)
			}
			wantTitlePrefix(t, r, "panic: "+want+" in main.loadConfig")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exe := crashProgram{name: tc.name}.build(t)
			res := crashtest.Run(t, time.Minute, exe, nil)
			r := waitReport(t, api, res.PID, 2*time.Minute)
			if r.Status != corepipe.StatusAnalyzed {
				t.Fatalf("status %q, error %q", r.Status, r.Error)
			}
			dump, err := gotraceback.Parse(res.Stderr)
			if err != nil {
				t.Fatalf("parse the runtime's own traceback: %v\n%s", err, tail(res.Stderr, 40))
			}
			for _, m := range gotraceback.Compare(r, dump) {
				t.Errorf("report differs from the runtime's traceback: %s", m)
			}
			if !strings.HasPrefix(r.Signature, "gocrash/v1:") {
				t.Errorf("signature %q", r.Signature)
			}
			var codes []string
			for _, d := range r.Diagnosis {
				codes = append(codes, d.Code)
			}
			if !slices.Contains(codes, tc.diagnosis) {
				t.Errorf("diagnosis %v lacks %s", codes, tc.diagnosis)
			}
			tc.check(t, r)
			if t.Failed() {
				t.Logf("runtime stderr:\n%s", tail(res.Stderr, 60))
			}
		})
	}
}

func wantTitlePrefix(t *testing.T, r *corepipe.Report, want string) {
	t.Helper()
	if !strings.HasPrefix(r.Title, want) {
		t.Errorf("title %q, want %q", r.Title, want)
	}
}

func summary(g *corepipe.Goroutine) any {
	if g == nil {
		return nil
	}
	return struct{ ID, Frames, Elided int64 }{g.ID, int64(len(g.Frames)), int64(g.FramesElided)}
}
