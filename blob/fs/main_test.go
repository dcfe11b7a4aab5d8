package fs_test

import (
	"testing"

	"github.com/corepipe/corepipe/internal/testkit"
)

func TestMain(m *testing.M) { testkit.VerifyTestMain(m) }
