package collector

import (
	"testing"

	"github.com/corepipe/corepipe/internal/testkit/deptest"
)

// TestNoNetworkImports holds the line the design draws: the collector runs
// as root inside every crash and talks to nothing but the local disk.
func TestNoNetworkImports(t *testing.T) {
	const why = "the collector runs as root inside every crash and talks to nothing but the local disk"
	bad := map[string]string{
		"net":                    why,
		"net/http/...":           why,
		"github.com/nats-io/...": why + ": the agent publishes",
		"github.com/minio/...":   why + ": the agent uploads",
		"k8s.io/...":             why + ": the agent asks client-go about pods",
	}
	for _, pkg := range []string{".", "../cmd/corepipe-collector"} {
		deptest.DepChecker{Package: pkg, GOOS: "linux", BadDeps: bad}.Check(t)
	}
}
