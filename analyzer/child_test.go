package analyzer

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/corepipe/corepipe"
)

// misbehave is a stand-in for `corepipe analyze` that fails the way an
// analysis can: its first argument says how.
const misbehave = `package main

import (
	"fmt"
	"os"
	"time"
)

var keep [][]byte

func main() {
	switch os.Args[1] {
	case "panic":
		var m map[string]int
		m["delve"]++
	case "hang":
		time.Sleep(time.Hour)
	case "oom":
		for {
			b := make([]byte, 64<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			keep = append(keep, b)
		}
	case "spin":
		for n := 0; ; n++ {
			if n < 0 {
				fmt.Println(n)
			}
		}
	case "report":
		// Copy a report file to stdout, as analyze prints its report.
		b, err := os.ReadFile(os.Args[2])
		if err != nil {
			panic(err)
		}
		os.Stdout.Write(b)
	}
}
`

func buildMisbehave(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(misbehave), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module misbehave\n\ngo 1.22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "misbehave")
	cmd := exec.Command("go", "build", "-o", exe, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return exe
}

// scratchCore is where the analyzer would have put the core: the child's
// report goes next to it.
func scratchCore(t *testing.T) string {
	core := filepath.Join(t.TempDir(), "core")
	if err := os.WriteFile(core, []byte("core"), 0o600); err != nil {
		t.Fatal(err)
	}
	return core
}

// TestChildFailures runs real child processes that panic, hang, run out of
// memory and out of CPU time: each must become a one-line ErrInvalid that
// says what happened, and leave nothing behind in the scratch directory.
func TestChildFailures(t *testing.T) {
	t.Parallel()
	bin := buildMisbehave(t)
	for _, tc := range []struct {
		name  string
		child Child
		want  string
	}{
		{"panic", Child{Command: []string{bin, "panic"}}, "analysis crashed: panic: assignment to entry in nil map"},
		{"hang", Child{Command: []string{bin, "hang"}, Timeout: 300 * time.Millisecond}, "analysis took longer than 300ms"},
		{"out of memory", Child{Command: []string{bin, "oom"}, MaxMemory: 512 << 20}, "analysis ran out of memory (limit 512 MiB): "},
		{"out of CPU time", Child{Command: []string{bin, "spin"}, MaxCPU: time.Second}, "analysis used more than its CPU time limit of 1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			core := scratchCore(t)
			r, err := tc.child.Inspect(context.Background(), core, "exe")
			if !errors.Is(err, corepipe.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Inspect = %v, %v; want an ErrInvalid saying %q", r, err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
			if left, _ := filepath.Glob(filepath.Join(filepath.Dir(core), "report-*")); len(left) > 0 {
				t.Errorf("report files left behind: %v", left)
			}
			t.Log(err)
		})
	}
}

// TestChildReportIsDecoded: the report the child writes comes back whole,
// goroutines included, with repeated strings stored once.
func TestChildReportIsDecoded(t *testing.T) {
	t.Parallel()
	bin := buildMisbehave(t)
	want := &corepipe.Report{Schema: corepipe.ReportSchema, Status: corepipe.StatusAnalyzed, Title: "panic: x in main.f",
		Threads: []corepipe.Thread{{ID: 1, PC: "0x1"}}}
	for i := range 1000 {
		want.Goroutines = append(want.Goroutines, corepipe.Goroutine{ID: int64(i + 1), Status: "chan receive",
			Frames: []corepipe.Frame{{Function: "main.f", File: "/src/main.go", Line: 7, PC: "0x401000"}}})
	}
	reportFile := filepath.Join(t.TempDir(), "report.json")
	f, err := os.Create(reportFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := want.WriteJSON(f, true); err != nil {
		t.Fatal(err)
	}
	f.Close()

	c := Child{Command: []string{bin, "report", reportFile}}
	got, err := c.Inspect(context.Background(), scratchCore(t), "exe")
	if err != nil {
		t.Fatal(err)
	}
	if got.Title != want.Title || len(got.Goroutines) != 1000 || len(got.Threads) != 1 || got.Goroutines[999].ID != 1000 {
		t.Fatalf("decoded %d goroutines, title %q", len(got.Goroutines), got.Title)
	}
	a, b := got.Goroutines[0].Frames[0].Function, got.Goroutines[999].Frames[0].Function
	if a != "main.f" || unsafe.StringData(a) != unsafe.StringData(b) {
		t.Errorf("function names of identical frames are separate copies")
	}
}

// TestHandleChildCrashThenGoesOn: a child that crashes gives its crash a
// failed report, acked; the same worker then analyses the next crash.
func TestHandleChildCrashThenGoesOn(t *testing.T) {
	bin := buildMisbehave(t)
	r := newRig(t)
	ctx := context.Background()

	first := r.stored(t, []byte("core one"))
	a := New(Config{Blobs: r.blobs, Queue: r.queue, TempDir: t.TempDir(),
		Inspector: Child{Command: []string{bin, "panic"}}})
	a.Handle(ctx, r.next(t))
	rep := r.report(t, first.ID)
	if rep.Status != corepipe.StatusFailed || !strings.Contains(rep.Error, "analysis crashed: panic: assignment to entry in nil map") {
		t.Errorf("report of the crashed analysis: status %q, error %q", rep.Status, rep.Error)
	}
	if r.pending(t) {
		t.Fatal("the crash whose analysis crashed is still queued")
	}

	good := filepath.Join(t.TempDir(), "report.json")
	f, err := os.Create(good)
	if err != nil {
		t.Fatal(err)
	}
	(&corepipe.Report{Schema: corepipe.ReportSchema, Status: corepipe.StatusAnalyzed, Title: "fine"}).WriteJSON(f, false)
	f.Close()
	second := r.stored(t, []byte("core two"))
	a.cfg.Inspector = Child{Command: []string{bin, "report", good}}
	a.Handle(ctx, r.next(t))
	if rep := r.report(t, second.ID); rep.Status != corepipe.StatusAnalyzed || rep.Title != "fine" {
		t.Errorf("next crash: status %q, title %q, error %q", rep.Status, rep.Title, rep.Error)
	}
}

// Under a tight address-space limit the Go runtime can die reserving its
// arenas, before any goroutine exists: that is running out of memory too.
func TestChildErrorRuntimeReserveFailure(t *testing.T) {
	stderr := "fatal error: failed to reserve page summary memory\n\nruntime stack:\nruntime.throw({0x494d6b?, 0x20000000?})\n\t/usr/local/go/src/runtime/panic.go:1229 +0x48\n"
	if got := outOfMemory(stderr); got != "fatal error: failed to reserve page summary memory" {
		t.Errorf("outOfMemory = %q", got)
	}
	if got := runtimeCrash("fatal error: unexpected signal\n\nruntime stack:\nruntime.throw()\n"); got != "fatal error: unexpected signal" {
		t.Errorf("runtimeCrash of a crash with only a runtime stack = %q", got)
	}
}
