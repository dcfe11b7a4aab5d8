package main

import (
	"testing"

	"github.com/corepipe/corepipe/internal/testkit"
)

// TestMain fails the package when a goroutine outlives its tests: the collector's deadline watcher ends with its run.
func TestMain(m *testing.M) { testkit.VerifyTestMain(m) }
