package collector

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoNetworkImports holds the line the design draws: the collector runs
// as root inside every crash and talks to nothing but the local disk.
func TestNoNetworkImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".", "../cmd/corepipe-collector").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for dep := range strings.FieldsSeq(string(out)) {
		for _, banned := range []string{"net", "net/http", "github.com/nats-io/", "github.com/minio/", "k8s.io/"} {
			if dep == banned || strings.HasPrefix(dep, banned) && strings.HasSuffix(banned, "/") {
				t.Errorf("collector depends on %s", dep)
			}
		}
	}
}
