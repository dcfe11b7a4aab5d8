package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
)

// TestAnalyzeExeAfterCore types the command as people do, the flags after
// the core. The program that crashed is gone from where the core says it
// ran, so only the --exe given can make the report.
func TestAnalyzeExeAfterCore(t *testing.T) {
	exe := crashtest.BuildGo(t, crashtest.Program{Files: map[string]string{"main.go": `package main

type server struct{ cfg *struct{ retries int } }

func (s *server) retries() int { return s.cfg.retries }

func main() { println((&server{}).retries()) }
`}})
	ran := filepath.Join(t.TempDir(), "crasher")
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ran, b, 0o755); err != nil {
		t.Fatal(err)
	}
	core, _ := crashtest.Core(t, ran, nil)
	if err := os.Remove(ran); err != nil {
		t.Fatal(err)
	}

	if _, stderr, status := runMain(t, nil, "analyze", core); status == 0 || !strings.Contains(stderr, ran) {
		t.Fatalf("analyze without --exe, its executable gone: status %d\n%s", status, stderr)
	}
	stdout, stderr, status := runMain(t, nil, "analyze", core, "--exe", exe)
	if status != 0 {
		t.Fatalf("analyze CORE --exe FILE: status %d\n%s", status, stderr)
	}
	var r corepipe.Report
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("analyze CORE --exe FILE printed no report: %v\n%s", err, stdout)
	}
	if !strings.Contains(r.Title, "main.(*server).retries") {
		t.Errorf("title %q does not name main.(*server).retries", r.Title)
	}
	stdout, stderr, status = runMain(t, nil, "analyze", core, "-o", "text", "--exe="+exe)
	if status != 0 || !strings.Contains(stdout, "main.(*server).retries") || strings.HasPrefix(stdout, "{") {
		t.Errorf("analyze CORE -o text --exe=FILE: status %d\n%s\n%s", status, stdout, stderr)
	}
}
