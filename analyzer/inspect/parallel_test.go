package inspect

import (
	"context"
	"testing"

	"github.com/corepipe/corepipe/internal/testkit/benchtool"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
	"github.com/corepipe/corepipe/internal/testkit/gotraceback"
)

// TestManyGoroutinesReadInParallel: a core with enough goroutines is read
// by two views of the core at once; every goroutine must still be reported
// exactly once, crashing one first, as the runtime printed them.
func TestManyGoroutinesReadInParallel(t *testing.T) {
	exe := crashtest.BuildGo(t, crashtest.Program{Files: map[string]string{"main.go": benchtool.ParkedProgram}})
	core, res := crashtest.Core(t, exe, nil, "6000")
	r, err := Inspect(context.Background(), core, exe, Options{})
	if err != nil {
		t.Fatal(err)
	}
	dump, err := gotraceback.Parse(res.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if len(dump.Goroutines) < 6000 || len(r.Goroutines)/pageSize < minParallelPages-1 {
		t.Fatalf("%d goroutines printed, %d reported: too few to read in parallel", len(dump.Goroutines), len(r.Goroutines))
	}
	for _, m := range append(gotraceback.Compare(r, dump), gotraceback.CompareStacks(r, dump)...) {
		t.Error(m)
	}
	seen := map[int64]bool{}
	for _, g := range r.Goroutines {
		if seen[g.ID] {
			t.Fatalf("goroutine %d reported twice", g.ID)
		}
		seen[g.ID] = true
	}
	if r.Goroutines[0].ID != r.CrashingGoroutine {
		t.Errorf("goroutine %d first, want the crashing one %d", r.Goroutines[0].ID, r.CrashingGoroutine)
	}
}
