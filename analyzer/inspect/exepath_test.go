package inspect

import (
	"context"
	"testing"

	"github.com/corepipe/corepipe/internal/testkit/crashtest"
)

// TestExecutableFromCore: without an executable given, the one the kernel
// recorded as mapped at the entry point is used.
func TestExecutableFromCore(t *testing.T) {
	exe := crashtest.BuildGo(t, crashtest.Program{Files: map[string]string{"main.go": `package main

func main() { panic("found by the core") }
`}})
	core, _ := crashtest.Core(t, exe, nil)
	r, err := Inspect(context.Background(), core, "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Panic == nil || r.Panic.Message != "found by the core" || r.Go == nil {
		t.Errorf("report without an explicit executable: panic %+v, go %+v", r.Panic, r.Go)
	}
}
