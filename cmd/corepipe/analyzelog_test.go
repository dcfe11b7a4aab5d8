package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
	"github.com/corepipe/corepipe/internal/testkit/crilog"
	"github.com/corepipe/corepipe/internal/testkit/gotraceback"
)

const noisyService = `package main

import (
	"fmt"
	"os"
	"time"
)

type server struct{ cfg *struct{ retries int } }

//go:noinline
func (s *server) retries() int { return s.cfg.retries }

//go:noinline
func handle(s *server) int { return s.retries() + 1 }

func main() {
	for i := range 200 {
		fmt.Printf("{\"level\":\"info\",\"msg\":\"request\",\"n\":%d}\n", i)
		fmt.Fprintf(os.Stderr, "{\"level\":\"warn\",\"msg\":\"slow\",\"n\":%d}\n", i)
	}
	go func() { time.Sleep(time.Hour) }()
	time.Sleep(10 * time.Millisecond)
	println(handle(&server{}))
}
`

// TestAnalyzeLogMatchesCore: the report of a noisy CRI log, of a crash
// with GOTRACEBACK unset, says what the runtime printed and has the
// signature of the same bug's core.
func TestAnalyzeLogMatchesCore(t *testing.T) {
	crashtest.RequireRoot(t)
	exe := crashtest.BuildGo(t, crashtest.Program{Files: map[string]string{"main.go": noisyService}})
	core, _ := crashtest.Core(t, exe, nil)
	stdout, stderr, status := runMain(t, nil, "analyze", core, "--exe", exe)
	if status != 0 {
		t.Fatalf("analyze core: %d\n%s", status, stderr)
	}
	var fromCore corepipe.Report
	if err := json.Unmarshal([]byte(stdout), &fromCore); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	w, err := crilog.Open(crilog.Run{PodsRoot: dir, Namespace: "shop", Pod: "web", PodUID: "u1", Container: "app", ContainerID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("prlimit", "--core=0", "--", exe)
	cmd.Env = crashtest.WithoutTraceback(os.Environ())
	var runtimeOut bytes.Buffer
	cmd.Stdout = w.Stream("stdout")
	cmd.Stderr = io.MultiWriter(w.Stream("stderr"), &runtimeOut)
	var exit *exec.ExitError
	if err := cmd.Run(); !errors.As(err, &exit) {
		t.Fatalf("no crash: %v", err)
	}
	w.Close()

	stdout, stderr, status = runMain(t, nil, "analyze", "--log", w.Path())
	if status != 0 {
		t.Fatalf("analyze --log: %d\n%s", status, stderr)
	}
	var fromLog corepipe.Report
	if err := json.Unmarshal([]byte(stdout), &fromLog); err != nil {
		t.Fatal(err)
	}
	if fromLog.Source != corepipe.SourceLog || fromLog.Signature != fromCore.Signature || fromLog.Title != fromCore.Title {
		t.Errorf("log report: source %q signature %s title %q; core: signature %s title %q",
			fromLog.Source, fromLog.Signature, fromLog.Title, fromCore.Signature, fromCore.Title)
	}
	want, err := gotraceback.Parse(runtimeOut.String())
	if err != nil {
		t.Fatal(err)
	}
	if diffs := gotraceback.Compare(&fromLog, want); len(diffs) > 0 {
		t.Errorf("log report disagrees with the runtime:\n%s", strings.Join(diffs, "\n"))
	}

	empty := filepath.Join(dir, "empty.log")
	os.WriteFile(empty, []byte("just a line\n"), 0o644)
	if _, stderr, status := runMain(t, nil, "analyze", "--log", empty); status != exitInvalid || strings.Count(stderr, "\n") != 1 {
		t.Errorf("a log without a crash: status %d, stderr %q; want one line and %d", status, stderr, exitInvalid)
	}
}
