package corepipe_test

import (
	"testing"

	"github.com/corepipe/corepipe/internal/testkit/deptest"
)

// TestImportDirection holds the layout's lines. (The collector's own test
// keeps it off the network.)
func TestImportDirection(t *testing.T) {
	const delve = "github.com/go-delve/..."
	const driver = "modernc.org/sqlite/..."
	for _, c := range []deptest.DepChecker{
		{Package: ".", BadDeps: map[string]string{
			"github.com/corepipe/corepipe/...": "adapters import the domain, never the reverse",
			delve:                              "the domain holds no technology: reading cores is analyzer/inspect's",
			"github.com/nats-io/...":           "the domain holds no technology: the queue is queue/nats",
			"github.com/minio/...":             "the domain holds no technology: object storage is blob/s3",
			"k8s.io/...":                       "the domain holds no technology: Kubernetes is kube",
			driver:                             "the domain holds no technology: SQLite is package sqlite",
			"net/http/...":                     "the domain holds no technology: HTTP is api",
		}},
		{Package: "./...", Exempt: []string{"github.com/corepipe/corepipe/analyzer/inspect/...", "github.com/corepipe/corepipe/cmd/corepipe"},
			BadDeps: map[string]string{delve: "only analyzer/inspect reads cores with delve (the mains run it in a child process)"}},
		{Package: "./api/client", BadDeps: map[string]string{
			"github.com/corepipe/corepipe/api": "the client shares the contract (api/wire) with the server, never its code",
		}},
		{Package: "./api/...", BadDeps: map[string]string{
			delve: "the API serves reports and never parses a core: a crafted core must not reach the server",
		}},
		// apitest wires the real index for tests, as the mains do.
		{Package: "./...", Exempt: []string{"github.com/corepipe/corepipe/sqlite", "github.com/corepipe/corepipe/cmd/corepipe", "github.com/corepipe/corepipe/internal/testkit/apitest"},
			BadDeps: map[string]string{driver: "only package sqlite talks to the driver; the index and the notifier's store are interfaces (the mains wire it in)"}},
		{Package: "./notify/...", BadDeps: map[string]string{
			"github.com/minio/...": "the notifier reads the reports stream, never the blob store",
		}},
	} {
		c.Check(t)
	}
}
