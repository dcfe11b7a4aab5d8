package miniotest_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Idle keep-alive connections to MinIO outlive a test by design; anything
// else left running, such as a server's wait goroutine, is a leak.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}
