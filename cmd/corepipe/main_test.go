package main

import (
	"testing"

	"github.com/corepipe/corepipe/internal/testkit"
)

// TestMain fails the package when a goroutine outlives its tests: runAll and serve stop every part they start before they return.
func TestMain(m *testing.M) { testkit.VerifyTestMain(m) }
