package analyzer

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The test binary is the trampoline of the children the tests start.
	ChildInit()
	goleak.VerifyTestMain(m)
}
