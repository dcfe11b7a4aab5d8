package containerlog_test

import (
	"testing"

	"github.com/corepipe/corepipe/internal/testkit"
)

// TestMain fails the package when a goroutine outlives its tests: the readers of a container's log are stopped with their context.
func TestMain(m *testing.M) { testkit.VerifyTestMain(m) }
