package inspect

import (
	"context"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/analyzer/corefile"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
)

// TestBuildVariants crashes the same bugs in binaries built the ways
// production builds them: stripped, with -trimpath, as PIE.
func TestBuildVariants(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		flags []string
	}{
		{"stripped", []string{"-ldflags=-s -w"}},
		{"trimpath", []string{"-trimpath"}},
		{"pie", []string{"-buildmode=pie"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			exe := crashtest.BuildGo(t, crashtest.KindsProgram(t, tc.flags...))
			if tc.name == "stripped" {
				strippedGo(t, exe)
				return
			}
			r, _ := crashExe(t, exe, nil, "nilfield")
			if partial(r) {
				t.Errorf("diagnosis %+v: only a stripped build loses the goroutines", r.Diagnosis)
			}
			wantFault(t, r, "SIGSEGV", "SEGV_MAPERR", "0x10")
			wantTitle(t, r, "nil pointer dereference in main.(*server).retries")
			if got, want := userFrames(r), []string{"main.(*server).retries", "main.nilField", "main.main"}; !slices.Equal(got, want) {
				t.Errorf("frames in main %v, want %v", got, want)
			}
			r, _ = crashExe(t, exe, nil, "index")
			wantPanic(t, r, corepipe.PanicKindPanic, "runtime error: index out of range [5] with length 3")
			if tc.name == "trimpath" {
				if f := r.CrashingGoroutineReport().Frames[0]; filepath.IsAbs(f.File) {
					t.Errorf("a -trimpath build's frame has an absolute file %q", f.File)
				}
			}
		})
	}
}

// strippedGo: delve needs DWARF for the runtime's types, so a stripped Go
// binary's report says so and holds what the threads show, named from the
// symbol table Go keeps for its own tracebacks.
func strippedGo(t *testing.T, exe string) {
	core, _ := crashtest.Core(t, exe, nil, "nilfield")
	r := inspect(t, core, exe)
	if r.Status != corepipe.StatusAnalyzed || !partial(r) {
		t.Errorf("status %q, diagnosis %+v: want analyzed, saying the goroutines are unreadable", r.Status, r.Diagnosis)
	}
	var fns []string
	for _, f := range r.Threads[0].Frames {
		fns = append(fns, f.Function)
	}
	// Without a goroutine to restart the unwind from, delve's frame-pointer
	// shortcut drops the frameless leaf's caller (nilField): design.md's
	// known trap, fixed for goroutines only.
	i := slices.Index(fns, "main.(*server).retries")
	if i < 0 || !slices.Contains(fns[i:], "main.main") {
		t.Errorf("dying thread's frames %v lack retries → … → main", fns)
	}
	wantTitle(t, r, "SIGABRT in main.(*server).retries")
}

const cgoCallProgram = `package main

/*
static void crash_in_c(int *p) { *(volatile int *)p = 42; }
*/
import "C"

//go:noinline
func callC() { C.crash_in_c(nil) }

func main() { callC() }
`

// TestCgoFrames: the crashing goroutine shows the Go frames that called
// into C, the dying thread the C function that faulted.
func TestCgoFrames(t *testing.T) {
	t.Parallel()
	exe := crashtest.BuildGo(t, crashtest.Program{Files: map[string]string{"main.go": cgoCallProgram}, Cgo: true})
	r, _ := crashExe(t, exe, nil)
	if got := userFrames(r); !slices.Contains(got, "main.callC") || !slices.Contains(got, "main.main") {
		t.Errorf("crashing goroutine's frames in main %v lack callC → main", got)
	}
	var fns []string
	for _, f := range r.Threads[0].Frames {
		fns = append(fns, f.Function)
	}
	if len(fns) == 0 || fns[0] != "crash_in_c" {
		t.Errorf("dying thread's frames %v, want crash_in_c innermost", fns)
	}
	wantTitle(t, r, "SIGSEGV in C code (crash_in_c) called from main.callC")
}

const threadedCProgram = `#include <pthread.h>
#include <unistd.h>

__attribute__((noinline)) static void wait_forever(void) { for (;;) pause(); }
__attribute__((noinline)) static void *sleeper(void *arg) { wait_forever(); return arg; }
__attribute__((noinline)) static void crash_here(int *p) { *(volatile int *)p = 1; }
__attribute__((noinline)) static void *crasher(void *arg) { usleep(100000); crash_here(arg); return 0; }

int main(void) {
	pthread_t t[3];
	pthread_create(&t[0], 0, sleeper, 0);
	pthread_create(&t[1], 0, sleeper, 0);
	pthread_create(&t[2], 0, crasher, (void *)0x18);
	pthread_join(t[2], 0);
	return 0;
}
`

// TestThreadedCProgram: a C program's report has the kernel's signal and
// fault address and every thread's stack.
func TestThreadedCProgram(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		flags []string
	}{
		{"dwarf", []string{"-g", "-O1", "-pthread"}},
		{"symbols only", []string{"-O1", "-pthread"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			exe := crashtest.BuildC(t, threadedCProgram, tc.flags...)
			core, _ := crashtest.Core(t, exe, nil)
			r := inspect(t, core, exe)
			if r.Signal == nil || r.Signal.Name != "SIGSEGV" {
				t.Errorf("signal = %+v", r.Signal)
			}
			wantFault(t, r, "SIGSEGV", "SEGV_MAPERR", "0x18")
			if len(r.Threads) != 4 {
				t.Fatalf("%d threads, want 4: %+v", len(r.Threads), r.Threads)
			}
			// The innermost function of the program in each thread's stack:
			// the frames below come from delve or, past code it cannot
			// unwind (libc), from a stack scan that may also list stale
			// return addresses.
			innermost := map[string]int{}
			for _, th := range r.Threads {
				var fns []string
				for _, f := range th.Frames {
					fns = append(fns, f.Function)
				}
				for _, fn := range fns {
					if !strings.Contains(fn, ".so") {
						innermost[fn]++
						break
					}
				}
				t.Logf("thread %d: %v", th.ID, fns)
			}
			if want := map[string]int{"crash_here": 1, "wait_forever": 2, "main": 1}; !maps.Equal(innermost, want) {
				t.Errorf("innermost functions of the threads %v, want %v", innermost, want)
			}
			if fns := r.Threads[0].Frames; len(fns) < 2 || fns[0].Function != "crash_here" || fns[1].Function != "crasher" {
				t.Errorf("dying thread's frames %+v, want crash_here ← crasher", fns)
			}
			wantTitle(t, r, "SIGSEGV in crash_here called from crasher")
		})
	}
}

// TestReplacedExecutable: a deploy replaces the binary on disk after the
// crash. The copy captured at crash time analyses; the new file is refused
// with the wrong-executable error, never turned into a wrong report.
func TestReplacedExecutable(t *testing.T) {
	t.Parallel()
	exe := crashtest.BuildGo(t, crashtest.KindsProgram(t))
	captured := filepath.Join(t.TempDir(), "captured")
	copyFile(t, exe, captured)
	core, _ := crashtest.Core(t, exe, nil, "index")

	newer := crashtest.BuildGo(t, crashtest.Program{Files: map[string]string{"main.go": customPanicProgram}})
	copyFile(t, newer, exe)

	r := inspect(t, core, captured)
	wantPanic(t, r, corepipe.PanicKindPanic, "runtime error: index out of range [5] with length 3")

	_, err := Inspect(context.Background(), core, exe, Options{})
	if !errors.Is(err, corepipe.ErrInvalid) || !errors.Is(err, corefile.ErrWrongExe) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Inspect with the replaced executable = %v; want one line wrapping ErrInvalid and the wrong-executable error", err)
	}
	t.Log(err)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	// A new inode, as a deploy writes: the running file is never modified.
	tmp := to + ".tmp"
	dst, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, to); err != nil {
		t.Fatal(err)
	}
}
