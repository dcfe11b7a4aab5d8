package inspect

import (
	"context"
	"testing"

	"github.com/corepipe/corepipe/internal/testkit/benchtool"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
)

// BenchmarkInspectParked analyses a core of 10 000 parked goroutines, the
// case that decides whether an analysis takes seconds or minutes; the
// 100 000-goroutine and 4 GiB-heap numbers, compared with dlv, come from
// scripts/bench-analyzer.sh.
func BenchmarkInspectParked(b *testing.B) {
	exe := crashtest.BuildGo(b, crashtest.Program{Files: map[string]string{"main.go": benchtool.ParkedProgram}})
	core, _ := crashtest.Core(b, exe, nil, "10000")
	b.ReportAllocs()
	for b.Loop() {
		r, err := Inspect(context.Background(), core, exe, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if len(r.Goroutines) < 10000 {
			b.Fatalf("%d goroutines reported, want at least 10000", len(r.Goroutines))
		}
	}
}
