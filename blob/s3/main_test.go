package s3_test

import (
	"testing"

	"github.com/corepipe/corepipe/internal/testkit"
)

// Idle keep-alive connections of minio-go's transport outlive a test by
// design; anything else left running is a leak.
func TestMain(m *testing.M) {
	testkit.VerifyTestMain(m)
}
