package agent

import (
	"testing"

	"github.com/corepipe/corepipe/analyzer"
	"github.com/corepipe/corepipe/internal/testkit"
)

// TestMain fails the package when a goroutine outlives its tests: an agent's watcher, shippers and heartbeats end with Run.
func TestMain(m *testing.M) {
	// The test binary is the trampoline of the node analyses' children.
	analyzer.ChildInit()
	testkit.VerifyTestMain(m)
}
