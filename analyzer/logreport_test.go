package analyzer

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/analyzer/inspect"
	"github.com/corepipe/corepipe/containerlog"
	"github.com/corepipe/corepipe/gotrace"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
	"github.com/corepipe/corepipe/internal/testkit/gotraceback"
)

func fromLog(t *testing.T, text string) *corepipe.Report {
	t.Helper()
	found, err := containerlog.Parse(context.Background(), strings.NewReader(text), "", gotrace.Options{})
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, text)
	}
	r := &corepipe.Report{Schema: corepipe.ReportSchema}
	FromTraceback(r, found, corepipe.SourceLog)
	Enrich(r, nil)
	return r
}

// TestLogAndCoreShareSignature crashes each bug once with a core and once
// as most pods run (no GOTRACEBACK, no core): both reports land in one
// group, and read the same.
func TestLogAndCoreShareSignature(t *testing.T) {
	crashtest.RequireRoot(t)
	exe := crashtest.BuildKinds(t)
	for _, kind := range []string{"nilfield", "wild", "index", "customerror", "named", "recovered", "nested", "mapwrites", "overflow", "deadlock"} {
		t.Run(kind, func(t *testing.T) {
			core, res := crashtest.Core(t, exe, nil, kind)
			fromCore, err := inspect.Inspect(context.Background(), core, exe, inspect.Options{})
			if err != nil {
				t.Fatal(err)
			}
			Enrich(fromCore, nil)
			logs := map[string]string{"the same crash's stderr": res.Stderr}
			if kind != "mapwrites" {
				// Which of the writers throws is a race: another run may
				// be another goroutine's stack.
				logs["a crash without GOTRACEBACK"] = crashtest.Stderr(t, exe, "", kind)
			}
			for name, text := range logs {
				r := fromLog(t, text)
				if r.Signature != fromCore.Signature {
					t.Errorf("%s: signature %s, the core's %s", name, r.Signature, fromCore.Signature)
				}
				if r.Title != fromCore.Title {
					t.Errorf("%s: title %q, the core's %q", name, r.Title, fromCore.Title)
				}
			}
		})
	}
}

// queueLogCrash queues the end of container shop/web/app, which exited with
// code, leaving log and no core (dropped says why, if anything).
func (r *rig) queueLogCrash(t *testing.T, code int, dropped, log string) *corepipe.Crash {
	t.Helper()
	now := time.Now()
	c := &corepipe.Crash{ID: corepipe.NewID(now), CapturedAt: now, Node: "n1",
		Container:   &corepipe.Container{Namespace: "shop", Pod: "web", Container: "app"},
		Termination: &corepipe.Termination{ExitCode: code}}
	c.Core.Dropped = dropped
	c.Log = &corepipe.LogArtifact{Source: corepipe.SourceLog, Key: corepipe.LogKey(c), Size: int64(len(log))}
	r.put(t, c.Log.Key, []byte(log))
	r.publish(t, c)
	return c
}

// TestHandleLogCrash: a container run the agent saw end, with the log
// excerpt it kept and no core, becomes an analysed report from the log.
func TestHandleLogCrash(t *testing.T) {
	exe := crashtest.BuildKinds(t)
	out := crashtest.Stderr(t, exe, "", "nilfield")
	rg := newRig(t)
	c := rg.queueLogCrash(t, 2, "no core: the program exited with code 2 itself", out)
	rep := rg.analyse(t, c, &fakeInspector{t: t})
	if rep.Status != corepipe.StatusAnalyzed || rep.Source != corepipe.SourceLog || rep.Kind != corepipe.KindGo {
		t.Fatalf("report status %q source %q kind %q: %s", rep.Status, rep.Source, rep.Kind, rep.Error)
	}
	want, err := gotraceback.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if diffs := gotraceback.Compare(rep, want); len(diffs) > 0 {
		t.Errorf("report disagrees with the runtime:\n%s", strings.Join(diffs, "\n"))
	}
	if !strings.HasPrefix(rep.Title, "nil pointer dereference in main.") || rep.Signature == "" || rep.Container.Pod != "web" {
		t.Errorf("title %q signature %q container %+v", rep.Title, rep.Signature, rep.Container)
	}
	if len(rep.Lacks) == 0 {
		t.Error("a report from a GOTRACEBACK=single log says nothing of what it lacks")
	}
}

// TestHandleLogWithoutCrash: a log with no traceback (log.Fatal) still gets
// the report of how the container ended.
func TestHandleLogWithoutCrash(t *testing.T) {
	rg := newRig(t)
	c := rg.queueLogCrash(t, 1, "", "2026/12/01 10:00:00 open /etc/app.yaml: no such file or directory\n")
	rep := rg.analyse(t, c, &fakeInspector{t: t})
	if rep.Status != corepipe.StatusAnalyzed || rep.Source != corepipe.SourceTermination || rep.Artifacts.Log == nil {
		t.Fatalf("report status %q source %q log %+v", rep.Status, rep.Source, rep.Artifacts.Log)
	}
}

// TestNoCoreDiagnosis: a report from a log says why there was no core.
func TestNoCoreDiagnosis(t *testing.T) {
	exe := crashtest.BuildKinds(t)
	for tb, want := range map[string]string{"": "GOTRACEBACK was not crash", "crash": "as PID 1 of its container"} {
		r := fromLog(t, crashtest.Stderr(t, exe, tb, "nilfield"))
		r.Termination = &corepipe.Termination{ExitCode: 2}
		Enrich(r, nil)
		found := false
		for _, d := range r.Diagnosis {
			found = found || d.Code == "no_core" && strings.Contains(d.Message, want)
		}
		if !found {
			t.Errorf("GOTRACEBACK=%q: diagnosis %+v lacks no_core saying %q", tb, r.Diagnosis, want)
		}
	}
}

// TestCrashOutputThrowSaysWhatItLacks: the report of a throw from a
// crash-output file says the message is missing and why.
func TestCrashOutputThrowSaysWhatItLacks(t *testing.T) {
	text := "\ngoroutine 1 [running]:\ninternal/runtime/maps.fatal({0x4af804?, 0x49ab80?})\n\t/usr/local/go/src/runtime/panic.go:1181 +0x18\nmain.hammer(0x1)\n\t/src/main.go:9 +0x2\nmain.main()\n\t/src/main.go:20 +0x5\n"
	found, err := containerlog.Parse(context.Background(), strings.NewReader(text), "", gotrace.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := &corepipe.Report{Schema: corepipe.ReportSchema}
	FromTraceback(r, found, corepipe.SourceCrashOutput)
	if r.Title != "fatal error: (message not in the crash file) in main.hammer" || !strings.Contains(strings.Join(r.Lacks, "\n"), "golang/go#76859") {
		t.Errorf("title %q lacks %q", r.Title, r.Lacks)
	}
}
