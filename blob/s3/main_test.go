package s3_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Idle keep-alive connections of minio-go's transport outlive a test by
// design; anything else left running is a leak.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}
