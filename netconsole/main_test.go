package netconsole

import (
	"testing"

	"github.com/corepipe/corepipe/internal/testkit"
)

// The receiver serves and the recorder records on goroutines of their own:
// none may outlive the tests.
func TestMain(m *testing.M) { testkit.VerifyTestMain(m) }
