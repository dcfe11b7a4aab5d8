package gotrace_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/gotrace"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
	"github.com/corepipe/corepipe/internal/testkit/gotraceback"
)

// TestRealCrashes parses what the runtime printed for every crash kind of
// the corpus, under each GOTRACEBACK a container might run with, and
// requires the report to say what the runtime said: every goroutine, the
// crashing one, its frames, the message and the fault.
func TestRealCrashes(t *testing.T) {
	exe := crashtest.BuildKinds(t)
	for _, kind := range []string{"nilfield", "wild", "sigbus", "index", "nilmap", "divide", "assert",
		"string", "error", "customerror", "struct", "named", "stringer", "float",
		"recovered", "repanicked", "nested", "mapwrites", "deadlock", "overflow", "threads"} {
		for _, tb := range []string{"single", "all", "crash"} {
			t.Run(kind+"/"+tb, func(t *testing.T) {
				r, want := parseCrash(t, exe, tb, kind)
				if tb == "single" && want.Kind == "panic" && !lacks(r, "only the crashing goroutine") {
					t.Errorf("GOTRACEBACK=single: lacks %q, want it to say only the crashing goroutine was printed", r.Lacks)
				}
			})
		}
	}
}

// parseCrash crashes exe's kind under GOTRACEBACK=tb, parses what the
// runtime printed, and requires the report to say what the runtime said.
// It returns the report and the runtime's output parsed by the oracle.
func parseCrash(t *testing.T, exe, tb, kind string) (*corepipe.Report, *gotraceback.Dump) {
	t.Helper()
	out := crashtest.Stderr(t, exe, tb, kind)
	want, err := gotraceback.Parse(out)
	if err != nil {
		t.Fatalf("oracle: %v\n%s", err, out)
	}
	r, err := gotrace.Parse(out, gotrace.Options{})
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, out)
	}
	if diffs := gotraceback.Compare(r, want); len(diffs) > 0 {
		t.Errorf("report disagrees with the runtime:\n%s\n\nruntime printed:\n%s", strings.Join(diffs, "\n"), head(out, 60))
	}
	return r, want
}

func lacks(r *corepipe.Report, prefix string) bool {
	for _, l := range r.Lacks {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

func head(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[:n]
	}
	return strings.Join(l, "\n")
}

// TestPID1 crashes the nil dereference as PID 1 of a new PID namespace, as
// a container's main process runs: the runtime's SIGABRT is ignored, no
// core is dumped, and the log is all there is.
func TestPID1(t *testing.T) {
	crashtest.RequireRoot(t)
	exe := crashtest.BuildKinds(t)
	cmd := exec.Command("unshare", "--pid", "--fork", "--mount-proc", exe, "nilfield")
	cmd.Env = append(os.Environ(), "GOTRACEBACK=crash")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("did not crash: %v", err)
	}
	ws := exit.Sys().(syscall.WaitStatus)
	if ws.Signaled() || ws.ExitStatus() != 2 {
		t.Logf("PID 1 ended with %v (the runtime exits 2 when its SIGABRT is ignored)", ws)
	}
	want, err := gotraceback.Parse(stderr.String())
	if err != nil {
		t.Fatal(err)
	}
	r, err := gotrace.Parse(stderr.String(), gotrace.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if diffs := gotraceback.Compare(r, want); len(diffs) > 0 {
		t.Errorf("report disagrees with the runtime:\n%s", strings.Join(diffs, "\n"))
	}
}

// TestLastCrash: a log with two crashes (a restarted process writing to the
// same file) reports the last.
func TestLastCrash(t *testing.T) {
	exe := crashtest.BuildKinds(t)
	first := crashtest.Stderr(t, exe, "all", "index")
	second := crashtest.Stderr(t, exe, "all", "nilfield")
	r, err := gotrace.Parse(first+"restarting\n"+second, gotrace.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Panic == nil || !strings.Contains(r.Panic.Message, "nil pointer dereference") {
		t.Fatalf("panic = %+v, want the second crash's nil dereference", r.Panic)
	}
}

// TestNoise interleaves JSON log lines and another writer's output into the
// traceback, cuts a line and drops the tail: the parse still holds what
// the runtime printed around the noise.
func TestNoise(t *testing.T) {
	exe := crashtest.BuildKinds(t)
	out := crashtest.Stderr(t, exe, "all", "mapwrites")
	want, err := gotraceback.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	var noisy strings.Builder
	for i, l := range strings.Split(out, "\n") {
		noisy.WriteString(l + "\n")
		switch i % 7 {
		case 3:
			noisy.WriteString(`{"level":"info","msg":"request served","path":"/x(y)"}` + "\n")
		case 5:
			noisy.WriteString("worker 3: flushing (12 items)\n")
		}
	}
	r, err := gotrace.Parse(noisy.String(), gotrace.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if diffs := gotraceback.Compare(r, want); len(diffs) > 0 {
		t.Errorf("noise changed the report:\n%s", strings.Join(diffs, "\n"))
	}

	cut := out[:len(out)*2/3]
	r, err = gotrace.Parse(cut, gotrace.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.CrashingGoroutine == 0 || r.Panic == nil || r.Panic.Message != want.Message {
		t.Errorf("a cut log lost the crash: crashing %d, panic %+v", r.CrashingGoroutine, r.Panic)
	}
}

func TestNoCrash(t *testing.T) {
	for _, in := range []string{"", "hello\nworld\n", strings.Repeat("\x00\xff garbage", 1000)} {
		if _, err := gotrace.Parse(in, gotrace.Options{}); !errors.Is(err, gotrace.ErrNoCrash) {
			t.Errorf("Parse(%.20q) = %v, want ErrNoCrash", in, err)
		}
	}
}

// TestBounds: what a hostile log claims does not grow what is kept.
func TestBounds(t *testing.T) {
	p := gotrace.NewParser(gotrace.Options{MaxGoroutines: 100, MaxFrames: 10, MaxLine: 1 << 10})
	p.Line("panic: boom")
	p.Line(strings.Repeat("x", 1<<20))
	for g := 1; g <= 1000; g++ {
		p.Line("goroutine " + strconv.Itoa(g) + " [running]:")
		for range 50 {
			p.Line("main.f()")
			p.Line("\t/src/main.go:1 +0x1")
		}
	}
	r, err := p.Report()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Goroutines) != 100 {
		t.Errorf("kept %d goroutines, want 100", len(r.Goroutines))
	}
	if n := len(r.Goroutines[0].Frames); n != 10 || r.Goroutines[0].FramesElided != 40 {
		t.Errorf("kept %d frames, elided %d; want 10 and 40", n, r.Goroutines[0].FramesElided)
	}
	if !lacks(r, "900 goroutines beyond") {
		t.Errorf("lacks %q", r.Lacks)
	}
}

// TestMemoryBudget: distinct huge names in every frame cannot make the
// parse keep more than its budget.
func TestMemoryBudget(t *testing.T) {
	p := gotrace.NewParser(gotrace.Options{MaxBytes: 1 << 20})
	p.Line("panic: boom")
	p.Line("goroutine 1 [running]:")
	for i := range 10000 {
		name := strings.Repeat("x", 10000) + strconv.Itoa(i)
		p.Line("main." + name + "()")
		p.Line("\t/src/" + name + ".go:1 +0x1")
	}
	r, err := p.Report()
	if err != nil {
		t.Fatal(err)
	}
	kept := 0
	for _, f := range r.Goroutines[0].Frames {
		kept += len(f.Function) + len(f.File)
	}
	if kept > 1<<20 || !lacks(r, "frames and names beyond the parse's 1 MiB budget") {
		t.Errorf("kept %d bytes of names; lacks %q", kept, r.Lacks)
	}
}

// TestHeaderlessTraceback: a crash-output file of a runtime throw starts at
// its first goroutine, with no "fatal error:" line before it.
func TestHeaderlessTraceback(t *testing.T) {
	r, err := gotrace.Parse("\ngoroutine 1 [running]:\ninternal/runtime/maps.fatal({0x1?, 0x2?})\n\t/go/src/runtime/panic.go:1181 +0x18\nmain.main()\n\t/src/main.go:3 +0x1\n", gotrace.Options{})
	if err != nil || r.CrashingGoroutine != 1 || len(r.Goroutines[0].Frames) != 2 {
		t.Fatalf("report %+v, err %v", r, err)
	}
}

// TestMillionGoroutineHeaders: a log claiming a million goroutines keeps
// the default bound and says what it left out.
func TestMillionGoroutineHeaders(t *testing.T) {
	p := gotrace.NewParser(gotrace.Options{})
	p.Line("panic: boom")
	for g := 1; g <= 1_000_000; g++ {
		p.Line("goroutine " + strconv.Itoa(g) + " [chan receive]:")
		p.Line("main.wait()")
		p.Line("\t/src/main.go:9 +0x1")
	}
	r, err := p.Report()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Goroutines) != gotrace.DefaultMaxGoroutines || !lacks(r, "800000 goroutines beyond the first 200000") {
		t.Errorf("kept %d goroutines; lacks %q", len(r.Goroutines), r.Lacks)
	}
}
