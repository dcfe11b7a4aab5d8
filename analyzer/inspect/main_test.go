package inspect

import (
	"testing"

	"github.com/corepipe/corepipe/internal/testkit"
)

// TestMain fails the package when a goroutine outlives its tests: the page workers of an analysis are joined before Inspect returns.
func TestMain(m *testing.M) { testkit.VerifyTestMain(m) }
