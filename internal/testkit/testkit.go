// Package testkit is corepipe's shared test kit, as Tailscale's tstest:
// polling with one deadline, a log buffer safe across goroutines, and the
// goroutine leak check with the one list of what may outlive a test. It
// imports no corepipe package, so every package's tests may use it; the
// rigs that start adapters and servers are its subpackages.
package testkit

import (
	"bytes"
	"os"
	"sync"
	"testing"
	"time"
)

// WaitDeadline bounds WaitFor. It only catches a test that would otherwise
// hang, so it is long; COREPIPE_TEST_WAIT (a Go duration) changes it, for
// a slow machine or a race build.
var WaitDeadline = deadlineFromEnv(os.Getenv("COREPIPE_TEST_WAIT"), 30*time.Second)

func deadlineFromEnv(v string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return d
	}
	return def
}

// WaitFor polls cond until it holds, failing the test with what it waited
// for once WaitDeadline has passed.
func WaitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(WaitDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", WaitDeadline, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// SyncBuffer is a bytes.Buffer that goroutines may write while the test
// reads it: the log of a server or a notifier under test.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
