package miniotest_test

import (
	"testing"

	"github.com/corepipe/corepipe/internal/testkit"
)

// Idle keep-alive connections to MinIO outlive a test by design; anything
// else left running, such as a server's wait goroutine, is a leak.
func TestMain(m *testing.M) {
	testkit.VerifyTestMain(m)
}
