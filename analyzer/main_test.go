package analyzer

import (
	"testing"

	"github.com/corepipe/corepipe/internal/testkit"
)

func TestMain(m *testing.M) {
	// The test binary is the trampoline of the children the tests start.
	ChildInit()
	testkit.VerifyTestMain(m)
}
