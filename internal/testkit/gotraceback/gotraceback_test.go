package gotraceback

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/corepipe/corepipe"
)

func parseFile(t *testing.T, name string) *Dump {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	d, err := Parse(string(b))
	if err != nil {
		t.Fatalf("Parse %s: %v", name, err)
	}
	return d
}

func ids(d *Dump) []int64 {
	var out []int64
	for _, g := range d.Goroutines {
		out = append(out, g.ID)
	}
	return out
}

// wantHead requires d to have the kind, message and signal (nil: none)
// the runtime printed, and the goroutines want, in order.
func wantHead(t *testing.T, d *Dump, kind, msg string, sig *Signal, want ...int64) {
	t.Helper()
	if d.Kind != kind || d.Message != msg {
		t.Errorf("kind, message = %q, %q; want %q, %q", d.Kind, d.Message, kind, msg)
	}
	if (d.Signal == nil) != (sig == nil) || sig != nil && *d.Signal != *sig {
		t.Errorf("signal = %+v, want %+v", d.Signal, sig)
	}
	if got := ids(d); !slices.Equal(got, want) {
		t.Errorf("goroutines = %v, want %v", got, want)
	}
}

func fns(g Goroutine) []string {
	var out []string
	for _, f := range g.Frames {
		out = append(out, f.Function)
	}
	return out
}

func TestParseNilDereference(t *testing.T) {
	d := parseFile(t, "nil_deref.txt")
	wantHead(t, d, "panic", "runtime error: invalid memory address or nil pointer dereference",
		&Signal{Name: "SIGSEGV", Code: 1, Address: "0x0", PC: "0x4865c4"}, 1, 2, 3, 4, 17, 18, 19, 20)
	if d.CrashingGoroutine != 1 {
		t.Errorf("crashing goroutine = %d", d.CrashingGoroutine)
	}
	g := d.Goroutines[0]
	want := []string{"panic", "runtime.panicmem", "runtime.sigpanic", "main.(*server).retries", "main.handle", "main.serve", "main.main", "runtime.main", "runtime.goexit"}
	if !slices.Equal(fns(g), want) {
		t.Errorf("frames = %v, want %v", fns(g), want)
	}
	if f := g.Frames[3]; !f.Inlined || f.Line != 12 || !strings.HasSuffix(f.File, "/main.go") || f.Offset != 0 {
		t.Errorf("inlined frame = %+v", f)
	}
	if f := g.Frames[4]; f.Inlined || f.Line != 15 || f.Offset != 4 {
		t.Errorf("frame = %+v", f)
	}
	g2 := d.Goroutines[1]
	if g2.Status != "force gc (idle)" || g2.CreatedBy != "runtime.init.7" || g2.CreatedIn != 1 {
		t.Errorf("goroutine 2 = %+v", g2)
	}
	if g := d.Goroutines[7]; g.Status != "sync.Mutex.Lock" || g.Frames[len(g.Frames)-2].Function != "main.main.func4" {
		t.Errorf("goroutine 20 = %+v", g)
	}
}

func TestParseSignalInCgo(t *testing.T) {
	d := parseFile(t, "cgo_sigsegv.txt")
	// The g0 stacks the other Ms print after "SIGQUIT: quit" are not goroutines.
	wantHead(t, d, "signal", "SIGSEGV: segmentation violation",
		&Signal{Name: "SIGSEGV", Code: 1, Address: "0x0", PC: "0x47e520"}, 1, 2, 3, 4)
	if d.CrashingGoroutine != 1 || d.Goroutines[0].Status != "syscall" {
		t.Errorf("crashing = %d, %+v", d.CrashingGoroutine, d.Goroutines[0])
	}
	if got := fns(d.Goroutines[0]); !slices.Equal(got, []string{"runtime.cgocall", "main._Cfunc_crash_in_c", "main.main", "runtime.main", "runtime.goexit"}) {
		t.Errorf("frames = %v", got)
	}
}

func TestParseCustomPanic(t *testing.T) {
	d := parseFile(t, "custom_panic.txt")
	wantHead(t, d, "panic", "custom message: x=3", nil, 1, 2, 3, 4, 5, 6)
	if g := d.Goroutines[5]; g.Status != "runnable" || len(g.Frames) != 2 {
		t.Errorf("goroutine 6 = %+v", g)
	}
}

func TestParseChainsElisionAndDuplicates(t *testing.T) {
	d := parseFile(t, "recovered_chain.txt")
	if d.Message != "first [recovered]\npanic: second\nwith a second line" {
		t.Errorf("message = %q", d.Message)
	}
	if s := d.Signal; s == nil || s.Code != 2 || s.Address != "0xdead" {
		t.Errorf("signal = %+v", s)
	}
	if got := ids(d); !slices.Equal(got, []int64{7, 1, 9}) {
		t.Errorf("goroutines = %v, want 7 1 9 (goroutine 0 dropped, 9 once)", got)
	}
	g := d.Goroutines[0]
	if d.CrashingGoroutine != 7 || !g.Locked || g.ElidedAt != 3 || g.Elided != 5000 || g.CreatedBy != "main.start" {
		t.Errorf("goroutine 7 = %+v", g)
	}
	if g.Frames[1].Function != "main.deep[...]" {
		t.Errorf("generic frame = %+v", g.Frames[1])
	}
	if g := d.Goroutines[1]; g.Status != "chan receive" || g.WaitMinutes != 12 {
		t.Errorf("goroutine 1 = %+v", g)
	}
	if g := d.Goroutines[2]; len(g.Frames) != 1 || g.Frames[0].Function != "main.spin" {
		t.Errorf("goroutine 9 should keep the block with its stack: %+v", g)
	}
}

func TestParseRejectsOutputWithoutCrash(t *testing.T) {
	if d, err := Parse("hello\nworld\n"); err == nil {
		t.Fatalf("Parse = %+v, want an error", d)
	}
}

// report builds the report a faithful analyzer produces for nil_deref.txt.
func report(d *Dump) *corepipe.Report {
	r := &corepipe.Report{
		CrashingGoroutine: d.CrashingGoroutine,
		Panic:             &corepipe.Panic{Kind: d.Kind, Message: d.Message},
		Fault:             &corepipe.Fault{Signal: 11, Name: "SIGSEGV", Code: 1, Address: "0x0", PC: "0x4865c4"},
	}
	for _, g := range d.Goroutines {
		rg := corepipe.Goroutine{ID: g.ID, Status: g.Status}
		for _, f := range g.Frames {
			rg.Frames = append(rg.Frames, corepipe.Frame{Function: f.Function, File: f.File, Line: f.Line})
		}
		r.Goroutines = append(r.Goroutines, rg)
	}
	return r
}

func TestCompare(t *testing.T) {
	d := parseFile(t, "nil_deref.txt")
	if diffs := Compare(report(d), d); len(diffs) > 0 {
		t.Fatalf("a faithful report differs: %v", diffs)
	}

	// Machinery frames at the top are not held against a report.
	r := report(d)
	r.Goroutines[0].Frames = r.Goroutines[0].Frames[3:]
	if diffs := Compare(r, d); len(diffs) > 0 {
		t.Errorf("a report without panic machinery differs: %v", diffs)
	}

	for name, mutate := range map[string]func(r *corepipe.Report){
		"crashing goroutine": func(r *corepipe.Report) { r.CrashingGoroutine = 17 },
		"frames": func(r *corepipe.Report) { // delve's dropped frame
			f := r.Goroutines[0].Frames
			r.Goroutines[0].Frames = append(f[:5:5], f[6:]...)
		},
		"goroutines":    func(r *corepipe.Report) { r.Goroutines = r.Goroutines[:len(r.Goroutines)-1] },
		"panic":         func(r *corepipe.Report) { r.Panic.Message = "boom" },
		"fault address": func(r *corepipe.Report) { r.Fault.Address = "0x8" },
	} {
		r := report(d)
		mutate(r)
		if diffs := Compare(r, d); len(diffs) == 0 {
			t.Errorf("%s: a wrong report passes", name)
		} else {
			t.Logf("%s: %s", name, diffs[0])
		}
	}
}

// A signal sent with tgkill has si_code SI_TKILL (-6), which linux/amd64
// prints unsigned; only SIGSEGV and SIGBUS print an address.
func TestParseUnsignedSigcode(t *testing.T) {
	d, err := Parse("SIGQUIT: quit\nPC=0x40876c m=0 sigcode=18446744073709551610\n\n" +
		"goroutine 1 gp=0x1 m=0 mp=0x1 [running]:\nmain.f()\n\t/src/main.go:7 +0xc\n")
	if err != nil {
		t.Fatal(err)
	}
	if s := d.Signal; s == nil || *s != (Signal{Name: "SIGQUIT", Code: -6, PC: "0x40876c"}) {
		t.Errorf("signal = %+v", s)
	}
	r := &corepipe.Report{CrashingGoroutine: 1,
		Goroutines: []corepipe.Goroutine{{ID: 1, Frames: []corepipe.Frame{{Function: "main.f", Line: 7}}}},
		Panic:      &corepipe.Panic{Kind: "signal", Message: "SIGQUIT: quit"},
		Fault:      &corepipe.Fault{Name: "SIGQUIT", Code: -6, PC: "0x40876c"}}
	if diffs := Compare(r, d); len(diffs) > 0 {
		t.Errorf("Compare: %v", diffs)
	}
}
