package diagnose_test

import (
	"context"
	"slices"
	"testing"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/analyzer/diagnose"
	"github.com/corepipe/corepipe/analyzer/inspect"
	"github.com/corepipe/corepipe/analyzer/signature"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
)

// TestRealCrashes runs the checks on real crashes of the inspect package's
// crash-kinds program: each must fire the check that names it.
func TestRealCrashes(t *testing.T) {
	t.Parallel()
	exe := crashtest.BuildKinds(t)
	for kind, want := range map[string]string{
		"nilfield":  diagnose.CodeNilDereference,
		"wild":      diagnose.CodeWildPointer,
		"sigbus":    diagnose.CodeBusError,
		"mapwrites": diagnose.CodeConcurrentMap,
		"deadlock":  diagnose.CodeDeadlock,
		"overflow":  diagnose.CodeStackOverflow,
		"threads":   diagnose.CodeThreadExhaustion,
		"oom":       diagnose.CodeOutOfMemory,
	} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			core, _ := crashtest.Core(t, exe, nil, kind)
			r, err := inspect.Inspect(context.Background(), core, exe, inspect.Options{})
			if err != nil {
				t.Fatalf("Inspect: %v", err)
			}
			r.GoroutineGroups = signature.GoroutineGroups(r.Goroutines)
			got := diagnose.Diagnose(r, &corepipe.Crash{Limits: map[string]string{"Max processes": "63704"}})
			var codes []string
			for _, d := range got {
				codes = append(codes, d.Code)
				if d.Code == want {
					t.Logf("%s: %s (%s)", d.Code, d.Message, d.Evidence)
				}
			}
			if !slices.Contains(codes, want) || !slices.Contains(codes, diagnose.CodeExitSignal) {
				t.Errorf("checks fired %v, want %s and %s", codes, want, diagnose.CodeExitSignal)
			}
		})
	}
}
