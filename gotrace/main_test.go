package gotrace_test

import (
	"testing"

	"github.com/corepipe/corepipe/internal/testkit"
)

// TestMain fails the package when a goroutine outlives its tests: the parser starts nothing that outlives a call.
func TestMain(m *testing.M) { testkit.VerifyTestMain(m) }
