package signature

import (
	"slices"
	"strings"
	"testing"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit"
)

func TestFunction(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		keep     bool
	}{
		{"main.main.func1", "main.main.func", true},
		{"main.(*server).run.func2.3", "main.(*server).run.func", true},
		{"main.main.gowrap1", "main.main.gowrap", true},
		{"main.(*T).Close.deferwrap2", "main.(*T).Close.deferwrap", true},
		{"main.Map[...].Get", "main.Map[...].Get", true},
		{"main.Map[go.shape.int,go.shape.string].Get", "main.Map[...].Get", true},
		{"main.Sum[main.List[int]]", "main.Sum[...]", true},
		{"main._Cfunc_crash_in_c", "C.crash_in_c", true},
		{"_cgo_0a1b2c3d_Cfunc_crash_in_c", "C.crash_in_c", true},
		{"libc.so.6+0x85f16", "libc.so.6", true},
		{"crash_here", "crash_here", true},
		{"runtime.sigpanic", "", false},
		{"internal/runtime/maps.fatal", "", false},
		{"panic", "", false},
		{"main.(*server).handle-fm", "", false},
		{"runtime.goexit", "", false},
		{"?", "", false},
	} {
		got, ok := Function(tc.in)
		if got != tc.want || ok != tc.keep {
			t.Errorf("Function(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.keep)
		}
	}
}

func TestMessage(t *testing.T) {
	testkit.Table(t, "Message", Message, map[string]string{
		"runtime error: index out of range [5] with length 3":            "runtime error: index out of range [N] with length N",
		"runtime error: slice bounds out of range [:12] with capacity 8": "runtime error: slice bounds out of range [:N] with capacity N",
		"(main.state) 0x4d5020":              "(main.state) 0xN",
		"concurrent map writes":              "concurrent map writes",
		"custom failure: order 42 not found": "custom failure: order N not found",
	})
}

func frames(fns ...string) []corepipe.Frame {
	var out []corepipe.Frame
	for i, fn := range fns {
		out = append(out, corepipe.Frame{Function: fn, File: "/src/" + fn + ".go", Line: 10 + i, PC: "0x4000"})
	}
	return out
}

func goReport(msg string, fns ...string) *corepipe.Report {
	return &corepipe.Report{
		Panic:             &corepipe.Panic{Kind: corepipe.PanicKindPanic, Message: msg},
		CrashingGoroutine: 1,
		Goroutines:        []corepipe.Goroutine{{ID: 1, Status: "running", Frames: frames(fns...)}},
	}
}

func TestFramesAreNormalised(t *testing.T) {
	r := goReport("boom", "panic", "runtime.panicIndex", "main.deep", "main.deep", "main.deep",
		"main.handler.func1", "main.Map[go.shape.int].Get", "main.serve", "main.main", "main.extra", "runtime.main", "runtime.goexit")
	want := []string{"main.deep", "main.handler.func", "main.Map[...].Get", "main.serve", "main.main"}
	if got := Frames(r); !slices.Equal(got, want) {
		t.Errorf("Frames = %v, want %v", got, want)
	}
}

func TestSignature(t *testing.T) {
	base := goReport("runtime error: index out of range [5] with length 3", "runtime.panicIndex", "main.lookup", "main.main")
	sig := Signature(base)
	if !strings.HasPrefix(sig, Version+":") || len(sig) != len(Version)+1+32 {
		t.Fatalf("signature %q is not %s:<32 hex>", sig, Version)
	}

	moved := goReport("runtime error: index out of range [7] with length 2", "runtime.panicIndex", "main.lookup", "main.main")
	moved.Goroutines[0].Frames[1].Line = 99
	moved.Goroutines[0].Frames[1].File = "lookup.go"
	moved.Goroutines[0].Frames[1].PC = "0x9999"
	moved.Goroutines = append(moved.Goroutines, corepipe.Goroutine{ID: 7, Status: "chan receive", Frames: frames("main.worker")})
	if got := Signature(moved); got != sig {
		t.Errorf("same bug at another index, line, address: %s, want %s", got, sig)
	}

	for name, r := range map[string]*corepipe.Report{
		"other message": goReport("assignment to entry in nil map", "main.lookup", "main.main"),
		"other caller":  goReport("runtime error: index out of range [5] with length 3", "main.lookup", "main.other", "main.main"),
		"fatal error": {Panic: &corepipe.Panic{Kind: corepipe.PanicKindFatal, Message: "runtime error: index out of range [5] with length 3"},
			CrashingGoroutine: 1, Goroutines: base.Goroutines},
	} {
		if got := Signature(r); got == sig {
			t.Errorf("%s: same signature %s as a different bug", name, got)
		}
	}
}

func TestSignatureWithoutCrashingGoroutine(t *testing.T) {
	deadlock := func(mainLine int) *corepipe.Report {
		return &corepipe.Report{
			Panic: &corepipe.Panic{Kind: corepipe.PanicKindFatal, Message: "all goroutines are asleep - deadlock!"},
			Goroutines: []corepipe.Goroutine{
				{ID: 1, Status: "chan receive", Frames: frames("runtime.gopark", "main.main")},
				{ID: 2, Status: "GC sweep wait", Frames: frames("runtime.gopark", "runtime.bgsweep")},
				{ID: 3, Status: "GC sweep wait", Frames: frames("runtime.gopark", "runtime.bgsweep")},
				{ID: 4, Status: "sync.Mutex.Lock", Frames: frames("sync.(*Mutex).Lock", "main.worker")},
				{ID: 5, Status: "sync.Mutex.Lock", Frames: frames("sync.(*Mutex).Lock", "main.worker")},
			},
		}
	}
	a, b := deadlock(10), deadlock(20)
	b.Goroutines[0].Frames[1].Line = 77
	if Signature(a) != Signature(b) {
		t.Error("the same deadlock got two signatures")
	}
	if got, want := Frames(a), []string{"sync.(*Mutex).Lock", "main.worker"}; !slices.Equal(got, want) {
		t.Errorf("deadlock frames %v, want the biggest group with program code %v", got, want)
	}

	c := &corepipe.Report{
		Signal: &corepipe.Signal{Number: 11, Name: "SIGSEGV"},
		Fault:  &corepipe.Fault{Signal: 11, Name: "SIGSEGV", Address: "0x18"},
		Threads: []corepipe.Thread{{ID: 9, Frames: []corepipe.Frame{
			{Function: "libc.so.6+0x1234"}, {Function: "crash_here"}, {Function: "crasher"}}}},
	}
	if got, want := Class(c), "SIGSEGV nil page"; got != want {
		t.Errorf("C class %q, want %q", got, want)
	}
	if got, want := Frames(c), []string{"libc.so.6", "crash_here", "crasher"}; !slices.Equal(got, want) {
		t.Errorf("C frames %v, want %v", got, want)
	}
	wild := *c
	wild.Fault = &corepipe.Fault{Signal: 11, Name: "SIGSEGV", Address: "0xdeadbeef000"}
	if Signature(&wild) == Signature(c) {
		t.Error("a wild pointer and a nil dereference share a signature")
	}
}

func TestTerminationSignature(t *testing.T) {
	oom := func(pod, image string) *corepipe.Report {
		return &corepipe.Report{
			Termination: &corepipe.Termination{Reason: "OOMKilled", ExitCode: 137},
			Container:   &corepipe.Container{Namespace: "default", Pod: pod, Container: "app", Image: image},
		}
	}
	a := Signature(oom("web-7d9f-abc", "registry:5000/team/web:v1.2"))
	if b := Signature(oom("web-7d9f-xyz", "registry:5000/team/web:v1.3@sha256:0123")); a != b {
		t.Errorf("the same container's OOM kills in two pods and versions: %s and %s", a, b)
	}
	if c := Signature(oom("web-7d9f-abc", "registry:5000/team/api:v1.2")); c == a {
		t.Error("OOM kills of two images share a signature")
	}
	if got, want := Class(oom("p", "app:1")), "termination: OOMKilled exit 137 container app image app"; got != want {
		t.Errorf("class %q, want %q", got, want)
	}
}

func TestGoroutineGroups(t *testing.T) {
	gs := []corepipe.Goroutine{
		{ID: 1, Status: "running", Frames: frames("main.main")},
		{ID: 5, Status: "chan receive", CreatedBy: "main.main in goroutine 1", Frames: frames("runtime.gopark", "main.worker")},
		{ID: 6, Status: "chan receive", CreatedBy: "main.main in goroutine 1", Frames: frames("runtime.gopark", "main.worker")},
		{ID: 7, Status: "select", CreatedBy: "main.main in goroutine 1", Frames: frames("runtime.gopark", "main.worker")},
		{ID: 8, Status: "chan receive", CreatedBy: "main.spawn in goroutine 5", Frames: frames("runtime.gopark", "main.worker")},
		{ID: 9, Status: "chan receive", CreatedBy: "main.main in goroutine 1", Frames: frames("runtime.gopark", "main.worker")},
	}
	moved := frames("runtime.gopark", "main.worker")
	moved[1].Line = 99
	gs = append(gs, corepipe.Goroutine{ID: 10, Status: "chan receive", CreatedBy: "main.main in goroutine 1", Frames: moved})

	groups := GoroutineGroups(gs)
	if len(groups) != 5 {
		t.Fatalf("%d groups, want 5: %+v", len(groups), groups)
	}
	g := groups[0]
	if g.Count != 3 || !slices.Equal(g.GoroutineIDs, []int64{5, 6, 9}) || g.Status != "chan receive" || g.CreatedBy != "main.main" || len(g.TopFrames) != 2 {
		t.Errorf("biggest group %+v, want goroutines 5, 6, 9 in chan receive created by main.main", g)
	}
	total := 0
	for _, g := range groups {
		total += g.Count
		if len(g.GoroutineIDs) != g.Count {
			t.Errorf("group %+v lists %d ids", g, len(g.GoroutineIDs))
		}
	}
	if total != len(gs) {
		t.Errorf("groups hold %d goroutines, want %d", total, len(gs))
	}
	if groups[1].GoroutineIDs[0] != 1 {
		t.Errorf("ties are not in order of their first goroutine: %+v", groups[1:])
	}
}
