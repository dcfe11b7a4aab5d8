package main

import (
	"debug/elf"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/collector/corepattern"
	"github.com/corepipe/corepipe/internal/testkit/crashtest"
	"github.com/corepipe/corepipe/internal/testkit/gotraceback"
)

// arm64Core cross-compiles src for linux/arm64 and crashes it under
// qemu-user, which writes the guest's ELF core itself into the program's
// directory. qemu then dies of the same signal; the host kernel's core of
// qemu goes to a scratch directory under the core_pattern lock.
func arm64Core(t *testing.T, src string) (core, exe string, res crashtest.Result) {
	t.Helper()
	crashtest.RequireRoot(t)
	qemu, err := exec.LookPath("qemu-aarch64")
	if err != nil {
		if qemu, err = exec.LookPath("qemu-aarch64-static"); err != nil {
			t.Skip("SKIP: qemu-aarch64 is not installed (scripts/install-tools.sh installs Debian's qemu-user)")
		}
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module crasher\n\ngo 1.22\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644)
	build := exec.Command("go", "build", "-o", "crasher", ".")
	build.Dir = dir
	build.Env = append(os.Environ(), "GOARCH=arm64", "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build for arm64: %v\n%s", err, out)
	}
	hostCores := t.TempDir()
	crashtest.WithPattern(t, corepattern.Settings{Pattern: filepath.Join(hostCores, "core")}, func() {
		res = crashtest.Run(t, 2*time.Minute, "/bin/sh", nil, "-c", `cd "$1" && exec "$2" -cpu max ./crasher`, "sh", dir, qemu)
	})
	cores, _ := filepath.Glob(filepath.Join(dir, "qemu_crasher_*.core"))
	if len(cores) != 1 {
		t.Fatalf("qemu-user wrote %d guest cores (signal %v, exit %d)\n%s", len(cores), res.Signal, res.ExitCode, res.Stderr)
	}
	return cores[0], filepath.Join(dir, "crasher"), res
}

// TestAnalyzeArm64Core: a linux/arm64 Go core is analysed on this amd64
// machine, says arm64, and matches the runtime's traceback goroutine for
// goroutine, including the frameless leaf that faulted (whose return
// address is in the link register the signal handler pushed).
func TestAnalyzeArm64Core(t *testing.T) {
	core, exe, res := arm64Core(t, parkedCrasher(t))
	stdout, stderr, status := runMain(t, nil, "analyze", core, "--exe", exe)
	if status != 0 {
		t.Fatalf("analyze an arm64 core: status %d\n%s", status, stderr)
	}
	var r corepipe.Report
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("no report: %v", err)
	}
	if r.Arch != "arm64" {
		t.Errorf("arch %q, want arm64", r.Arch)
	}
	dump, err := gotraceback.Parse(res.Stderr)
	if err != nil {
		t.Fatalf("parse the runtime's traceback: %v\n%s", err, res.Stderr)
	}
	for _, m := range gotraceback.Compare(&r, dump) {
		t.Errorf("report differs from the runtime's traceback: %s", m)
	}
	g := r.CrashingGoroutineReport()
	if g == nil {
		t.Fatal("no crashing goroutine")
	}
	var user []string
	for _, f := range g.Frames {
		if strings.HasPrefix(f.Function, "main.") {
			user = append(user, f.Function)
		}
	}
	if want := []string{"main.(*server).retries", "main.handle", "main.serve", "main.main"}; !slices.Equal(user, want) {
		t.Errorf("crashing goroutine's frames in main: %v, want %v", user, want)
	}
	if r.Fault == nil || r.Fault.Name != "SIGSEGV" || r.Fault.Address != "0x0" {
		t.Errorf("fault %+v, want SIGSEGV at 0x0", r.Fault)
	}

	// An executable of another architecture is refused before delve sees it.
	host := crashtest.BuildGo(t, crashtest.Program{Files: map[string]string{"main.go": parkedCrasher(t)}})
	if _, stderr, status := runMain(t, nil, "analyze", core, "--exe", host); status != exitInvalid || !strings.Contains(stderr, "is for EM_AARCH64") {
		t.Errorf("arm64 core with an amd64 executable: status %d\n%s", status, stderr)
	}
	// A core of an architecture delve does not read is refused clearly.
	b, err := os.ReadFile(core)
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint16(b[18:], uint16(elf.EM_RISCV))
	riscv := filepath.Join(t.TempDir(), "core")
	os.WriteFile(riscv, b, 0o600)
	if _, stderr, status := runMain(t, nil, "analyze", riscv, "--exe", exe); status != exitInvalid || !strings.Contains(stderr, "is for EM_RISCV: corepipe reads linux/amd64 and linux/arm64 cores") {
		t.Errorf("riscv core: status %d\n%s", status, stderr)
	}
}
