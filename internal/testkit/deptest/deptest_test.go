package deptest

import (
	"slices"
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, path string
		want          bool
	}{
		{"net", "net", true},
		{"net", "net/netip", false},
		{"net/http/...", "net/http", true},
		{"net/http/...", "net/http/httptrace", true},
		{"net/http/...", "net/httpx", false},
		{"k8s.io/...", "k8s.io/client-go/kubernetes", true},
		{"github.com/corepipe/corepipe/...", "github.com/corepipe/corepipe", true},
	} {
		if got := match(tc.pattern, tc.path); got != tc.want {
			t.Errorf("match(%q, %q) = %v", tc.pattern, tc.path, got)
		}
	}
}

// The checker finds what this very package depends on, says why, and
// skips what is exempt.
func TestViolations(t *testing.T) {
	c := DepChecker{Package: ".", BadDeps: map[string]string{
		"os/exec":      "runs programs",
		"encoding/...": "decodes",
		"net/http":     "not a dependency",
	}}
	vs, err := c.Violations()
	if err != nil {
		t.Fatal(err)
	}
	self := "github.com/corepipe/corepipe/internal/testkit/deptest"
	want := []string{self + " depends on encoding/json: decodes", self + " depends on os/exec: runs programs"}
	for _, w := range want {
		if !slices.Contains(vs, w) {
			t.Errorf("violations %q lack %q", vs, w)
		}
	}
	for _, v := range vs {
		if strings.Contains(v, "net/http") {
			t.Errorf("a dependency it does not have: %s", v)
		}
	}
	c.Exempt = []string{"github.com/corepipe/corepipe/internal/..."}
	if vs, err := c.Violations(); err != nil || len(vs) != 0 {
		t.Errorf("exempt package: %q, %v", vs, err)
	}
}

func TestUnknownPackageIsAnError(t *testing.T) {
	for _, pkg := range []string{"", "./nosuchdir", "./nosuchdir/..."} {
		if _, err := (DepChecker{Package: pkg}).Violations(); err == nil {
			t.Errorf("package %q: no error", pkg)
		}
	}
}

// The platform is the checker's, not the host's: os depends on
// internal/syscall/windows only when it is built for Windows.
func TestPlatform(t *testing.T) {
	c := DepChecker{Package: "os", GOOS: "windows", GOARCH: "amd64", BadDeps: map[string]string{"internal/syscall/windows": "windows"}}
	vs, err := c.Violations()
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) == 0 {
		t.Error("GOOS=windows: os does not depend on internal/syscall/windows")
	}
}
