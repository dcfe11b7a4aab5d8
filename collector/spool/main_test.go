package spool

import (
	"testing"

	"github.com/corepipe/corepipe/internal/testkit"
)

// The spool's tests race walkers against writers on goroutines: none may
// outlive them.
func TestMain(m *testing.M) { testkit.VerifyTestMain(m) }
