package corepipe_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportDirection holds the layout's lines: the domain imports no
// adapter and no technology, only analyzer/inspect imports delve, and the
// API and the notifier never do. (The collector's own test keeps it off
// the network.)
func TestImportDirection(t *testing.T) {
	for _, rule := range []struct {
		pkg       string
		forbidden []string
	}{
		{".", []string{"github.com/corepipe/corepipe/", "github.com/go-delve/", "github.com/nats-io/", "github.com/minio/", "k8s.io/", "modernc.org/sqlite", "net/http"}},
		{"./api/...", []string{"github.com/go-delve/"}},
		{"./notify/...", []string{"github.com/go-delve/", "github.com/minio/"}},
		{"./index/...", []string{"github.com/go-delve/"}},
		{"./analyzer", []string{"github.com/go-delve/"}},
		{"./analyzer/signature", []string{"github.com/go-delve/"}},
		{"./analyzer/diagnose", []string{"github.com/go-delve/"}},
	} {
		out, err := exec.Command("go", "list", "-deps", rule.pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", rule.pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range rule.forbidden {
				if strings.HasPrefix(dep, f) {
					t.Errorf("%s depends on %s", rule.pkg, dep)
				}
			}
		}
	}
}
