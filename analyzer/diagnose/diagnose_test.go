package diagnose

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/analyzer/signature"
)

func fatalReport(msg string) *corepipe.Report {
	return &corepipe.Report{Signal: &corepipe.Signal{Number: 6, Name: "SIGABRT"},
		Panic: &corepipe.Panic{Kind: corepipe.PanicKindFatal, Message: msg}}
}

func codesOf(ds []corepipe.Diagnosis) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Code)
	}
	return out
}

func TestDiagnose(t *testing.T) {
	many := func(n int) *corepipe.Report {
		r := &corepipe.Report{Signal: &corepipe.Signal{Number: 6, Name: "SIGABRT"},
			Panic: &corepipe.Panic{Kind: corepipe.PanicKindPanic, Message: "boom"}, CrashingGoroutine: 1}
		r.Goroutines = append(r.Goroutines, corepipe.Goroutine{ID: 1, Status: "running", Frames: []corepipe.Frame{{Function: "main.main"}}})
		for i := range n {
			r.Goroutines = append(r.Goroutines, corepipe.Goroutine{ID: int64(i + 2), Status: "chan receive",
				CreatedBy: fmt.Sprintf("main.serve in goroutine %d", i), Frames: []corepipe.Frame{{Function: "runtime.gopark"}, {Function: "main.wait", Line: 3}}})
		}
		r.GoroutineGroups = signature.GoroutineGroups(r.Goroutines)
		return r
	}
	threads := fatalReport("thread exhaustion")
	threads.Threads = make([]corepipe.Thread, 13)
	threads.Runtime = &corepipe.RuntimeState{GOMAXPROCS: 2, Threads: 13, MaxThreads: 12}

	for _, tc := range []struct {
		name     string
		r        *corepipe.Report
		c        *corepipe.Crash
		want     []string          // every check that fires, in order
		evidence map[string]string // a check's code → what its evidence says
	}{
		{"abort", fatalReport("boom"), nil, []string{CodeExitSignal}, map[string]string{CodeExitSignal: "signal 6 (SIGABRT)"}},
		{"oom kill", &corepipe.Report{Termination: &corepipe.Termination{ExitCode: 137, Reason: "OOMKilled"}},
			&corepipe.Crash{Environ: map[string]string{"GOGC": "200"}}, []string{CodeExitSignal, CodeOOMKilled},
			map[string]string{CodeExitSignal: "137 = 128 + 9", CodeOOMKilled: "GOGC=200"}},
		{"panic exit", &corepipe.Report{Termination: &corepipe.Termination{ExitCode: 2, Reason: "Error"}}, nil,
			[]string{CodeExitSignal}, map[string]string{CodeExitSignal: "exit code 2"}},
		{"thread exhaustion", threads, &corepipe.Crash{Limits: map[string]string{"Max processes": "4096"}},
			[]string{CodeExitSignal, CodeThreadExhaustion},
			map[string]string{CodeThreadExhaustion: "13 OS threads in the core; the runtime had started 13 threads, its limit (debug.SetMaxThreads) is 12; Max processes (ulimit -u) 4096"}},
		{"out of memory", func() *corepipe.Report {
			r := fatalReport("out of memory")
			r.Process.RSS = 900 << 20
			return r
		}(), &corepipe.Crash{Limits: map[string]string{"Max address space": "1073741824"}, Environ: map[string]string{"GOMEMLIMIT": "512MiB"}},
			[]string{CodeExitSignal, CodeOutOfMemory, CodeMemoryLimit},
			map[string]string{CodeOutOfMemory: "RSS 900.0 MiB; address-space limit (ulimit -v) 1073741824 bytes; GOMEMLIMIT=512MiB", CodeMemoryLimit: "RSS 900.0 MiB > GOMEMLIMIT 512.0 MiB"}},
		{"nil dereference", &corepipe.Report{Panic: &corepipe.Panic{Kind: corepipe.PanicKindPanic, Message: "runtime error: invalid memory address or nil pointer dereference"},
			Fault: &corepipe.Fault{Name: "SIGSEGV", CodeName: "SEGV_MAPERR", Address: "0x18", PC: "0x401000"}}, nil,
			[]string{CodeNilDereference}, map[string]string{CodeNilDereference: "at address 0x18"}},
		{"wild pointer", func() *corepipe.Report {
			r := fatalReport("fault")
			r.Fault = &corepipe.Fault{Name: "SIGSEGV", CodeName: "SEGV_MAPERR", Address: "0xdeadbeef000"}
			return r
		}(), nil, []string{CodeExitSignal, CodeWildPointer}, map[string]string{CodeWildPointer: "0xdeadbeef000"}},
		{"bus error", func() *corepipe.Report {
			r := fatalReport("fault")
			r.Fault = &corepipe.Fault{Name: "SIGBUS", CodeName: "BUS_ADRERR", Address: "0x7f0000001000"}
			return r
		}(), nil, []string{CodeExitSignal, CodeBusError}, map[string]string{CodeBusError: "SIGBUS BUS_ADRERR"}},
		{"cgo fault", &corepipe.Report{Go: &corepipe.GoInfo{Version: "go1.26"},
			Panic:             &corepipe.Panic{Kind: corepipe.PanicKindSignal, Message: "SIGSEGV: segmentation violation"},
			Fault:             &corepipe.Fault{Name: "SIGSEGV", Address: "0x0"},
			Threads:           []corepipe.Thread{{ID: 1, Frames: []corepipe.Frame{{Function: "crash_in_c"}, {Function: "runtime.asmcgocall"}}}},
			CrashingGoroutine: 1, Goroutines: []corepipe.Goroutine{{ID: 1, Frames: []corepipe.Frame{{Function: "runtime.cgocall"}, {Function: "main._Cfunc_crash_in_c"}, {Function: "main.callC"}}}},
		}, nil, []string{CodeCgoFault, CodeNilDereference}, map[string]string{CodeCgoFault: "crash_in_c ← runtime.asmcgocall; called from Go in main.callC"}},
		{"libc fault", &corepipe.Report{Signal: &corepipe.Signal{Number: 11, Name: "SIGSEGV"},
			Panic:   &corepipe.Panic{Kind: corepipe.PanicKindSignal, Message: "SIGSEGV: segmentation violation"},
			Fault:   &corepipe.Fault{Name: "SIGSEGV", Address: "0x5"},
			Threads: []corepipe.Thread{{ID: 1, Frames: []corepipe.Frame{{Function: "libc.so.6+0x1234"}, {Function: "parse"}}}},
		}, nil, []string{CodeExitSignal, CodeCFault, CodeNilDereference}, map[string]string{CodeCFault: "libc.so.6+0x1234 ← parse"}},
		{"go fault is not a cgo fault", &corepipe.Report{Go: &corepipe.GoInfo{Version: "go1.26"},
			Panic:   &corepipe.Panic{Kind: corepipe.PanicKindSignal, Message: "SIGSEGV: segmentation violation"},
			Fault:   &corepipe.Fault{Name: "SIGSEGV", Address: "0x0"},
			Threads: []corepipe.Thread{{ID: 1, Frames: []corepipe.Frame{{Function: "runtime.memmove"}}}},
		}, nil, []string{CodeNilDereference}, nil},
		{"deadlock", func() *corepipe.Report {
			r := fatalReport("all goroutines are asleep - deadlock!")
			r.Goroutines = []corepipe.Goroutine{{ID: 1, Status: "chan receive", Frames: []corepipe.Frame{{Function: "runtime.gopark"}, {Function: "main.main"}}}}
			r.GoroutineGroups = signature.GoroutineGroups(r.Goroutines)
			return r
		}(), nil, []string{CodeExitSignal, CodeDeadlock}, map[string]string{CodeDeadlock: "1 goroutines: 1 × [chan receive] in main.main"}},
		{"concurrent map writes", func() *corepipe.Report {
			r := fatalReport("concurrent map writes")
			r.CrashingGoroutine = 3
			r.Goroutines = []corepipe.Goroutine{
				{ID: 3, Status: "running", Frames: []corepipe.Frame{{Function: "internal/runtime/maps.fatal"}, {Function: "main.hammer"}}},
				{ID: 4, Status: "running", Frames: []corepipe.Frame{{Function: "main.hammer"}}},
			}
			return r
		}(), nil, []string{CodeExitSignal, CodeConcurrentMap},
			map[string]string{CodeConcurrentMap: "goroutine 3 was in main.hammer; 1 other goroutines were running program code"}},
		{"stack overflow", func() *corepipe.Report {
			r := fatalReport("stack overflow")
			r.CrashingGoroutine = 1
			g := corepipe.Goroutine{ID: 1, FramesElided: 2_000_000}
			for range 999 {
				g.Frames = append(g.Frames, corepipe.Frame{Function: "main.recurse"})
			}
			g.Frames = append(g.Frames, corepipe.Frame{Function: "main.main"})
			r.Goroutines = []corepipe.Goroutine{g}
			return r
		}(), nil, []string{CodeExitSignal, CodeStackOverflow},
			map[string]string{CodeStackOverflow: "2001000 frames (1000 kept, 2000000 elided); main.recurse is 999"}},
		{"no leak", many(100), nil, []string{CodeExitSignal}, nil},
		{"goroutine leak", many(leakGroup), nil, []string{CodeExitSignal, CodeGoroutineLeak},
			map[string]string{CodeGoroutineLeak: "1001 goroutines: 1000 × [chan receive] in main.wait created by main.serve"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Diagnose(tc.r, tc.c)
			if codes := codesOf(got); !slices.Equal(codes, tc.want) {
				t.Errorf("checks fired %v, want %v", codes, tc.want)
			}
			for _, d := range got {
				if d.Message == "" || d.Evidence == "" || d.Severity == "" || !Known(d.Code) {
					t.Errorf("check %+v lacks a message, evidence or severity", d)
				}
				if want, ok := tc.evidence[d.Code]; ok && !strings.Contains(d.Evidence, want) {
					t.Errorf("%s evidence %q lacks %q", d.Code, d.Evidence, want)
				}
			}
		})
	}
}
