package gotrace

import (
	"strings"
	"testing"
)

// FuzzParse: whatever the log holds, the parse ends with a report or
// ErrNoCrash, keeps within its bounds, and puts the crashing goroutine
// first.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"panic: boom\n\ngoroutine 1 [running]:\nmain.main()\n\t/x.go:3 +0x1\n",
		"fatal error: all goroutines are asleep - deadlock!\n\ngoroutine 1 [chan receive]:\nmain.main()\n\t/x.go:3 +0x1d\n",
		"SIGSEGV: segmentation violation\nPC=0x0 m=0 sigcode=1 addr=0x0\n\ngoroutine 1 gp=0x1 m=0 mp=0x2 [syscall]:\nruntime.cgocall(0x1, 0x2)\n\t/r.go:1 +0x1 fp=0x1 sp=0x2 pc=0x3\n",
		"panic: a [recovered]\n\tpanic: b\n[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x1]\n\ngoroutine 7 [running]:\n...3 frames elided...\ncreated by main.main in goroutine 1\n\t/x.go:9 +0x2\n",
		"runtime stack:\nruntime.throw({0x1, 0x2})\n\t/p.go:1 +0x1\n\ngoroutine 0 gp=0x1 m=1 mp=0x2 [idle]:\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		r, err := Parse(in, Options{MaxGoroutines: 8, MaxFrames: 6, MaxLine: 256})
		if err != nil {
			return
		}
		if len(r.Goroutines) > 8 {
			t.Fatalf("%d goroutines kept", len(r.Goroutines))
		}
		for _, g := range r.Goroutines {
			if len(g.Frames) > 6 {
				t.Fatalf("%d frames kept", len(g.Frames))
			}
			for _, fr := range g.Frames {
				if len(fr.Function) > 256 || strings.Contains(fr.Function, "\n") {
					t.Fatalf("function %q", fr.Function)
				}
			}
		}
		if r.CrashingGoroutine != 0 && (len(r.Goroutines) == 0 || r.Goroutines[0].ID != r.CrashingGoroutine) {
			t.Fatalf("crashing goroutine %d is not first", r.CrashingGoroutine)
		}
	})
}
