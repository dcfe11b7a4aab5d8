package inspect

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
	"github.com/corepipe/corepipe/internal/testkit/gotraceback"
)

// nilDerefProgram is the shape delve gets wrong: a nil dereference in an
// inlined method inside a frameless leaf (handle) called from serve called
// from main, with goroutines parked in the common ways.
const nilDerefProgram = `package main

import (
	"sync"
	"time"
)

type config struct{ retries int }

type server struct{ cfg *config }

func (s *server) retries() int { return s.cfg.retries }

//go:noinline
func handle(s *server) int { return s.retries() + 1 }

//go:noinline
func serve(s *server) int { return handle(s) * 2 }

func main() {
	ch := make(chan int)
	ch2 := make(chan int)
	var mu sync.Mutex
	mu.Lock()
	go func() { <-ch }()
	go func() {
		select {
		case <-ch:
		case <-ch2:
		}
	}()
	go func() { time.Sleep(time.Hour) }()
	go func() { mu.Lock() }()
	time.Sleep(50 * time.Millisecond)
	println(serve(&server{}))
}
`

const customPanicProgram = `package main

import "fmt"

//go:noinline
func handle(x int) {
	panic(fmt.Sprintf("custom message: x=%d\nsecond line", x))
}

func main() {
	done := make(chan bool)
	go func() { <-done }()
	handle(3)
}
`

const cgoProgram = `package main

/*
static void crash_in_c(void) { *(volatile int*)0 = 1; }
*/
import "C"

func main() {
	C.crash_in_c()
}
`

const cProgram = `#include <stdio.h>
__attribute__((noinline)) static void crash_here(int *p) { *(volatile int*)p = 1; }
__attribute__((noinline)) void outer(int *p) { crash_here(p); printf("unreachable\n"); }
int main(void) { outer(0); return 0; }
`

// crashGo builds and crashes a Go program, analyses its core, and requires
// the report to agree with what the runtime printed, every goroutine's
// frames included.
func crashGo(t *testing.T, p crashtest.Program) *corepipe.Report {
	t.Helper()
	exe := crashtest.BuildGo(t, p)
	core, res := crashtest.Core(t, exe, nil)
	r := inspect(t, core, exe)
	d, err := gotraceback.Parse(res.Stderr)
	if err != nil {
		t.Fatalf("parse the runtime's output: %v\n%s", err, res.Stderr)
	}
	if diffs := append(gotraceback.Compare(r, d), gotraceback.CompareStacks(r, d)...); len(diffs) > 0 {
		t.Errorf("report disagrees with the runtime:\n%s\n\nruntime printed:\n%s\n\nreport:\n%s", strings.Join(diffs, "\n"), res.Stderr, dump(r))
	}
	return r
}

func inspect(t *testing.T, core, exe string) *corepipe.Report {
	t.Helper()
	start := time.Now()
	r, err := Inspect(context.Background(), core, exe, Options{})
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	st, _ := os.Stat(core)
	t.Logf("analysed a %d MiB core in %v: %q", st.Size()>>20, time.Since(start).Round(time.Millisecond), r.Title)
	return r
}

func dump(r *corepipe.Report) string {
	b, _ := json.MarshalIndent(r, "", "  ")
	return string(b)
}

func functions(g *corepipe.Goroutine) []string {
	var fns []string
	for _, f := range g.Frames {
		fns = append(fns, f.Function)
	}
	return fns
}

func TestNilDereferenceInFramelessLeaf(t *testing.T) {
	t.Parallel()
	r := crashGo(t, crashtest.Program{Files: map[string]string{"main.go": nilDerefProgram}})

	if r.Signal == nil || r.Signal.Name != "SIGABRT" {
		t.Errorf("signal = %+v, want SIGABRT (GOTRACEBACK=crash re-raises)", r.Signal)
	}
	if f := r.Fault; f == nil || f.Name != "SIGSEGV" || f.CodeName != "SEGV_MAPERR" || f.Address != "0x0" || f.PC == "" {
		t.Errorf("fault = %+v, want SIGSEGV SEGV_MAPERR at 0x0", f)
	}
	if r.Panic == nil || r.Panic.Kind != corepipe.PanicKindPanic || r.Panic.Message != "runtime error: invalid memory address or nil pointer dereference" {
		t.Errorf("panic = %+v", r.Panic)
	}
	if want := "nil pointer dereference in main.(*server).retries"; r.Title != want {
		t.Errorf("title = %q, want %q", r.Title, want)
	}
	g := r.CrashingGoroutineReport()
	if g == nil || r.Goroutines[0].ID != r.CrashingGoroutine {
		t.Fatalf("crashing goroutine %d is not reported first", r.CrashingGoroutine)
	}
	fns := functions(g)
	i := slices.Index(fns, "main.(*server).retries")
	if i < 0 || !slices.Equal(fns[i:i+4], []string{"main.(*server).retries", "main.handle", "main.serve", "main.main"}) {
		t.Errorf("crashing stack %v lacks retries → handle → serve → main", fns)
	}
	if g.Frames[0].File == "" || !filepath.IsAbs(g.Frames[i].File) || !strings.HasPrefix(g.Frames[0].PC, "0x") {
		t.Errorf("frame lacks an absolute file or pc: %+v", g.Frames[i])
	}
	var statuses []string
	for _, g := range r.Goroutines {
		statuses = append(statuses, g.Status)
	}
	for _, want := range []string{"running", "chan receive", "select", "sleep", "sync.Mutex.Lock"} {
		if !slices.Contains(statuses, want) {
			t.Errorf("no goroutine is %q: %v", want, statuses)
		}
	}
	if r.Go == nil || !strings.HasPrefix(r.Go.Version, "go1.") || r.Go.BuildID == "" {
		t.Errorf("go = %+v", r.Go)
	}
	if len(r.Threads) == 0 || r.Threads[0].Function == "" {
		t.Errorf("threads = %+v", r.Threads)
	}
}

func TestCustomPanic(t *testing.T) {
	t.Parallel()
	r := crashGo(t, crashtest.Program{Files: map[string]string{"main.go": customPanicProgram}})
	if r.Panic == nil || r.Panic.Message != "custom message: x=3\nsecond line" {
		t.Errorf("panic = %+v", r.Panic)
	}
	if r.Fault != nil {
		t.Errorf("a plain panic has no fault, got %+v", r.Fault)
	}
	if want := "panic: custom message: x=3 in main.handle"; r.Title != want {
		t.Errorf("title = %q, want %q", r.Title, want)
	}
}

func TestCgoSegfaultInC(t *testing.T) {
	t.Parallel()
	r := crashGo(t, crashtest.Program{Files: map[string]string{"main.go": cgoProgram}, Cgo: true})
	if r.Panic == nil || r.Panic.Kind != corepipe.PanicKindSignal || r.Panic.Message != "SIGSEGV: segmentation violation" {
		t.Errorf("panic = %+v", r.Panic)
	}
	if f := r.Fault; f == nil || f.Name != "SIGSEGV" || f.Address != "0x0" || f.CodeName != "SEGV_MAPERR" {
		t.Errorf("fault = %+v", f)
	}
	if want := "SIGSEGV in C code (crash_in_c) called from main.main"; r.Title != want {
		t.Errorf("title = %q, want %q", r.Title, want)
	}
}

func TestCProgram(t *testing.T) {
	t.Parallel()
	exe := crashtest.BuildC(t, cProgram, "-g", "-O1")
	core, _ := crashtest.Core(t, exe, nil)
	r := inspect(t, core, exe)
	if r.Go != nil || len(r.Goroutines) != 0 {
		t.Errorf("a C program has no Go info or goroutines: %+v, %d goroutines", r.Go, len(r.Goroutines))
	}
	if r.Signal == nil || r.Signal.Name != "SIGSEGV" {
		t.Errorf("signal = %+v", r.Signal)
	}
	if f := r.Fault; f == nil || f.Address != "0x0" || f.CodeName != "SEGV_MAPERR" || f.PC != r.Threads[0].PC {
		t.Errorf("fault = %+v, dying thread %+v", f, r.Threads)
	}
	if len(r.Threads) != 1 || r.Threads[0].Function != "crash_here" || r.Threads[0].Line != 2 {
		t.Errorf("threads = %+v", r.Threads)
	}
	if want := "SIGSEGV in crash_here called from outer"; r.Title != want {
		t.Errorf("title = %q, want %q", r.Title, want)
	}
}

func TestRejectsBadInput(t *testing.T) {
	t.Parallel()
	exeA := crashtest.BuildGo(t, crashtest.Program{Files: map[string]string{"main.go": customPanicProgram}})
	exeB := crashtest.BuildGo(t, crashtest.Program{Files: map[string]string{"main.go": nilDerefProgram}})
	core, _ := crashtest.Core(t, exeA, nil)

	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated")
	b, err := os.ReadFile(core)
	if err != nil {
		t.Fatal(err)
	}
	// Cut inside its program headers; a core cut inside its memory gives
	// a report marked truncated (corrupt_test.go).
	if err := os.WriteFile(truncated, b[:200], 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, core, exe, want string
	}{
		{"wrong executable", core, exeB, "does not match the core"},
		{"executable is the core", core, core, "not a program"},
		{"empty core", empty, exeA, "is empty"},
		{"truncated core", truncated, exeA, "is truncated"},
		{"not a core", exeA, exeA, "not a core dump"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Inspect(context.Background(), tc.core, tc.exe, Options{})
			if !errors.Is(err, corepipe.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Inspect = %v, %v; want an ErrInvalid saying %q", r, err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
			t.Log(err)
		})
	}
}

const deepProgram = `package main

//go:noinline
func deep(n int) int {
	if n == 0 {
		panic("bottom reached")
	}
	return deep(n-1) + 1
}

func main() { println(deep(5000)) }
`

// TestDeepStackIsCapped crashes 5000 frames deep: the report keeps the
// innermost and outermost frames, the outermost ones found past delve's
// depth limit, and they must be the ones the runtime printed.
func TestDeepStackIsCapped(t *testing.T) {
	t.Parallel()
	r := crashGo(t, crashtest.Program{Files: map[string]string{"main.go": deepProgram}})
	g := r.CrashingGoroutineReport()
	if g == nil {
		t.Fatal("no crashing goroutine")
	}
	if len(g.Frames) != defaultMaxFrames || g.FramesElided < 4000 || g.FramesElided > 4010 {
		t.Errorf("kept %d frames and elided %d of about 5004, want %d kept", len(g.Frames), g.FramesElided, defaultMaxFrames)
	}
	fns := functions(g)
	if want := []string{"main.deep", "main.main", "runtime.main", "runtime.goexit"}; !slices.Equal(fns[len(fns)-4:], want) {
		t.Errorf("outermost frames = %v, want %v", fns[len(fns)-4:], want)
	}
	var text strings.Builder
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"panic: bottom reached in main.deep", "frames elided", "goroutine 1 [running]"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text summary lacks %q:\n%s", want, text.String())
		}
	}
}

// TestStrippedCProgram: without DWARF delve cannot open the core; the
// report still says what killed the process, from the kernel's notes.
func TestStrippedCProgram(t *testing.T) {
	t.Parallel()
	exe := crashtest.BuildC(t, cProgram, "-s", "-O1")
	core, _ := crashtest.Core(t, exe, nil)
	r := inspect(t, core, exe)
	if r.Signal == nil || r.Signal.Name != "SIGSEGV" || r.Fault == nil || r.Fault.Address != "0x0" {
		t.Errorf("signal %+v fault %+v", r.Signal, r.Fault)
	}
	if len(r.Threads) != 1 || r.Threads[0].PC != r.Fault.PC {
		t.Errorf("threads = %+v", r.Threads)
	}
}
