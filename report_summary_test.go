package corepipe

import (
	"reflect"
	"testing"
)

func TestSummaryTopFrames(t *testing.T) {
	frames := func(names ...string) []Frame {
		var fs []Frame
		for _, n := range names {
			fs = append(fs, Frame{Function: n, File: "/src/x.go", Line: 1})
		}
		return fs
	}
	names := func(fs []Frame) []string {
		var out []string
		for _, f := range fs {
			out = append(out, f.Function)
		}
		return out
	}
	long := []string{"runtime.raise", "panic", "runtime.sigpanic"}
	for i := range SummaryFrames + 3 {
		long = append(long, "main.f"+string(rune('a'+i)))
	}
	for _, tc := range []struct {
		name string
		r    Report
		want []string
	}{
		{"panic machinery cut", Report{CrashingGoroutine: 1, Goroutines: []Goroutine{
			{ID: 2, Frames: frames("main.other")},
			{ID: 1, Frames: frames("panic", "runtime.panicmem", "runtime.sigpanic", "main.(*server).retries", "main.handle", "main.main")},
		}}, []string{"main.(*server).retries", "main.handle", "main.main"}},
		{"capped", Report{CrashingGoroutine: 1, Goroutines: []Goroutine{{ID: 1, Frames: frames(long...)}}},
			names(frames(long[3 : 3+SummaryFrames]...))},
		{"inside the runtime", Report{CrashingGoroutine: 1, Goroutines: []Goroutine{{ID: 1, Frames: frames("runtime.throw", "runtime.mapassign")}}},
			[]string{"runtime.throw", "runtime.mapassign"}},
		{"C program: the dying thread", Report{Process: Process{TID: 7}, Threads: []Thread{
			{ID: 6, Frames: frames("poll")},
			{ID: 7, Frames: frames("crash", "main")},
		}}, []string{"crash", "main"}},
		{"deadlock: nothing crashed", Report{Goroutines: []Goroutine{{ID: 1, Frames: frames("main.main")}}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.r.Summary()
			if got := names(s.TopFrames); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("top frames %v, want %v", got, tc.want)
			}
			if s.Goroutines != nil || s.Threads != nil {
				t.Error("summary kept goroutines or threads")
			}
			if again := s.Summary(); !reflect.DeepEqual(again.TopFrames, s.TopFrames) {
				t.Errorf("summary of a summary lost its top frames: %v", again.TopFrames)
			}
		})
	}
}

func TestOwnFrame(t *testing.T) {
	parked := []Frame{{Function: "runtime.gopark"}, {Function: "runtime.chanrecv1"}, {Function: "main.worker"}, {Function: "runtime.goexit"}}
	if f := OwnFrame(parked); f.Function != "main.worker" {
		t.Errorf("OwnFrame of a parked goroutine = %q, want main.worker", f.Function)
	}
	system := []Frame{{Function: "runtime.gopark"}, {Function: "runtime.bgsweep"}}
	if f := OwnFrame(system); f.Function != "runtime.gopark" {
		t.Errorf("OwnFrame of a runtime goroutine = %q, want its innermost frame", f.Function)
	}
	if f := OwnFrame(nil); f != (Frame{}) {
		t.Errorf("OwnFrame(nil) = %+v", f)
	}
}
