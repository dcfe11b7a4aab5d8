package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe/internal/testkit/crashtest"
)

// TestDebuginfodURLsForGDBAndDelve points the debuggers people use by hand
// at corepipe, the way the README says: DEBUGINFOD_URLS=<api>. A stripped
// build (objcopy --strip-all) crashes under the real kernel; before its
// debug file is uploaded gdb names no frame of the crash program and `dlv
// core` finds no debug info (no goroutines, no lines); after `corepipe
// symbols upload` both fetch it from the API's debuginfod endpoint (delve
// through debuginfod-find) and name the crash's frames with their lines,
// and so does `corepipe debug ID` on a crash of the pipeline, which sets
// DEBUGINFOD_URLS for dlv by itself. Each dlv run is bounded: a debugger
// waiting on its terminal must fail the test, not hang it with the
// machine's core_pattern taken.
func TestDebuginfodURLsForGDBAndDelve(t *testing.T) {
	crashtest.RequireRoot(t)
	for _, tool := range []string{"gdb", "debuginfod-find", "objcopy"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIP: %s is not installed (scripts/install-tools.sh installs gdb and Debian's debuginfod package)", tool)
		}
	}
	dlv := buildDelve(t)
	prog := crashProgram{name: "nilderef"}
	exe := prog.build(t)
	shipped := filepath.Join(t.TempDir(), "crasher")
	debug := crashtest.SplitDebug(t, exe, shipped)
	// The core straight from the kernel, as a user would have it on a
	// node; crashtest.Core holds and restores core_pattern by itself, so it
	// runs before this test takes core_pattern for corepipe dev.
	core, res := crashtest.Core(t, shipped, nil)
	if res.Signal == 0 {
		t.Fatalf("the crash program did not die of a signal: %s", res.Describe())
	}
	holdCorePattern(t)
	_, api := startDev(t, nil)

	// The crash program's frames on the crashing thread, as the runtime
	// printed them. gdb knows nothing of .gopclntab: without the debug
	// file it names no frame at all.
	want := []string{"main.(*server).retries", "main.handle", "main.serve", "main.main"}
	named := func(out string) []string {
		var got []string
		for _, fn := range want {
			if strings.Contains(out, fn) {
				got = append(got, fn)
			}
		}
		return got
	}
	// Delve names thread frames from .gopclntab even without DWARF (and
	// gives the innermost its line), but then finds no goroutines, no
	// inlined calls and no lines of callers. Its own
	// unwinder loses main.serve above the frameless main.handle (corepipe's
	// analyzer does not), so dlv is held to the rest, each with its line.
	wantDlv := []string{"main.(*server).retries", "main.handle", "main.main"}
	dlvNamed := func(out string) []string {
		var got []string
		for _, fn := range wantDlv {
			if regexp.MustCompile(`in ` + regexp.QuoteMeta(fn) + `\n\s+at \S+/main\.go:\d+`).MatchString(out) {
				got = append(got, fn)
			}
		}
		return got
	}
	crashing := regexp.MustCompile(`\* Goroutine 1 - User: \S+/main\.go:15 main\.handle `)

	gdbOut := runGDB(t, api, shipped, core)
	if got := named(gdbOut); len(got) > 0 {
		t.Errorf("gdb named %q before the debug file was uploaded: the test proves nothing\n%s", got, tail(gdbOut, 40))
	}
	dlvOut := runDelve(t, dlv, api, shipped, core)
	if got := dlvNamed(dlvOut); len(got) == len(wantDlv) || strings.Contains(dlvOut, wantDlv[0]) || crashing.MatchString(dlvOut) ||
		!strings.Contains(dlvOut, "no debug info found") {
		t.Errorf("dlv found debug info (frames %q with lines) before the debug file was uploaded: the test proves nothing\n%s", got, tail(dlvOut, 40))
	}

	out, err := exec.Command(filepath.Join(binDir, "corepipe"), "symbols", "upload", "--server", api, debug).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "uploaded gnu:") {
		t.Fatalf("symbols upload: %v\n%s", err, out)
	}

	gdbOut = runGDB(t, api, shipped, core)
	if got := named(gdbOut); len(got) != len(want) || !strings.Contains(gdbOut, "Downloading separate debug info for "+shipped) {
		t.Errorf("gdb with DEBUGINFOD_URLS=%s named %q of the crash's frames %q\n%s", api, got, want, tail(gdbOut, 60))
	}
	dlvOut = runDelve(t, dlv, api, shipped, core)
	if got := dlvNamed(dlvOut); len(got) != len(wantDlv) || strings.Contains(dlvOut, "no debug info found") {
		t.Errorf("dlv core with DEBUGINFOD_URLS=%s named %q of the crash's frames %q\n%s", api, got, wantDlv, tail(dlvOut, 60))
	}
	if !crashing.MatchString(dlvOut) || !strings.Contains(dlvOut, "[11 goroutines]") {
		t.Errorf("dlv goroutines does not list the 11 goroutines with goroutine 1 crashing in main.handle\n%s", tail(dlvOut, 60))
	}

	// `corepipe debug ID` fetches a crash of the pipeline and runs dlv core
	// with DEBUGINFOD_URLS set to the server by itself (the environment
	// here has none). The dlv it finds on PATH adds this test's commands.
	res = crashtest.Run(t, time.Minute, shipped, nil)
	r := waitReport(t, api, res.PID, 2*time.Minute)
	wrap := t.TempDir()
	sh := "#!/bin/sh\nexec " + dlv + ` "$@" --init ` + initScript(t) + " --allow-non-terminal-interactive\n"
	if err := os.WriteFile(filepath.Join(wrap, "dlv"), []byte(sh), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "corepipe"), "debug", "--server", api, r.ID)
	cmd.Dir = t.TempDir()
	cmd.Env = append(debuggerEnv(t, ""), "PATH="+wrap+":"+os.Getenv("PATH"))
	raw, err := cmd.CombinedOutput()
	dbg := ansi.ReplaceAllString(string(raw), "")
	if got := dlvNamed(dbg); err != nil || len(got) != len(wantDlv) || !crashing.MatchString(dbg) {
		t.Errorf("corepipe debug %s: %v: named %q of the crash's frames %q\n%s", r.ID, err, got, wantDlv, tail(dbg, 60))
	}
}

// debuggerEnv is the environment of a debugger asking only api (none when
// api is ""), with a
// cache of its own: debuginfod clients remember misses, so a run before
// the upload must not hide the debug file from the run after it.
func debuggerEnv(t *testing.T, api string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DEBUGINFOD_") {
			env = append(env, kv)
		}
	}
	if api != "" {
		env = append(env, "DEBUGINFOD_URLS="+api)
	}
	return append(env, "DEBUGINFOD_CACHE_PATH="+t.TempDir(), "DEBUGINFOD_TIMEOUT=30", "XDG_CONFIG_HOME="+t.TempDir())
}

// runGDB prints the crashing thread's backtrace of core with gdb, its
// debuginfod client on, and returns what gdb said.
func runGDB(t *testing.T, api, exe, core string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "gdb", "-nx", "-batch", "-iex", "set debuginfod enabled on", "-ex", "bt", exe, core)
	cmd.Env = debuggerEnv(t, api)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("gdb: %v\n%s", err, out)
	}
	return string(out)
}

// runDelve lists core's goroutines and the current one's stack with
// `dlv core`, and returns what it said. Delve runs debuginfod-find for an
// executable without DWARF when DEBUGINFOD_URLS is set.
func runDelve(t *testing.T, dlv, api, exe, core string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, dlv, "core", exe, core, "--init", initScript(t), "--allow-non-terminal-interactive")
	cmd.Env = debuggerEnv(t, api)
	out, _ := cmd.CombinedOutput()
	return ansi.ReplaceAllString(string(out), "")
}

// initScript is a dlv --init file: the goroutines, the current one's
// stack, and out.
func initScript(t *testing.T) string {
	script := filepath.Join(t.TempDir(), "init")
	if err := os.WriteFile(script, []byte("goroutines\nbt\nexit\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return script
}

// ansi matches the terminal colours dlv puts around names.
var ansi = regexp.MustCompile(`\x1b\[[0-9;]*m`)

// buildDelve builds delve's CLI at the version go.mod pins, in a scratch
// module: corepipe's go.sum has delve's library, not its front-end's deps.
func buildDelve(t *testing.T) string {
	t.Helper()
	v, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "github.com/go-delve/delve").Output()
	if err != nil {
		t.Fatalf("delve's version in go.mod: %v", err)
	}
	mod := t.TempDir()
	files := map[string]string{
		"go.mod":   "module dlvbuild\n\ngo 1.24\n\nrequire github.com/go-delve/delve " + strings.TrimSpace(string(v)) + "\n",
		"tools.go": "//go:build tools\n\npackage tools\n\nimport _ \"github.com/go-delve/delve/cmd/dlv\"\n",
	}
	for name, src := range files {
		if err := os.WriteFile(filepath.Join(mod, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dlv := filepath.Join(t.TempDir(), "dlv")
	cmd := exec.Command("go", "build", "-o", dlv, "github.com/go-delve/delve/cmd/dlv")
	cmd.Dir = mod
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build dlv %s: %v\n%s", v, err, out)
	}
	return dlv
}

// libcrash is a shared library whose fault is in a static function: its
// name is in the library's .symtab and DWARF only, which --strip-all
// takes out of the shipped file.
const libcrash = `#include <stddef.h>

static int __attribute__((noinline)) lib_fault(volatile int *p) { return *p + 1; }

int __attribute__((noinline)) lib_entry(int n) { return lib_fault(n > 0 ? NULL : &n); }
`

const libcrashMain = `int lib_entry(int);

int main(int argc, char **argv) { return lib_entry(argc); }
`

// TestDebuginfodURLsForGDBSharedLibrary: a C program's crash in a
// shared library whose debug info only corepipe has gets its library
// frames named (the static function, with its file and line) by gdb with
// DEBUGINFOD_URLS=<api>, and not before the library's debug file is
// uploaded.
func TestDebuginfodURLsForGDBSharedLibrary(t *testing.T) {
	crashtest.RequireRoot(t)
	for _, tool := range []string{"gdb", "gcc", "objcopy"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIP: %s is not installed (scripts/install-tools.sh installs it)", tool)
		}
	}
	dir := t.TempDir()
	lib := filepath.Join(dir, "libcrash.so")
	if err := os.WriteFile(filepath.Join(dir, "libcrash.c"), []byte(libcrash), 0o644); err != nil {
		t.Fatal(err)
	}
	gcc := exec.Command("gcc", "-g", "-O1", "-fPIC", "-shared", "-Wl,--build-id", "-o", lib, "libcrash.c")
	gcc.Dir = dir
	if out, err := gcc.CombinedOutput(); err != nil {
		t.Fatalf("build libcrash.so: %v\n%s", err, out)
	}
	debug := lib + ".debug"
	for _, args := range [][]string{{"--only-keep-debug", lib, debug}, {"--strip-all", lib}} {
		if out, err := exec.Command("objcopy", args...).CombinedOutput(); err != nil {
			t.Fatalf("objcopy %v: %v\n%s", args, err, out)
		}
	}
	exe := crashtest.BuildC(t, libcrashMain, "-g", "-L"+dir, "-Wl,-rpath,"+dir, "-Wl,--no-as-needed", "-lcrash")
	core, res := crashtest.Core(t, exe, nil)
	if res.Signal == 0 {
		t.Fatalf("the C program did not die of a signal: %s", res.Describe())
	}
	holdCorePattern(t)
	_, api := startDev(t, nil)

	// gdb names lib_entry from the library's dynamic symbols either way;
	// lib_fault and its line come from the debug file alone.
	fault := regexp.MustCompile(`lib_fault \([^)]*\) at libcrash\.c:3`)
	out := runGDB(t, api, exe, core)
	if strings.Contains(out, "lib_fault") {
		t.Errorf("gdb named lib_fault before the library's debug file was uploaded: the test proves nothing\n%s", tail(out, 40))
	}
	if !strings.Contains(out, "in main (") {
		t.Errorf("gdb did not name the executable's own main\n%s", tail(out, 40))
	}

	up, err := exec.Command(filepath.Join(binDir, "corepipe"), "symbols", "upload", "--server", api, debug).CombinedOutput()
	if err != nil || !strings.Contains(string(up), "uploaded gnu:") {
		t.Fatalf("symbols upload %s: %v\n%s", debug, err, up)
	}
	out = runGDB(t, api, exe, core)
	if !fault.MatchString(out) || !strings.Contains(out, "lib_entry (") || !strings.Contains(out, "in main (") {
		t.Errorf("gdb with DEBUGINFOD_URLS=%s did not name lib_fault at libcrash.c:3, lib_entry and main\n%s", api, tail(out, 60))
	}
}
