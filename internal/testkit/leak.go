package testkit

import (
	"testing"

	"go.uber.org/goleak"
)

// leakIgnores is what may outlive a test: an idle keep-alive connection of
// net/http's shared transport, whose read and write loops wait for the
// server (MinIO, Slack, an API under test) to close it, whether they sit in
// their select or in the network poller; and the runtime's finalizer
// goroutine while it runs a finalizer, such as the one closing a core that
// delve's core reader opened and never closes (its Close does nothing),
// which for a core of hundreds of MiB a test has removed takes a while.
// Anything else left running is a leak.
var leakIgnores = []goleak.Option{
	goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
	goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
	goleak.IgnoreAnyFunction("runtime.runFinalizers"),
}

// VerifyTestMain runs the package's tests and fails the binary when a
// goroutine outlives them. Use it as the package's TestMain:
//
//	func TestMain(m *testing.M) { testkit.VerifyTestMain(m) }
func VerifyTestMain(m goleak.TestingM, opts ...goleak.Option) {
	goleak.VerifyTestMain(m, append(opts, leakIgnores...)...)
}

// ResourceCheck fails tb when goroutines started during it are still
// running once it and its cleanups are done. Goroutines that were running
// when it was called are not counted, so a test may use it while others
// run, though not in parallel with tests that start goroutines.
func ResourceCheck(tb testing.TB) {
	tb.Helper()
	opts := append([]goleak.Option{goleak.IgnoreCurrent()}, leakIgnores...)
	tb.Cleanup(func() {
		if tb.Failed() {
			return
		}
		if err := goleak.Find(opts...); err != nil {
			tb.Errorf("goroutines left running: %v", err)
		}
	})
}
