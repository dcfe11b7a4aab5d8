package crashtest

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe/collector/corepattern"
)

// Stderr runs exe with GOTRACEBACK=traceback ("" leaves it unset, as most
// images do) and no core (RLIMIT_CORE 0 in the child), requires it to
// crash, and returns what the runtime printed: the traceback a container's
// log holds.
//
// It crashes under the core_pattern lock: RLIMIT_CORE 0 stops a core file,
// not a pipe handler, so a crash while another package's test has its
// handler installed would be that test's crash too (e2e.TestFaults counted
// gotrace's crashes in its spool).
func Stderr(t testing.TB, exe, traceback string, args ...string) string {
	t.Helper()
	unlock, err := corepattern.Lock()
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	cmd := exec.Command("prlimit", append([]string{"--core=0", "--", exe}, args...)...)
	cmd.Env = WithoutTraceback(os.Environ())
	if traceback != "" {
		cmd.Env = append(cmd.Env, "GOTRACEBACK="+traceback)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	done := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() })
	defer done.Stop()
	var exit *exec.ExitError
	if err := cmd.Run(); !errors.As(err, &exit) {
		t.Fatalf("%s %v did not crash: %v", exe, args, err)
	}
	return stderr.String()
}

// WithoutTraceback is env without its GOTRACEBACK.
func WithoutTraceback(env []string) []string {
	var out []string
	for _, e := range env {
		if !strings.HasPrefix(e, "GOTRACEBACK=") {
			out = append(out, e)
		}
	}
	return out
}

// ModuleRoot is the directory of this repository's go.mod.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Fatalf("find the module: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// BuildKinds builds the crash-kind corpus (analyzer/inspect/testdata/kinds):
// one program, of every file in that folder, that dies the way its first
// argument names.
func BuildKinds(t testing.TB) string {
	t.Helper()
	return BuildGo(t, KindsProgram(t))
}

// KindsProgram is the crash-kind corpus as a program to build with flags.
func KindsProgram(t testing.TB, flags ...string) Program {
	t.Helper()
	dir := filepath.Join(ModuleRoot(t), "analyzer/inspect/testdata/kinds")
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(names) == 0 {
		t.Fatalf("find the crash-kind corpus in %s: %v", dir, err)
	}
	files := map[string]string{}
	for _, name := range names {
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Base(name)] = string(src)
	}
	return Program{Files: files, Flags: flags}
}

// BuildPackage builds a main package of this module (a directory relative
// to its root, testdata allowed) and returns the executable's path.
func BuildPackage(t testing.TB, dir string) string {
	t.Helper()
	exe := filepath.Join(t.TempDir(), filepath.Base(dir))
	cmd := exec.Command("go", "build", "-o", exe, "./"+dir)
	cmd.Dir = ModuleRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", dir, err, out)
	}
	return exe
}
